"""The processing state of an ``audio_files`` row: claims, leases, stage hand-over, failure.

The database row, not the broker, is the source of truth. A file moves through the stages
ingest -> transcribe -> analyze. ``status`` is what users see (pending -> processing ->
completed | failed); ``stage`` says which step is queued or running. A worker *claims* the row
for a stage with one conditional UPDATE that bumps ``attempts`` and sets a lease; ``attempts``
doubles as a fencing token, so a worker whose lease was taken over can no longer write. A
second delivery of the same message finds the row claimed (live lease) or already past that
stage and does nothing. ``lease_expires_at IS NULL`` on an unfinished row means "queued".
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from db.models import AudioFile, FileStatus, Stage
from pipeline.errors import PipelineError

UNFINISHED = (FileStatus.PENDING.value, FileStatus.PROCESSING.value)


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one stage of one file; ``token`` fences its writes."""

    file_id: uuid.UUID
    stage: Stage
    token: int
    file_path: str
    file_format: str
    file_name: str


class GaveUp(PipelineError):
    """Raised when a stage was claimed ``max_attempts`` times without finishing."""


def _lease(seconds: int) -> Any:
    return func.now() + dt.timedelta(seconds=seconds)


def claim(
    session: Session, file_id: uuid.UUID, stage: Stage, *, lease_seconds: int, max_attempts: int
) -> Claim | None:
    """Take ``stage`` of the file, or return None when another worker holds it or it is done.

    When this would be attempt ``max_attempts + 1`` the row is marked failed with a
    :class:`GaveUp` message instead (and None returned, committed with the caller's
    transaction): a file that kills its worker every time ends ``failed``, not in an endless
    redelivery loop.
    """
    row = session.execute(
        update(AudioFile)
        .where(
            AudioFile.id == file_id,
            AudioFile.stage == stage.value,
            AudioFile.status.in_(UNFINISHED),
            or_(AudioFile.lease_expires_at.is_(None), AudioFile.lease_expires_at < func.now()),
        )
        .values(
            status=FileStatus.PROCESSING.value,
            attempts=AudioFile.attempts + 1,
            lease_expires_at=_lease(lease_seconds),
            processing_started_at=func.coalesce(AudioFile.processing_started_at, func.now()),
        )
        .returning(
            AudioFile.attempts, AudioFile.file_path, AudioFile.file_format, AudioFile.file_name
        )
    ).one_or_none()
    if row is None:
        return None
    attempts, path, fmt, name = row
    if attempts > max_attempts:
        message = (
            f"gave up on the {stage.value} stage after {max_attempts} attempts "
            "(the worker stopped or crashed each time)"
        )
        if fail(session, file_id, stage, GaveUp(message)):
            from pipeline.joblog import log_job_summary  # the job ends here: one summary line

            log_job_summary(session, file_id)
        return None
    return Claim(file_id, stage, attempts, path, fmt, name)


def _fenced(claim_: Claim) -> Any:
    return and_(
        AudioFile.id == claim_.file_id,
        AudioFile.stage == claim_.stage.value,
        AudioFile.status == FileStatus.PROCESSING.value,
        AudioFile.attempts == claim_.token,
    )


def _merge_timings(timings: dict[str, float]) -> Any:
    """``metadata`` with ``timings`` merged into its ``stage_seconds`` object."""
    rounded = {name: round(seconds, 4) for name, seconds in timings.items()}
    return AudioFile.metadata_.op("||")(
        func.jsonb_build_object(
            "stage_seconds",
            func.coalesce(AudioFile.metadata_.op("->")("stage_seconds"), text("'{}'::jsonb")).op(
                "||"
            )(literal(rounded, JSONB)),
        )
    )


def still_holds(session: Session, claim_: Claim) -> bool:
    """True while nobody took the claim over; lock the row so it stays that way until commit."""
    found = session.execute(
        select(AudioFile.id).where(_fenced(claim_)).with_for_update()
    ).one_or_none()
    return found is not None


