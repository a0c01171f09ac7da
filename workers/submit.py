"""The one way a file enters the pipeline: the CLI, the drop folder, the demo and the HTTP API
all call :func:`submit`.

Order matters and is the whole point: the upload is stored and its row committed *first*, and
only then is the ``ingest`` message sent. A lost message (broker down, Redis restarted empty)
therefore never loses a file: the row says "queued at ingest", and the workers' recovery sweep
sends whatever PostgreSQL holds as queued but Redis does not. When the broker is unreachable at
submit time the file is still ``created`` (``queued=False`` and a ``reason`` that says so), and
submitting the same bytes again re-sends the message instead of reporting a duplicate of a file
that was never queued.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from db.engine import get_engine, unit_of_work
from db.models import AudioFile, FileStatus, Stage
from pipeline import storage
from pipeline.errors import PipelineError
from pipeline.intake import record_submission
from pipeline.options import JobOptions, parse_options
from pipeline.settings import Settings, get_settings

log = structlog.get_logger(__name__)

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


def submit(
    source: Path | IO[bytes],
    *,
    owner_id: uuid.UUID,
    file_name: str | None = None,
    options: JobOptions | dict[str, Any] | None = None,
    force: bool = False,
    settings: Settings | None = None,
) -> SubmitResult:
    """Store ``source`` for ``owner_id``, record it, then queue its ingest stage.

    ``source`` is a path or an open binary stream (then ``file_name`` is required). Input the
    pipeline refuses (unsupported name or extension, invalid options, a path that is not a
    regular file, storage that cannot be written) comes back as ``REFUSED`` with a reason;
    a database outage raises (callers retry or report "service unavailable").
    """
    settings = settings or get_settings()
    shown = file_name or (source.name if isinstance(source, Path) else "upload")
    try:
        job_options = options if isinstance(options, JobOptions) else parse_options(options)
        if isinstance(source, Path) and (source.is_symlink() or not source.is_file()):
            raise FileNotFoundError(f"{source}: not a regular file")
        engine = get_engine(settings.sqlalchemy_url())
        stored: str | None = None
        try:
            with unit_of_work(engine) as session:
                recorded = record_submission(
                    session,
                    source,
                    user_id=owner_id,
                    settings=settings,
                    original_name=file_name,
                    options=job_options,
                    force=force,
                )
                stored = recorded.stored_ref
        except BaseException:
            if stored is not None:  # the row's commit failed: its copy must not stay behind
                storage.delete(stored, settings)
            raise
    except (PipelineError, OSError) as error:
        reason = error.message if isinstance(error, PipelineError) else str(error)
        return SubmitResult(Outcome.REFUSED, shown, reason=reason)
    if recorded.duplicate_of is not None:
        queued = _requeue_if_waiting(recorded.duplicate_of, settings)
        # The name the caller submitted (the earlier row may carry another one).
        return SubmitResult(Outcome.DUPLICATE, shown, recorded.file_id, queued=queued is not False)
    sent = send_ingest(recorded.file_id)
    return SubmitResult(
        Outcome.CREATED,
        recorded.file_name,
        recorded.file_id,
        reason=None if sent else BROKER_DOWN,
        queued=sent,
    )


def send_ingest(file_id: uuid.UUID) -> bool:
    """Send the ingest message; False (logged) when the broker is unreachable."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.tasks import ingest

    try:
        ingest.apply_async((str(file_id),), retry=False)
    except (OperationalError, RedisConnectionError, OSError) as error:
        log.warning(
            "broker_unreachable_at_submit", file_id=str(file_id), error=type(error).__name__
        )
        return False
    return True


def _requeue_if_waiting(file_id: uuid.UUID, settings: Settings) -> bool | None:
    """Re-send the ingest message of an earlier, still queued submission of the same bytes.

    Returns None when the earlier row is past that point (nothing to send), else whether the
    message went out. A second message for a queued row is harmless: the claim lets one win.
    """
    engine = get_engine(settings.sqlalchemy_url())
    with unit_of_work(engine) as session:
        row = session.get(AudioFile, file_id)
        waiting = (
            row is not None
            and row.status == FileStatus.PENDING.value
            and row.stage == Stage.INGEST.value
            and row.lease_expires_at is None
        )
    if not waiting:
        return None
    return send_ingest(file_id)
