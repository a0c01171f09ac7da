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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import (
    Integer,
    Uuid,
    and_,
    any_,
    bindparam,
    column,
    event,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session

from db.models import TERMINAL_STATUSES, AudioFile, FileStatus, Stage
from pipeline import joblog, webhooks
from pipeline.errors import PipelineError

log = structlog.get_logger(__name__)

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
    found = claim_many(
        session, [file_id], stage, lease_seconds=lease_seconds, max_attempts=max_attempts
    )
    return found[0] if found else None


def claim_many(
    session: Session,
    file_ids: Sequence[uuid.UUID],
    stage: Stage,
    *,
    lease_seconds: int,
    max_attempts: int,
) -> list[Claim]:
    """:func:`claim` for several files in one statement (a batch ingest message): the claims
    taken, in the order of ``file_ids``. Each row is claimed, fenced and given up on exactly
    as :func:`claim` would one at a time; the rows another worker holds or that are past
    ``stage`` are simply left out."""
    wanted = sorted(set(file_ids))  # one lock order for every claimer of overlapping batches
    if not wanted:
        return []
    rows = session.execute(
        update(AudioFile)
        .where(
            AudioFile.id == any_(bindparam("claim_ids", wanted, type_=ARRAY(Uuid()))),
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
            AudioFile.id,
            AudioFile.attempts,
            AudioFile.file_path,
            AudioFile.file_format,
            AudioFile.file_name,
        )
    ).all()
    claims: dict[uuid.UUID, Claim] = {}
    for file_id, attempts, path, fmt, name in rows:
        if attempts > max_attempts:
            message = (
                f"gave up on the {stage.value} stage after {max_attempts} attempts "
                "(the worker stopped or crashed each time)"
            )
            fail(session, file_id, stage, GaveUp(message))
            continue
        claims[file_id] = Claim(file_id, stage, attempts, path, fmt, name)
    return [claims[file_id] for file_id in dict.fromkeys(file_ids) if file_id in claims]


def _fenced(claim_: Claim) -> Any:
    return and_(
        AudioFile.id == claim_.file_id,
        AudioFile.stage == claim_.stage.value,
        AudioFile.status == FileStatus.PROCESSING.value,
        AudioFile.attempts == claim_.token,
    )


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds, 4) for name, seconds in timings.items()}


def _merge_timings(timings: dict[str, float], extra: dict[str, Any] | None = None) -> Any:
    """``metadata`` with ``extra``'s top-level keys set and ``timings`` merged into its
    ``stage_seconds`` object, as one SQL expression (no read of the row first)."""
    return _merged(literal(_rounded(timings), JSONB), literal(extra, JSONB) if extra else None)


