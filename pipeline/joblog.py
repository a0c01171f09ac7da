"""One ``job_finished`` log line per finished job: grep-able, and enough to chart from logs.

Pure pipeline code (no Prometheus, no broker): the runner and the job-state module call it in the
transaction that wrote a file's final state, so the line is written once per finished job.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AudioFile

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """What a finished file's row says about its run, read after the final write."""

    file_id: uuid.UUID
    status: str
    stage: str
    attempts: int
    file_format: str
    duration_seconds: Decimal | None
    stage_seconds: dict[str, float]
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    error_message: str | None


def job_summary_fields(outcome: JobOutcome) -> dict[str, Any]:
    """The fields of the ``job_finished`` log line: grep-able, and enough to chart from logs."""
    fields: dict[str, Any] = {
        "file_id": str(outcome.file_id),
        "outcome": outcome.status,
        "stage": outcome.stage,
        "attempt": outcome.attempts,
        "format": outcome.file_format,
        "audio_seconds": float(outcome.duration_seconds)
        if outcome.duration_seconds is not None
        else None,
        "stage_seconds": {name: round(float(s), 3) for name, s in outcome.stage_seconds.items()},
    }
    if outcome.started_at is not None and outcome.completed_at is not None:
        wall = (outcome.completed_at - outcome.started_at).total_seconds()
        fields["wall_seconds"] = round(wall, 3)
        if fields["audio_seconds"] and wall > 0:
            fields["realtime_factor"] = round(fields["audio_seconds"] / wall, 2)
    if outcome.error_message:
        fields["error"] = outcome.error_message
    return fields


def read_job_outcome(session: Session, file_id: uuid.UUID) -> JobOutcome | None:
    """The row's current state (columns, not an ORM object, so it reflects the final UPDATE)."""
    row = session.execute(
        select(
            AudioFile.status,
            AudioFile.stage,
            AudioFile.attempts,
            AudioFile.file_format,
            AudioFile.duration_seconds,
            AudioFile.metadata_["stage_seconds"],
            AudioFile.processing_started_at,
            AudioFile.processing_completed_at,
            AudioFile.error_message,
        ).where(AudioFile.id == file_id)
    ).one_or_none()
    if row is None:
        return None
    status, stage, attempts, fmt, duration, seconds, started, completed, error = row
    numeric = {
        name: float(value)
        for name, value in (seconds if isinstance(seconds, dict) else {}).items()
        if isinstance(value, int | float)
    }
    return JobOutcome(
        file_id, status, stage, attempts, fmt, duration, numeric, started, completed, error
    )


def log_job_summary(
    session: Session, file_id: uuid.UUID, *, logger: Any = None
) -> dict[str, Any] | None:
    """Log ONE ``job_finished`` line for a file that just completed or failed; returns its fields.

    Call it in the transaction that wrote the final state (after ``jobs.complete`` or
    ``jobs.fail`` returned True), so the line is logged once per finished job.
    """
    outcome = read_job_outcome(session, file_id)
    if outcome is None:
        return None
    fields = job_summary_fields(outcome)
    (logger or log).info("job_finished", **fields)
    return fields
