"""The one way a file enters the pipeline: the CLI, the drop folder, the demo and the HTTP API
all call :func:`submit` (one file) or :func:`submit_many` (``teleai ingest`` of many files:
the same steps for a batch at a time).

Order matters and is the whole point: the upload is stored and its row committed *first*, and
only then is the ``ingest`` message sent. A lost message (broker down, Redis restarted empty)
therefore never loses a file: the row says "queued at ingest", and the workers' recovery sweep
sends whatever PostgreSQL holds as queued but Redis does not. When the broker is unreachable at
submit time the file is still ``created`` (``queued=False`` and a ``reason`` that says so), and
submitting the same bytes again re-sends the message instead of reporting a duplicate of a file
that was never queued.

Batches (:func:`submit_many`) keep every one of these rules per file (each file its own row,
duplicates found, refusals with their reason, the row committed before its message) and
only share the costs: the copies made durable together (one ``syncfs`` instead of two
fsyncs per file) before one transaction with a fixed number of statements per batch instead
of one commit per file, and the batch's messages published over one broker connection after
that commit, several files to an ingest message (``teleai.ingest_batch``, see
:func:`ingest_batches`). A refused file never stops the others of its batch.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import get_engine, unit_of_work
from db.models import AudioFile, FileStatus, Stage
from pipeline import storage
from pipeline.errors import PipelineError, StorageError
from pipeline.intake import Staged, record_staged, stage_upload
from pipeline.options import JobOptions, parse_options
from pipeline.settings import Settings, get_settings

log = structlog.get_logger(__name__)

# Opens one transaction: committed when the block ends, rolled back if it raises.
Transaction = Callable[[], AbstractContextManager[Session]]

BATCH_SIZE = 200  # files per transaction in submit_many: big enough to amortise, small to stream
# Files per ingest message (``teleai.ingest_batch``): the per-message costs of Celery and the
# claim/hand-over transactions are paid once per message. Bounded in bytes as well, so a
# message of long recordings does not approach the task time limit; a file over the bound
# travels alone. Small enough that a chunk of BATCH_SIZE spreads over several worker processes.
INGEST_BATCH_FILES = 50
INGEST_BATCH_BYTES = 64 * 1024 * 1024
T = TypeVar("T")

BROKER_DOWN = (
    "the message broker (Redis) is unreachable; the file is recorded and the workers' recovery "
    "sweep will queue it when the broker answers again"
)


class Outcome(enum.StrEnum):
    CREATED = "created"  # a new row; ``queued`` says whether its message was sent
    DUPLICATE = "duplicate"  # the owner already has these bytes: ``file_id`` is that row
    REFUSED = "refused"  # nothing stored, no row: ``reason`` says why


@dataclass(frozen=True)
class SubmitResult:
    outcome: Outcome
    file_name: str
    file_id: uuid.UUID | None = None
    reason: str | None = None
    queued: bool = False

    @property
    def accepted(self) -> bool:
        """A row exists for this upload (new or earlier)."""
        return self.outcome is not Outcome.REFUSED


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), lazily: a folder of a million
    files is never listed in memory at once."""
    if size < 1:
        raise ValueError("size must be at least 1")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def submit(
    source: Path | IO[bytes],
    *,
    owner_id: uuid.UUID,
    file_name: str | None = None,
    options: JobOptions | dict[str, Any] | None = None,
    force: bool = False,
    settings: Settings | None = None,
    transaction: Transaction | None = None,
) -> SubmitResult:
    """Store ``source`` for ``owner_id``, record it, then queue its ingest stage.

    ``source`` is a path or an open binary stream (then ``file_name`` is required). Input the
    pipeline refuses (unsupported name or extension, invalid options, a path that is not a
    regular file, storage that cannot be written) comes back as ``REFUSED`` with a reason;
    a database outage raises (callers retry or report "service unavailable").

    ``transaction`` is where the row is recorded: by default a unit of work of the process's
    own login (the CLI as the owner, the drop folder as ``teleai_intake``). The HTTP API passes
    transactions of the application role acting with the caller's credential, so the database,
    not the API process, decides that the caller may own the new file (migration 009).
    """
    (result,) = _submit_batch(
        [(source, file_name)],
        owner_id=owner_id,
        options=options,
        force=force,
        settings=settings,
        transaction=transaction,
    )
    return result