def _merged(timings: Any, extra: Any | None) -> Any:
    """:func:`_merge_timings` over SQL expressions (literals, or a batch's derived columns)."""
    base: Any = AudioFile.metadata_
    if extra is not None:
        base = base.op("||")(extra)
    return base.op("||")(
        func.jsonb_build_object(
            "stage_seconds",
            func.coalesce(AudioFile.metadata_.op("->")("stage_seconds"), text("'{}'::jsonb")).op(
                "||"
            )(timings),
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


def renew_many(session: Session, claims: Sequence[Claim], *, lease_seconds: int) -> set[uuid.UUID]:
    """:func:`renew` for a batch's claims (one stage) in one statement; the ids still held."""
    if not claims:
        return set()
    stage = claims[0].stage
    assert all(c.stage is stage for c in claims), "one stage per batch"
    held = session.execute(
        update(AudioFile)
        .where(
            tuple_(AudioFile.id, AudioFile.attempts).in_([(c.file_id, c.token) for c in claims]),
            AudioFile.stage == stage.value,
            AudioFile.status == FileStatus.PROCESSING.value,
        )
        .values(lease_expires_at=_lease(lease_seconds))
        .returning(AudioFile.id)
    ).all()
    return {file_id for (file_id,) in held}


@dataclass(frozen=True)
class Handover:
    """One claimed file's results for :func:`advance_many` (what :func:`advance` takes)."""

    claim: Claim
    timings: dict[str, float]
    values: dict[str, Any]
    metadata: dict[str, Any]


def advance_many(
    session: Session, handovers: Sequence[Handover], next_stage: Stage
) -> set[uuid.UUID]:
    """:func:`advance` for a batch in one statement: each row fenced by its own claim, given
    its own ``values`` and ``metadata`` (the same columns for every row), handed to
    ``next_stage``. Returns the ids handed over; a row whose claim was lost is left as it is.

    The rows travel as one JSONB array read by ``jsonb_to_recordset`` with each column's own
    type, so the statement text is the same for every batch size (one parameter)."""
    if not handovers:
        return set()
    stage = handovers[0].claim.stage
    keys = sorted(handovers[0].values)
    assert all(h.claim.stage is stage and sorted(h.values) == keys for h in handovers)
    table = AudioFile.__table__
    rows = [
        {
            "file_id": str(h.claim.file_id),
            "token": h.claim.token,
            "timings": _rounded(h.timings),
            "extra": h.metadata,
            **h.values,
        }
        for h in sorted(handovers, key=lambda h: h.claim.file_id)  # the claims' lock order
    ]
    given = (
        func.jsonb_to_recordset(bindparam("handovers", rows, type_=JSONB))
        .table_valued(
            column("file_id", Uuid()),
            column("token", Integer()),
            column("timings", JSONB()),
            column("extra", JSONB()),
            *(column(key, table.c[key].type) for key in keys),
        )
        .render_derived(name="given", with_types=True)
    )
    moved = session.execute(
        update(AudioFile)
        .where(
            AudioFile.id == given.c.file_id,
            AudioFile.attempts == given.c.token,
            AudioFile.stage == stage.value,
            AudioFile.status == FileStatus.PROCESSING.value,
        )
        .values(
            stage=next_stage.value,
            attempts=0,
            lease_expires_at=None,
            metadata_=_merged(given.c.timings, given.c.extra),
            **{key: given.c[key] for key in keys},
        )
        .returning(AudioFile.id)
        .execution_options(synchronize_session=False)
    ).all()
    return {file_id for (file_id,) in moved}


def advance(
    session: Session,
    claim_: Claim,
    next_stage: Stage,
    *,
    timings: dict[str, float],
    values: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Hand the file to ``next_stage`` (queued, fresh attempts), setting ``values`` and the
    top-level ``metadata`` keys in the same fenced UPDATE; False if the claim was lost.

    One statement checks the fence, writes the stage's results and hands over, so a stage
    that writes only the file's own row (ingest) commits in one round trip; the row lock the
    UPDATE takes serialises it with :func:`supersede` as :func:`still_holds` would."""
    result = session.execute(
        update(AudioFile)
        .where(_fenced(claim_))
        .values(
            stage=next_stage.value,
            attempts=0,
            lease_expires_at=None,
            metadata_=_merge_timings(timings, metadata),
            **(values or {}),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete(session: Session, claim_: Claim, *, timings: dict[str, float]) -> bool:
    """Mark the file completed (its ``job_finished`` line follows the commit); False if the
    claim was lost."""
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
    return _finished(session, claim_.file_id, bool(result.rowcount))  # type: ignore[attr-defined]


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
    """Mark the file failed with a human-readable message and structured details (its
    ``job_finished`` line follows the commit); False if it was already finished."""
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
    return _finished(session, file_id, bool(result.rowcount))  # type: ignore[attr-defined]


_FINISHED_KEY = "teleai_jobs_finished"


def _finished(session: Session, file_id: uuid.UUID, finished: bool) -> bool:
    """The one place a ``job_finished`` line comes from, for both outcomes (:func:`complete`
    and :func:`fail` are the only ways a job ends), and where the webhook outbox row is
    written (:func:`pipeline.webhooks.enqueue`, same transaction).

    The fields are read now, in the transaction that wrote the final state; the line is logged
    only after that transaction committed, so a rolled-back finish (connection lost at commit,
    claim fenced out) logs nothing and the retry that really finishes logs the one line.
    """
    if not finished:
        return False
    # The webhook message (when a receiver is configured) commits or rolls back with the status.
    webhooks.enqueue(session, file_id)
    outcome = joblog.read_job_outcome(session, file_id)
    if outcome is None:
        return True
    pending: list[dict[str, Any]] | None = session.info.get(_FINISHED_KEY)
    if pending is None:
        pending = session.info[_FINISHED_KEY] = []
        event.listen(session, "after_commit", _log_finished)
        event.listen(session, "after_rollback", _forget_finished)
    pending.append(joblog.job_summary_fields(outcome))
    return True


def _log_finished(session: Session) -> None:
    for fields in session.info.pop(_FINISHED_KEY, None) or []:
        log.info("job_finished", **fields)
    session.info[_FINISHED_KEY] = []


def _forget_finished(session: Session) -> None:
    session.info[_FINISHED_KEY] = []


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
class Queued:
    """A row waiting at ``stage`` for its message.

    ``message_arg`` is the id that stage's message carries: the file id for ingest and
    transcribe, the latest transcription version for analyze (None when there is none, so no
    message can be built). The recovery sweep compares it with the messages the broker holds.
    """

    file_id: uuid.UUID
    stage: Stage
    message_arg: uuid.UUID | None


def _queued_rows(session: Session, condition: Any, limit: int, *, lock: bool) -> list[Queued]:
    from db.models import Transcription  # only the analyze stage needs it

    query = (
        select(AudioFile.id, AudioFile.stage, Transcription.id)
        .outerjoin(
            Transcription,
            and_(Transcription.audio_file_id == AudioFile.id, Transcription.is_latest),
        )
        .where(AudioFile.status.in_(UNFINISHED), condition)
        .order_by(AudioFile.updated_at)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(of=AudioFile, skip_locked=True)
    found = []
    for file_id, stage_name, version_id in session.execute(query).all():
        stage = Stage(stage_name)
        found.append(Queued(file_id, stage, version_id if stage is Stage.ANALYZE else file_id))
    return found


def release_expired(session: Session, *, limit: int = 500) -> list[Queued]:
    """Rows whose lease expired: their worker is gone. They are queued again (lease cleared)
    and returned, so the caller sends their message once this transaction committed.

    ``FOR UPDATE SKIP LOCKED`` lets two sweeps run at once without handing out the same row.
    The dead worker's message may still sit in Redis' unacknowledged set (until the visibility
    timeout), so the message is always sent again; a second copy is harmless.
    """
    rows = _queued_rows(session, AudioFile.lease_expires_at < func.now(), limit, lock=True)
    if rows:
        session.execute(
            update(AudioFile)
            .where(AudioFile.id.in_([r.file_id for r in rows]))
            .values(lease_expires_at=None)
        )
    return rows


def waiting(session: Session, *, settled_seconds: float, limit: int = 20_000) -> list[Queued]:
    """Queued rows (unfinished, no lease) unchanged for ``settled_seconds``, oldest first.

    The settle time covers the moment between a hand-over's commit and its message being sent,
    so a row whose message is on its way is not mistaken for one whose message was lost.
    """
    settled = func.now() - dt.timedelta(seconds=settled_seconds)
    condition = and_(AudioFile.lease_expires_at.is_(None), AudioFile.updated_at <= settled)
    return _queued_rows(session, condition, limit, lock=False)


def mark_resent(session: Session, rows: list[Queued], *, settled_seconds: float) -> list[Queued]:
    """Of ``rows``, those still queued and unchanged for ``settled_seconds``; ``updated_at`` is
    touched on them, so two sweeps that raced never both send (the second finds it changed),
    and a row a worker claimed meanwhile is left to that worker."""
    if not rows:
        return []
    settled = func.now() - dt.timedelta(seconds=settled_seconds)
    by_id = {row.file_id: row for row in rows}
    touched = session.execute(
        update(AudioFile)
        .where(
            tuple_(AudioFile.id, AudioFile.stage).in_([(r.file_id, r.stage.value) for r in rows]),
            AudioFile.status.in_(UNFINISHED),
            AudioFile.lease_expires_at.is_(None),
            AudioFile.updated_at <= settled,
        )
        .values(updated_at=func.now())
        .returning(AudioFile.id)
    ).all()
    return [by_id[file_id] for (file_id,) in touched]


SUPERSEDED = "superseded: the file changed after it was submitted"


def supersede(session: Session, file_id: uuid.UUID, reason: str = SUPERSEDED) -> FileStatus | None:
    """Retire a submission whose source changed after it was submitted (the drop folder's
    slow writers): the row ends ``failed`` with ``reason``, so only the later, complete file
    is reported. Returns the status it had, or None when it was already failed or is gone.

    An unfinished row is failed as :func:`fail` would (its ``job_finished`` line follows the
    commit). A worker in the middle of a stage keeps running, but its claim is fenced
    (``status`` is no longer ``processing``), so its next write — :func:`still_holds`,
    :func:`advance`, :func:`complete`, a lease renewal — is refused and it stops; the row lock
    :func:`still_holds` takes makes this wait for a hand-over already writing. A completed row
    is marked failed too (its transcription stays, as history), since it describes bytes that
    are no longer the file.
    """
    found = session.execute(
        select(AudioFile.status).where(AudioFile.id == file_id).with_for_update()
    ).one_or_none()
    if found is None or found[0] == FileStatus.FAILED.value:
        return None
    previous = FileStatus(found[0])
    details = func.jsonb_build_object(
        "stage", AudioFile.stage, "superseded", True, "message", reason,
        "previous_status", previous.value, "attempt", AudioFile.attempts,
    )  # fmt: skip
    values: dict[str, Any] = {
        "status": FileStatus.FAILED.value,
        "lease_expires_at": None,
        "error_message": reason,
        "error_details": details,
    }
    if previous is not FileStatus.COMPLETED:
        values["processing_completed_at"] = func.greatest(
            func.now(), func.coalesce(AudioFile.processing_started_at, func.now())
        )
    session.execute(update(AudioFile).where(AudioFile.id == file_id).values(**values))
    if previous is not FileStatus.COMPLETED:  # a completed row logged its line already
        _finished(session, file_id, True)
    return previous


@dataclass(frozen=True)
class FileState:
    """What a caller waiting on a file needs: where it is and, if it failed, why."""

    status: str
    stage: str
    error_message: str | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def states(session: Session, file_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, FileState]:
    """The current state of each file, in one query; ids with no row are left out."""
    if not file_ids:
        return {}
    rows = session.execute(
        select(AudioFile.id, AudioFile.status, AudioFile.stage, AudioFile.error_message).where(
            AudioFile.id.in_(list(file_ids))
        )
    )
    return {file_id: FileState(status, stage, error) for file_id, status, stage, error in rows}


# --- the numbers operators watch (the Prometheus exporter and `teleai stats`) ---------------
# Plain SQL: the CASE over the lease and the JSONB histogram read more clearly than their
# SQLAlchemy spelling. The callers choose the transaction (the exporter's is read-only with a
# statement timeout, so a scrape never piles load on a busy database).

UNFINISHED_STATES = ("queued", "running", "stalled")
"""What an unfinished row is doing: waiting for a worker, leased, or its lease expired."""

_FILES_BY_STATUS_SQL = text("SELECT status, count(*) FROM audio_files GROUP BY status")

_UNFINISHED_SQL = text("""
SELECT stage,
       CASE WHEN lease_expires_at IS NULL THEN 'queued'
            WHEN lease_expires_at < now() THEN 'stalled'
            ELSE 'running' END AS state,
       count(*),
       coalesce(sum(duration_seconds), 0)
FROM audio_files
WHERE status IN ('pending', 'processing')
GROUP BY 1, 2""")

_FINISHED_SQL = text("""
SELECT status, count(*)
FROM audio_files
WHERE status IN ('completed', 'failed')
  AND processing_completed_at >= now() - make_interval(secs => :window)
GROUP BY status""")

_STEP_SECONDS_SQL = text("""
WITH steps AS (
    SELECT s.key AS step, (s.value #>> '{}')::double precision AS seconds
    FROM audio_files f
    CROSS JOIN LATERAL jsonb_each(
        CASE WHEN jsonb_typeof(f.metadata -> 'stage_seconds') = 'object'
             THEN f.metadata -> 'stage_seconds' ELSE '{}'::jsonb END) AS s
    WHERE f.status = 'completed'
      AND f.processing_completed_at >= now() - make_interval(secs => :window)
      AND jsonb_typeof(s.value) = 'number'
),
totals AS (
    SELECT step, count(*) AS n, sum(seconds) AS total FROM steps GROUP BY step
),
buckets AS (
    SELECT step, array_agg(below ORDER BY le) AS cumulative
    FROM (
        SELECT step, le, count(*) FILTER (WHERE seconds <= le) AS below
        FROM steps CROSS JOIN unnest(CAST(:bounds AS double precision[])) AS b(le)
        GROUP BY step, le
    ) AS per_bound
    GROUP BY step
)
SELECT t.step, t.n, t.total, b.cumulative
FROM totals t JOIN buckets b USING (step)
ORDER BY t.step""")


_FINISHED_BUCKETS_SQL = text("""
WITH finished AS (
    SELECT floor(extract(epoch FROM processing_completed_at) / :step)::bigint * :step AS bucket,
           status, metadata
    FROM audio_files
    WHERE status IN ('completed', 'failed') AND deleted_at IS NULL
      AND processing_completed_at >= now() - make_interval(secs => :window)
)
SELECT bucket, status, count(*) AS files, NULL AS step, NULL::double precision AS seconds
FROM finished GROUP BY bucket, status
UNION ALL
SELECT f.bucket, 'step', count(*), s.key, avg((s.value #>> '{}')::double precision)
FROM finished f
CROSS JOIN LATERAL jsonb_each(
    CASE WHEN jsonb_typeof(f.metadata -> 'stage_seconds') = 'object'
         THEN f.metadata -> 'stage_seconds' ELSE '{}'::jsonb END) AS s
WHERE f.status = 'completed' AND jsonb_typeof(s.value) = 'number'
GROUP BY f.bucket, s.key""")


@dataclass(frozen=True)
class Unfinished:
    """Unfinished files of one stage in one state, and the seconds of audio they hold."""

    stage: Stage
    state: str  # one of UNFINISHED_STATES
    files: int
    audio_seconds: float  # 0 for files still at ingest (not probed yet)


@dataclass(frozen=True)
class StepSeconds:
    """Seconds one step (a key of ``metadata.stage_seconds``) took over the files of a window."""

    step: str
    files: int
    total: float
    cumulative: tuple[int, ...]  # files at or under each bound, in the bounds' order


@dataclass(frozen=True)
class FinishedBucket:
    """Files finished in one time bucket, and the mean seconds per step of the completed ones."""

    start: int  # epoch seconds, a multiple of the bucket width
    completed: int
    failed: int
    step_means: Mapping[str, float]  # key of metadata.stage_seconds -> mean seconds


def files_by_status(session: Session) -> dict[FileStatus, int]:
    """How many files have each status (every status present, 0 where none has it)."""
    counts = dict.fromkeys(FileStatus, 0)
    counts.update({FileStatus(s): int(n) for s, n in session.execute(_FILES_BY_STATUS_SQL)})
    return counts


def unfinished(session: Session) -> list[Unfinished]:
    """Pending and processing files per stage and state (only the pairs that have files)."""
    return [
        Unfinished(Stage(stage), state, int(count), float(seconds))
        for stage, state, count, seconds in session.execute(_UNFINISHED_SQL)
    ]


def finished_since(session: Session, *, seconds: float) -> dict[FileStatus, int]:
    """Files completed and failed in the last ``seconds`` (both keys present)."""
    counts = {FileStatus.COMPLETED: 0, FileStatus.FAILED: 0}
    rows = session.execute(_FINISHED_SQL, {"window": seconds})
    counts.update({FileStatus(s): int(n) for s, n in rows})
    return counts


def step_seconds(
    session: Session, *, seconds: float, bounds: Collection[float]
) -> list[StepSeconds]:
    """Per step of the files completed in the last ``seconds``: count, sum and a cumulative
    histogram over ``bounds`` (ascending), computed in the database in one pass."""
    rows = session.execute(_STEP_SECONDS_SQL, {"window": seconds, "bounds": list(bounds)})
    return [
        StepSeconds(step, int(count), float(total), tuple(int(n) for n in cumulative))
        for step, count, total, cumulative in rows
    ]


def finished_buckets(
    session: Session, *, seconds: float, bucket_seconds: int
) -> list[FinishedBucket]:
    """The files completed and failed in the last ``seconds`` (soft-deleted ones left out), in
    buckets of ``bucket_seconds`` aligned to the epoch, oldest first; only buckets that hold a
    finished file. One statement, so a dashboard refresh costs one round trip; it reads as the
    session's role, so under row-level security a caller counts the files it may see."""
    found: dict[int, tuple[dict[str, int], dict[str, float]]] = {}
    rows = session.execute(_FINISHED_BUCKETS_SQL, {"step": bucket_seconds, "window": seconds})
    for bucket, status, files, step, mean in rows:
        counts, means = found.setdefault(int(bucket), ({}, {}))
        if step is None:
            counts[str(status)] = int(files)
        else:
            means[str(step)] = float(mean)
    return [
        FinishedBucket(
            start,
            counts.get(FileStatus.COMPLETED.value, 0),
            counts.get(FileStatus.FAILED.value, 0),
            means,
        )
        for start, (counts, means) in sorted(found.items())
    ]
