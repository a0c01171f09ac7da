"""Thin Celery tasks: unpack ids, call one function in ``pipeline/``, enqueue the next step.

The next step is enqueued only after the stage's transaction committed (the runner returns
after commit), so a worker never sees a message for a row state that does not exist yet.
Retry policy lives in :mod:`workers.retry`.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import structlog

from db.engine import get_engine, unit_of_work
from pipeline import runner
from pipeline.limits import transcribe_time_limits
from pipeline.settings import get_settings
from workers.app import app
from workers.retry import PipelineTask, retry_alone

log = structlog.get_logger(__name__)


def _uow() -> runner.UnitOfWork:
    engine = get_engine(get_settings().sqlalchemy_url())
    return lambda: unit_of_work(engine)


@app.task(base=PipelineTask, name="teleai.ingest")
def ingest(file_id: str) -> dict[str, Any]:
    settings = get_settings()
    ingested = runner.run_ingest(_uow(), uuid.UUID(file_id), settings)
    if ingested is not None:  # the time limit grows with the file's length (pipeline.limits)
        limits = transcribe_time_limits(ingested.duration_seconds, settings)
        transcribe.apply_async((file_id,), **limits)
    return {"file_id": file_id, "next": "transcribe" if ingested else None}


@app.task(base=PipelineTask, name="teleai.ingest_batch", bind=True)
def ingest_batch(self: PipelineTask, file_ids: list[str]) -> dict[str, Any]:
    """The ingest stage of several files in one message (``teleai ingest`` of a folder:
    :func:`workers.submit.send_ingest_batches`), so the per-message costs (delivery, ack, task
    events, a claim and a hand-over transaction) are paid once per batch, not per file.

    Every file keeps its own claim, fencing and outcome (:func:`pipeline.runner.run_ingest_batch`):
    a file that fails fails alone, and one whose error is transient is sent again on its own
    (``teleai.ingest``, under the retry policy of :mod:`workers.retry`), never the batch. The
    ``transcribe`` messages of the files that moved on go out over one connection.
    """
    settings = get_settings()
    done = runner.run_ingest_batch(_uow(), [uuid.UUID(f) for f in file_ids], settings)
    started = time.perf_counter()
    if done.moved_on:
        with app.producer_or_acquire() as producer:
            for file_id, ingested in done.moved_on.items():
                limits = transcribe_time_limits(ingested.duration_seconds, settings)
                transcribe.apply_async((str(file_id),), producer=producer, **limits)
    for file_id, error in done.retry.items():
        retry_alone(self, ingest, str(file_id), error)
    seconds = {**done.seconds, "send": time.perf_counter() - started}
    log.info(
        "ingest_batch_done",
        files=len(file_ids),
        moved_on=len(done.moved_on),
        retried=len(done.retry),
        **{f"{step}_s": round(value, 4) for step, value in seconds.items()},
    )
    return {"files": len(file_ids), "moved_on": len(done.moved_on), "retried": len(done.retry)}


@app.task(base=PipelineTask, name="teleai.transcribe")
def transcribe(file_id: str) -> dict[str, Any]:
    version_id = runner.run_transcribe(_uow(), uuid.UUID(file_id), get_settings())
    if version_id is not None:
        analyze.delay(str(version_id))
    return {"file_id": file_id, "transcription_id": str(version_id) if version_id else None}


@app.task(base=PipelineTask, name="teleai.analyze")
def analyze(transcription_id: str) -> dict[str, Any]:
    done = runner.run_analyze(_uow(), uuid.UUID(transcription_id), get_settings())
    return {"transcription_id": transcription_id, "completed": done}


@app.task(base=PipelineTask, name="teleai.retranscribe")
def retranscribe(file_id: str, engine: str | None = None, model: str | None = None) -> bool:
    """Add a new transcription version of a finished file (and new analyses of it)."""
    with _uow()() as session:
        queued = runner.request_retranscription(
            session, uuid.UUID(file_id), engine=engine, model=model
        )
    if queued:
        transcribe.delay(file_id)
    return queued


@app.task(name="teleai.reap")
def reap() -> int:
    """The recovery sweep as a task, for ``celery beat`` (workers also run it themselves, see
    ``workers.periodic``): re-send the messages of rows that lost theirs (``workers.recovery``)."""
    from workers.recovery import Broker, sweep

    structlog.contextvars.clear_contextvars()  # not a PipelineTask: drop the last task's context
    broker = Broker(app, str(app.conf.broker_url))
    try:
        result = sweep(_uow(), broker, settled_seconds=get_settings().queued_grace_seconds)
    finally:
        broker.close()
    return result.released + result.reconciled


@app.task(name="teleai.refresh_analytics")
def refresh_analytics() -> None:
    from db.monitoring import refresh_analytics as refresh

    with _uow()() as session:
        refresh(session)


@app.task(name="teleai.expire_sessions")
def expire_sessions() -> int:
    from db.auth_sessions import delete_expired_sessions

    with _uow()() as session:
        return delete_expired_sessions(session, older_than=dt.timedelta(days=7))


@app.task(name="teleai.purge_deleted")
def purge_deleted() -> dict[str, int]:
    """Remove stored copies of files soft-deleted over ``TELEAI_RETENTION_DAYS`` ago."""
    from pipeline.retention import purge_deleted as purge

    structlog.contextvars.clear_contextvars()
    return purge(_uow(), get_settings()).as_dict()
