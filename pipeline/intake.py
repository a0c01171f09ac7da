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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session

from db import files as files_db
from pipeline import storage
from pipeline.audio.formats import format_from_extension, supported_extensions
from pipeline.errors import UnsupportedAudio
from pipeline.options import JobOptions
from pipeline.settings import Settings

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
    """Store ``source`` (a path, or a readable binary stream with ``original_name``) and record it.

    Raises :class:`UnsupportedAudio` for a name or extension we refuse (nothing stored, no row)
    and :class:`~pipeline.errors.StorageError` when storage cannot be written.
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
    backend = storage.get_storage(settings)
    stored = backend.put(source, fmt)
    try:
        duplicate = files_db.find_duplicate(session, user_id, stored.sha256)
        if duplicate is not None and not force:
            backend.delete(stored.ref)
            return Recorded(duplicate.id, duplicate.file_name, duplicate.id)
        metadata: dict[str, object] = {}
        if isinstance(source, Path):
            metadata["source_path"] = str(source)
        if options is not None and options.stored():
            metadata["options"] = options.stored()
        row = files_db.record_upload(
            session,
            user_id=user_id,
            file_name=name,
            file_path=stored.ref,
            file_size=stored.size,
            file_format=str(fmt),
            checksum=stored.sha256,
            metadata=metadata,
        )
        row.upload_completed_at = row.upload_started_at
        session.flush()
    except BaseException:
        backend.delete(stored.ref)  # no row will point at it
        raise
    return Recorded(row.id, row.file_name, None, stored.ref)