def submit_many(
    sources: Iterable[Path],
    *,
    owner_id: uuid.UUID,
    options: JobOptions | dict[str, Any] | None = None,
    force: bool = False,
    settings: Settings | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[SubmitResult]:
    """:func:`submit` for many paths, ``batch_size`` at a time; one result per path, in order,
    yielded as each batch is committed and queued (see the module docstring). A database
    outage raises: the batches before it are recorded and queued, the failing one is not
    (its stored copies are removed)."""
    for batch in chunks(sources, batch_size):
        yield from _submit_batch(
            [(path, None) for path in batch],
            owner_id=owner_id,
            options=options,
            force=force,
            settings=settings,
        )


def _shown(source: Path | IO[bytes], file_name: str | None) -> str:
    return file_name or (source.name if isinstance(source, Path) else "upload")


def _reason(error: BaseException) -> str:
    return error.message if isinstance(error, PipelineError) else str(error)


def _submit_batch(
    items: Sequence[tuple[Path | IO[bytes], str | None]],
    *,
    owner_id: uuid.UUID,
    options: JobOptions | dict[str, Any] | None,
    force: bool,
    settings: Settings | None,
    transaction: Transaction | None = None,
) -> list[SubmitResult]:
    """Store each upload, record the batch in one transaction, then send its messages."""
    settings = settings or get_settings()
    _ingest_task()  # imported before the commit, so the messages follow it without delay
    if transaction is None:
        transaction = partial(unit_of_work, get_engine(settings.sqlalchemy_url()))

    results: list[SubmitResult | None] = [None] * len(items)
    try:
        job_options = options if isinstance(options, JobOptions) else parse_options(options)
    except PipelineError as error:
        return [
            SubmitResult(Outcome.REFUSED, _shown(source, name), reason=error.message)
            for source, name in items
        ]
    staged: list[tuple[int, Staged]] = []
    # A batch's copies are made durable together, once, before its rows are committed
    # (Storage.persist); one upload is fsynced as it is stored.
    durable = len(items) == 1
    try:
        for index, (source, name) in enumerate(items):
            try:
                if isinstance(source, Path) and (source.is_symlink() or not source.is_file()):
                    raise FileNotFoundError(f"{source}: not a regular file")
                staged.append((index, stage_upload(source, settings, name, durable=durable)))
            except (PipelineError, OSError) as error:
                results[index] = SubmitResult(
                    Outcome.REFUSED, _shown(source, name), reason=_reason(error)
                )
        if staged and not durable:
            try:
                storage.get_storage(settings).persist([item.stored.ref for _, item in staged])
            except OSError as error:
                raise StorageError(f"could not store the uploads: {error}") from error
        recorded = []
        # Asked before the commit: with the broker down, the rows are recorded and the failed
        # connection (seconds of client retries) does not sit between commit and exit.
        broker_up = _broker_reachable() if staged else False
        if staged:
            with transaction() as session:
                recorded = record_staged(
                    session,
                    [item for _, item in staged],
                    user_id=owner_id,
                    settings=settings,
                    options=job_options,
                    force=force,
                )
    except BaseException as error:
        # Nothing of this batch was committed: no row will point at its copies.
        for _, item in staged:
            storage.delete(item.stored.ref, settings)
        if not isinstance(error, PipelineError | OSError):
            raise
        for index, _ in staged:
            source, name = items[index]
            results[index] = SubmitResult(
                Outcome.REFUSED, _shown(source, name), reason=_reason(error)
            )
        return [r for r in results if r is not None]
    created = [
        (rec.file_id, item.stored.size)
        for (_, item), rec in zip(staged, recorded, strict=True)
        if rec.duplicate_of is None
    ]
    sent = send_ingest_batches(created) if broker_up else set()
    requeued = _requeue_waiting([rec.file_id for rec in recorded if rec.duplicate_of], transaction)
    for (index, _), rec in zip(staged, recorded, strict=True):
        source, name = items[index]
        if rec.duplicate_of is not None:
            # The name the caller submitted (the earlier row may carry another one).
            queued = requeued.get(rec.duplicate_of) is not False
            results[index] = SubmitResult(
                Outcome.DUPLICATE, _shown(source, name), rec.file_id, queued=queued
            )
        else:
            ok = rec.file_id in sent
            results[index] = SubmitResult(
                Outcome.CREATED,
                rec.file_name,
                rec.file_id,
                reason=None if ok else BROKER_DOWN,
                queued=ok,
            )
    return [r for r in results if r is not None]


def send_ingest(file_id: uuid.UUID) -> bool:
    """Send the ingest message; False (logged) when the broker is unreachable."""
    return file_id in send_ingest_many([file_id])


def _ingest_task() -> Any:
    """The ``ingest`` task (importing it loads the Celery app and every task module: seconds
    on a loaded machine). Its import must not sit between a batch's commit and its messages:
    a row left without a message for the recovery sweep's settle time
    (``TELEAI_QUEUED_GRACE_SECONDS``) is sent by the sweep as well."""
    from workers.tasks import ingest

    return ingest


def _broker_reachable() -> bool:
    """Whether the broker answers (one pooled connection, the one the messages then use); a
    batch whose broker is down is recorded without trying to send (the sweep will)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        with _ingest_task().app.pool.acquire(block=True) as connection:
            connection.ensure_connection(max_retries=1)
    except (OperationalError, RedisConnectionError, OSError) as error:
        log.warning("broker_unreachable_at_submit", error=type(error).__name__)
        return False
    return True


def send_ingest_many(file_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Send the ingest messages of ``file_ids`` over one broker connection; the ids whose
    message went out (the rest, logged, are left to the recovery sweep: their rows are
    committed)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    ingest = _ingest_task()
    sent: set[uuid.UUID] = set()
    if not file_ids:
        return sent
    try:
        with ingest.app.producer_or_acquire() as producer:
            for file_id in file_ids:
                ingest.apply_async((str(file_id),), retry=False, producer=producer)
                sent.add(file_id)
    except (OperationalError, RedisConnectionError, OSError) as error:
        log.warning(
            "broker_unreachable_at_submit",
            file_ids=[str(f) for f in file_ids if f not in sent][:20],
            unsent=len(file_ids) - len(sent),
            error=type(error).__name__,
        )
    return sent


def ingest_batches(
    files: Sequence[tuple[uuid.UUID, int]],
    *,
    max_files: int = INGEST_BATCH_FILES,
    max_bytes: int = INGEST_BATCH_BYTES,
) -> list[list[uuid.UUID]]:
    """``files`` (id, size in bytes), in order, as the id lists of the ingest messages: up to
    ``max_files`` files and ``max_bytes`` bytes each (a larger file makes a message of its
    own)."""
    batches: list[list[uuid.UUID]] = []
    current: list[uuid.UUID] = []
    size = 0
    for file_id, file_bytes in files:
        if current and (len(current) == max_files or size + file_bytes > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(file_id)
        size += file_bytes
    if current:
        batches.append(current)
    return batches


def send_ingest_batches(files: Sequence[tuple[uuid.UUID, int]]) -> set[uuid.UUID]:
    """Send the ingest messages of ``files`` (id, size) over one broker connection, several
    files to a message (:func:`ingest_batches`; a batch of one is a plain ``teleai.ingest``
    message, as :func:`submit` of one file sends); the ids whose message went out (the rest,
    logged, are left to the recovery sweep: their rows are committed)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.tasks import ingest_batch

    ingest = _ingest_task()
    sent: set[uuid.UUID] = set()
    if not files:
        return sent
    try:
        with ingest.app.producer_or_acquire() as producer:
            for batch in ingest_batches(files, max_files=INGEST_BATCH_FILES):
                if len(batch) == 1:
                    ingest.apply_async((str(batch[0]),), retry=False, producer=producer)
                else:
                    ids = [str(file_id) for file_id in batch]
                    ingest_batch.apply_async((ids,), retry=False, producer=producer)
                sent.update(batch)
    except (OperationalError, RedisConnectionError, OSError) as error:
        log.warning(
            "broker_unreachable_at_submit",
            file_ids=[str(f) for f, _ in files if f not in sent][:20],
            unsent=len(files) - len(sent),
            error=type(error).__name__,
        )
    return sent


def _requeue_waiting(
    file_ids: Sequence[uuid.UUID], transaction: Transaction
) -> dict[uuid.UUID, bool]:
    """Re-send the ingest messages of earlier, still queued submissions of the same bytes.

    Returns, for each of those rows still waiting for its ingest message, whether it went out;
    rows past that point are left out (nothing to send). A second message for a queued row is
    harmless: the claim lets one win.
    """
    if not file_ids:
        return {}
    with transaction() as session:
        waiting = list(
            session.scalars(
                select(AudioFile.id).where(
                    AudioFile.id.in_(list(set(file_ids))),
                    AudioFile.status == FileStatus.PENDING.value,
                    AudioFile.stage == Stage.INGEST.value,
                    AudioFile.lease_expires_at.is_(None),
                )
            )
        )
    sent = send_ingest_many(waiting)
    return {file_id: file_id in sent for file_id in waiting}