def renew(session: Session, claim_: Claim, *, lease_seconds: int) -> bool:
    """Heartbeat: push the lease forward; False means the claim was lost."""
    result = session.execute(
        update(AudioFile).where(_fenced(claim_)).values(lease_expires_at=_lease(lease_seconds))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def advance(
    session: Session,
    claim_: Claim,
    next_stage: Stage,
    *,
    timings: dict[str, float],
    values: dict[str, Any] | None = None,
) -> bool:
    """Hand the file to ``next_stage`` (queued, fresh attempts); False if the claim was lost."""
    result = session.execute(
        update(AudioFile)
        .where(_fenced(claim_))
        .values(
            stage=next_stage.value,
            attempts=0,
            lease_expires_at=None,
            metadata_=_merge_timings(timings),
            **(values or {}),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete(session: Session, claim_: Claim, *, timings: dict[str, float]) -> bool:
    """Mark the file completed; False if the claim was lost."""
    result = session.execute(
        update(AudioFile)
        .where(_fenced(claim_))
        .values(
            status=FileStatus.COMPLETED.value,
            lease_expires_at=None,
            error_message=None,
            error_details=None,
            processing_completed_at=func.now(),
            metadata_=_merge_timings(timings),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, claim_: Claim) -> None:
    """Give the claim back (for a retry of a transient error) without failing the file."""
    session.execute(update(AudioFile).where(_fenced(claim_)).values(lease_expires_at=None))


def fail(
    session: Session,
    file_id: uuid.UUID,
    stage: Stage,
    error: BaseException,
    *,
    token: int | None = None,
    timings: dict[str, float] | None = None,
) -> bool:
    """Mark the file failed with a human-readable message and structured details."""
    message = error.message if isinstance(error, PipelineError) else str(error) or repr(error)
    conditions = [AudioFile.id == file_id, AudioFile.status.in_(UNFINISHED)]
    if token is not None:
        conditions.append(AudioFile.attempts == token)
    result = session.execute(
        update(AudioFile)
        .where(*conditions)
        .values(
            status=FileStatus.FAILED.value,
            stage=stage.value,
            lease_expires_at=None,
            error_message=f"{stage.value} failed: {message}",
            error_details=func.jsonb_build_object(
                "stage",
                stage.value,
                "exception_type",
                type(error).__name__,
                "message",
                message,
                "attempt",
                AudioFile.attempts,
            ),
            processing_completed_at=func.now(),
            metadata_=_merge_timings(timings or {}),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def requeue(session: Session, file_id: uuid.UUID, stage: Stage, **values: Any) -> bool:
    """Queue a finished file again at ``stage`` (re-transcription); False if it is unfinished."""
    result = session.execute(
        update(AudioFile)
        .where(AudioFile.id == file_id, AudioFile.status.notin_(UNFINISHED))
        .values(
            status=FileStatus.PROCESSING.value,
            stage=stage.value,
            attempts=0,
            lease_expires_at=None,
            error_message=None,
            error_details=None,
            processing_completed_at=None,
            **values,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Orphan:
    file_id: uuid.UUID
    stage: Stage


def find_orphans(session: Session, *, queued_grace_seconds: int, limit: int = 500) -> list[Orphan]:
    """Unfinished rows whose lease expired, or that waited in a queue longer than the grace.

    ``FOR UPDATE SKIP LOCKED`` lets two reapers run at once without handing out the same row,
    and ``updated_at`` is touched so the same row is not re-enqueued again until another grace
    period passes (a message may simply still be queued behind a long backlog).
    """
    stale = func.now() - dt.timedelta(seconds=queued_grace_seconds)
    rows = session.execute(
        select(AudioFile.id, AudioFile.stage)
        .where(
            AudioFile.status.in_(UNFINISHED),
            or_(
                AudioFile.lease_expires_at < func.now(),
                and_(AudioFile.lease_expires_at.is_(None), AudioFile.updated_at < stale),
            ),
        )
        .order_by(AudioFile.upload_started_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        # An expired lease means its worker is gone: the row is queued again from now on.
        session.execute(
            update(AudioFile)
            .where(AudioFile.id.in_([r[0] for r in rows]))
            .values(updated_at=func.now(), lease_expires_at=None)
        )
    return [Orphan(file_id, Stage(stage)) for file_id, stage in rows]
