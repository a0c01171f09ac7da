"""Retention: the stored copy of a soft-deleted file is removed ``TELEAI_RETENTION_DAYS`` later.

A soft delete (``audio_files.deleted_at``) keeps the row, its transcripts and analyses, so an
operator can undo a mistake for a while; after the retention period the recording itself (the
S3 object or the local file) is removed by :func:`purge_deleted`, a periodic job. The row then
records ``metadata.storage_purged_at``, so it is never looked at again. Each file is handled in
its own short transaction: a storage outage leaves the rest for the next run, and a reference
outside managed storage is never deleted (only recorded as skipped).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import AudioFile
from pipeline import storage
from pipeline.errors import StorageMisconfigured, TransientError
from pipeline.limits import longest_task_seconds
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

UnitOfWork = Callable[[], AbstractContextManager[Session]]
BATCH = 500

_MARK = text(
    "UPDATE audio_files SET metadata = metadata || jsonb_build_object("
    "'storage_purged_at', now(), 'storage_purge', CAST(:outcome AS text)) WHERE id = :id"
)


@dataclass(frozen=True)
class Purged:
    """What one run did: copies removed, already gone, refused (outside storage), left for
    the next run (storage unavailable), and stale temporary copies swept."""

    removed: int = 0
    absent: int = 0
    skipped: int = 0
    retry: int = 0
    temp_swept: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def due_for_purge(session: Session, retention_days: float, limit: int = BATCH) -> list[uuid.UUID]:
    """Soft-deleted files older than the retention period whose copy is not purged yet."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_days * 86400.0)
    stmt = (
        select(AudioFile.id)
        .where(
            AudioFile.deleted_at.is_not(None),
            AudioFile.deleted_at <= cutoff,
            ~AudioFile.metadata_.has_key("storage_purged_at"),
        )
        .order_by(AudioFile.deleted_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def purge_deleted(uow: UnitOfWork, settings: Settings, *, limit: int = BATCH) -> Purged:
    """Remove the stored copies of files soft-deleted more than ``retention_days`` ago.

    Safe to run twice at once (a copy already gone counts as ``absent``). Also sweeps
    temporary copies a killed worker left behind (older than twice the task time limit).
    """
    with uow() as session:
        due = due_for_purge(session, settings.retention_days, limit)
    counts = {"removed": 0, "absent": 0, "skipped": 0, "retry": 0}
    for file_id in due:
        with uow() as session:
            row = session.get(AudioFile, file_id, with_for_update=True)
            if row is None or row.deleted_at is None or "storage_purged_at" in row.metadata_:
                continue  # undeleted or purged by another run meanwhile
            ref = row.file_path
            try:
                outcome = "removed" if storage.delete(ref, settings) else "absent"
            except StorageMisconfigured as error:
                outcome = "skipped"
                log.warning("purge_skipped", file_id=str(file_id), error=error.message)
            except TransientError as error:
                counts["retry"] += 1
                log.warning("purge_deferred", file_id=str(file_id), error=error.message)
                continue
            session.execute(_MARK, {"id": file_id, "outcome": outcome})
            counts[outcome] += 1
    swept = storage.sweep_temp(settings, older_than_seconds=2.0 * longest_task_seconds(settings))
    result = Purged(**counts, temp_swept=swept)
    if due or swept:
        log.info("retention_purge", retention_days=settings.retention_days, **result.as_dict())
    return result
