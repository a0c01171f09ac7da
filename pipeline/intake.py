"""Intake: copy a user's upload into managed storage and record it as a ``pending`` row.

This is what happens *before* any stage runs (the ``ingest`` stage then validates and probes
the stored copy in a worker). The row exists before any message is sent (the caller enqueues
after commit), so a lost message can never lose a file. Everything that can be refused without
reading the audio is refused here, before anything is stored: an unsupported extension, a name
PostgreSQL cannot hold. If recording the row fails after the copy was stored, the copy is
removed, so a refused or failed submission leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from db import files as files_db
from pipeline import storage
from pipeline.audio.formats import format_from_extension, supported_extensions
from pipeline.errors import UnsupportedAudio
from pipeline.options import JobOptions
from pipeline.settings import Settings
from pipeline.storage import StoredObject

MAX_NAME_CHARS = 255


@dataclass(frozen=True)
class Recorded:
    """A stored upload and its row; ``duplicate_of`` is set (and nothing new stored) when the
    owner already has a file with the same bytes."""

    file_id: uuid.UUID
    file_name: str
    duplicate_of: uuid.UUID | None
    stored_ref: str | None = None  # the new stored copy's reference (None for a duplicate)


def check_name(name: str) -> str:
    """The user's file name as it will be recorded, or :class:`UnsupportedAudio` with why.

    Only NUL is refused (PostgreSQL text cannot hold it); other odd characters are kept, since
    the name is only ever a label — it never becomes a path component.
    """
    if not name or not name.strip():
        raise UnsupportedAudio("the upload has no file name")
    if "\x00" in name:
        raise UnsupportedAudio("the file name contains a NUL character; rename the file")
    return name[:MAX_NAME_CHARS]


@dataclass(frozen=True)
class Staged:
    """An upload copied into managed storage, not yet recorded (no row points at it)."""

    file_name: str
    stored: StoredObject
    source_path: str | None  # the submitted path (kept in the row's metadata), None for a stream


def stage_upload(
    source: Path | IO[bytes],
    settings: Settings,
    original_name: str | None = None,
    *,
    durable: bool = True,
) -> Staged:
    """Refuse what can be refused by name, then store ``source`` (a path, or a readable binary
    stream with ``original_name``). ``durable=False``: the caller persists the batch's copies
    (``Storage.persist``) before recording them.

    Raises :class:`UnsupportedAudio` for a name or extension we refuse (nothing stored) and
    :class:`~pipeline.errors.StorageError` when storage cannot be written.
    """
    if original_name is None:
        if not isinstance(source, Path):
            raise UnsupportedAudio("a stream upload needs a file name")
        original_name = source.name
    name = check_name(original_name)
    fmt = format_from_extension(name)
    if fmt is None and isinstance(source, Path):
        fmt = format_from_extension(source)
    if fmt is None:
        raise UnsupportedAudio(
            f"'{name}' has an unsupported extension; supported: {supported_extensions()}"
        )
    stored = storage.get_storage(settings).put(source, fmt, durable=durable)
    return Staged(name, stored, str(source) if isinstance(source, Path) else None)


def _format_of(staged: Staged) -> str:
    fmt = format_from_extension(staged.file_name)
    if fmt is None and staged.source_path is not None:
        fmt = format_from_extension(Path(staged.source_path))
    if fmt is None:  # stage_upload refused it already
        raise UnsupportedAudio(f"'{staged.file_name}' has an unsupported extension")
    return str(fmt)


def record_staged(
    session: Session,
    batch: Sequence[Staged],
    *,
    user_id: uuid.UUID,
    settings: Settings,
    options: JobOptions | None = None,
    force: bool = False,
) -> list[Recorded]:
    """Record a batch of staged uploads in the caller's transaction, in a fixed number of
    statements whatever the batch size (one duplicate lookup, one multi-row INSERT, one
    UPDATE), so a folder of small files is not one round trip per file. One
    :class:`Recorded` per upload, in order.

    Without ``force``, an upload whose bytes the owner already has (an earlier row, or an
    earlier upload of the same batch) is a duplicate of that row: its copy is removed and no
    row is made, exactly as one upload at a time would behave. On an error every copy of the
    batch that no committed row will point at is removed, then the error propagates.
    """
    backend = storage.get_storage(settings)
    results: list[Recorded | None] = [None] * len(batch)
    try:
        earliest: dict[str, tuple[uuid.UUID, str]] = {}
        if not force and batch:
            sums = sorted({item.stored.sha256.lower() for item in batch})
            for found in files_db.find_duplicates(session, user_id, sums):
                earliest.setdefault(found.checksum or "", (found.id, found.file_name))
        new_rows: list[tuple[int, dict[str, Any]]] = []
        in_batch_dups: list[tuple[int, int]] = []  # (index, index of the upload it repeats)
        in_batch: dict[str, int] = {}  # checksum -> index of the batch's upload that makes a row
        for index, item in enumerate(batch):
            checksum = item.stored.sha256.lower()
            if not force and checksum in earliest:
                backend.delete(item.stored.ref)
                file_id, name = earliest[checksum]
                results[index] = Recorded(file_id, name, file_id)
                continue
            if not force and checksum in in_batch:
                backend.delete(item.stored.ref)
                in_batch_dups.append((index, in_batch[checksum]))
                continue
            in_batch[checksum] = index
            metadata: dict[str, object] = {}
            if item.source_path is not None:
                metadata["source_path"] = item.source_path
            if options is not None and options.stored():
                metadata["options"] = options.stored()
            row = files_db.upload_values(
                user_id=user_id,
                file_name=item.file_name,
                file_path=item.stored.ref,
                file_size=item.stored.size,
                file_format=_format_of(item),
                checksum=checksum,
                metadata=metadata,
            )
            new_rows.append((index, row))
        ids = files_db.add_uploads(session, [row for _, row in new_rows])
        for (index, row), file_id in zip(new_rows, ids, strict=True):
            results[index] = Recorded(file_id, row["file_name"], None, row["file_path"])
        for index, first in in_batch_dups:
            made = results[first]
            assert made is not None
            results[index] = Recorded(made.file_id, made.file_name, made.file_id)
    except BaseException:
        for item, done in zip(batch, results, strict=True):
            if done is None or done.stored_ref is not None:  # not recorded, or its row rolls back
                backend.delete(item.stored.ref)
        raise
    return [r for r in results if r is not None]


def record_submission(
    session: Session,
    source: Path | IO[bytes],
    *,
    user_id: uuid.UUID,
    settings: Settings,
    original_name: str | None = None,
    options: JobOptions | None = None,
    force: bool = False,
) -> Recorded:
    """Store ``source`` (a path, or a readable binary stream with ``original_name``) and record
    it: :func:`stage_upload` then :func:`record_staged` for a batch of one.

    Raises :class:`UnsupportedAudio` for a name or extension we refuse (nothing stored, no row)
    and :class:`~pipeline.errors.StorageError` when storage cannot be written.
    """
    staged = stage_upload(source, settings, original_name)
    (recorded,) = record_staged(
        session, [staged], user_id=user_id, settings=settings, options=options, force=force
    )
    return recorded
