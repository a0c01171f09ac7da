"""Prometheus metrics read from PostgreSQL and the Redis broker at scrape time, and job summaries.

Why one exporter that asks the sources instead of counters inside the workers: workers are many
processes (prefork children, scaled containers) that come and go, while the ``audio_files`` row
is the source of truth. Reading it on each scrape is exact, survives worker restarts and needs no
multi-process plumbing. Everything here is a gauge: a snapshot now, or over the last hour. The
queries are :mod:`pipeline.jobs`' (the one owner of job state): this module only shapes their
rows into metric families, and ``teleai stats`` reads the same families.

Stage durations come from ``metadata->'stage_seconds'`` of the files completed in the window and
are exposed as a *gauge histogram* (``teleai_stage_seconds_bucket{step, le}``): the buckets
describe the last hour, so they can go down, and ``histogram_quantile()`` applies to them
directly, without ``rate()``.

Queue depth is read from the broker the way kombu's Redis transport stores it: each queue is a
Redis list named after the queue, plus one list per non-zero priority step (``<queue>\\x06\\x163``
and so on); messages handed to a worker but not yet acknowledged (``task_acks_late``: until the
task ends) sit in the ``unacked`` hash.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast
from wsgiref.simple_server import WSGIServer

import redis
import structlog
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client import start_http_server
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.engine import get_engine
from db.models import Stage
from pipeline import jobs

log = structlog.get_logger(__name__)

WINDOW_SECONDS = 3600
"""How far back the "last hour" metrics look."""

STEP_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip
"""Upper bounds (seconds) of the stage-duration histogram: DB writes to long transcriptions."""

STATEMENT_TIMEOUT_MS = 5000
"""A scrape must never pile load on a busy database: each query gives up after this."""

_SET_LOCAL_TIMEOUT = text("SELECT set_config('statement_timeout', :ms, true)")


def queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps for one queue: the plain name and each priority step's."""
    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class PipelineCollector:
    """A prometheus-client collector: one read of PostgreSQL and one of Redis per scrape.

    A source that does not answer makes ``teleai_up{source=...}`` 0 and drops that source's
    metrics from this scrape instead of failing the whole scrape.
    """

    def __init__(self, database_url: str, broker_url: str, queues: Sequence[str]) -> None:
        self._database_url = database_url
        self._redis = redis.Redis.from_url(broker_url, socket_connect_timeout=3, socket_timeout=5)
        self._queues = tuple(queues)

    def collect(self) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        up = _gauge("teleai_up", "1 when the source answered this scrape.", ["source"])
        try:
            with Session(get_engine(self._database_url)) as session, session.begin():
                session.execute(text("SET TRANSACTION READ ONLY"))
                session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
                database = list(self._database_metrics(session))
            up.add_metric(["postgresql"], 1)
        except SQLAlchemyError as error:
            log.warning("metrics_source_down", source="postgresql", error=str(error))
            database = []
            up.add_metric(["postgresql"], 0)
        yield from self._with_broker(up, database)

    def collect_in(
        self, session: Session
    ) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        """The families of :meth:`collect`, with the PostgreSQL numbers read in the caller's
        ``session`` (the HTTP API's, so row-level security decides which files count).

        The caller's transaction is left as it was found, so it can still write after this:
        no ``SET TRANSACTION READ ONLY``, and the reads' :data:`STATEMENT_TIMEOUT_MS` is set
        transaction-locally and the previous ``statement_timeout`` put back once they are done.
        A database error is raised, not reported as ``teleai_up`` 0: the caller's transaction
        cannot go on after it.
        """
        previous = session.execute(text("SELECT current_setting('statement_timeout')")).scalar()
        session.execute(_SET_LOCAL_TIMEOUT, {"ms": str(STATEMENT_TIMEOUT_MS)})
        database = list(self._database_metrics(session))
        session.execute(_SET_LOCAL_TIMEOUT, {"ms": previous})
        up = _gauge("teleai_up", "1 when the source answered this scrape.", ["source"])
        up.add_metric(["postgresql"], 1)
        yield from self._with_broker(up, database)

    def _with_broker(
        self,
        up: GaugeMetricFamily,
        database: list[GaugeMetricFamily | GaugeHistogramMetricFamily],
    ) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        """``up``, the database families and the broker's (``teleai_up`` 0 for a down Redis)."""
        try:
            broker = list(self._broker_metrics())
            up.add_metric(["redis"], 1)
        except redis.RedisError as error:
            log.warning("metrics_source_down", source="redis", error=str(error))
            broker = []
            up.add_metric(["redis"], 0)
        yield up
        yield from database
        yield from broker

    def _database_metrics(
        self, session: Session
    ) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        """The job-state reads of :mod:`pipeline.jobs` (those ``teleai stats`` shows), in the
        transaction the caller chose (:meth:`collect`'s is read-only with a statement timeout)."""
        files = _gauge("teleai_files", "Audio files by status.", ["status"])
        for status, count in jobs.files_by_status(session).items():
            files.add_metric([status.value], count)
        yield files

        unfinished = {(stage, state): 0 for stage in Stage for state in jobs.UNFINISHED_STATES}
        audio = dict.fromkeys(Stage, 0.0)
        for row in jobs.unfinished(session):
            unfinished[row.stage, row.state] = row.files
            audio[row.stage] += row.audio_seconds
        stages = _gauge(
            "teleai_files_unfinished",
            "Unfinished files by stage; state queued (waiting for a worker), running (leased) "
            "or stalled (lease expired: the reaper re-enqueues it).",
            ["stage", "state"],
        )
        for (stage, state), count in unfinished.items():
            stages.add_metric([stage.value, state], count)
        yield stages
        backlog = _gauge(
            "teleai_queued_audio_seconds",
            "Seconds of audio in unfinished files by stage (files still at ingest are not "
            "probed yet and count 0): the backlog to autoscale transcription workers on.",
            ["stage"],
        )
        for stage, seconds in audio.items():
            backlog.add_metric([stage.value], seconds)
        yield backlog

        recent = _gauge(
            "teleai_files_finished_last_hour",
            "Files completed or failed in the last hour.",
            ["status"],
        )
        for outcome, count in jobs.finished_since(session, seconds=WINDOW_SECONDS).items():
            recent.add_metric([outcome.value], count)
        yield recent

        yield from self._step_metrics(session)

    def _step_metrics(
        self, session: Session
    ) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        rows = jobs.step_seconds(session, seconds=WINDOW_SECONDS, bounds=STEP_BUCKETS)
        average = _gauge(
            "teleai_stage_seconds_avg",
            "Mean seconds per step (metadata.stage_seconds) of files completed in the last hour.",
            ["step"],
        )
        histogram = GaugeHistogramMetricFamily(
            "teleai_stage_seconds",
            "Seconds per step (metadata.stage_seconds) of files completed in the last hour.",
            labels=["step"],
        )
        for row in rows:
            average.add_metric([row.step], row.total / row.files)
            buckets = [
                (str(le), float(n)) for le, n in zip(STEP_BUCKETS, row.cumulative, strict=True)
            ]
            histogram.add_metric([row.step], [*buckets, ("+Inf", float(row.files))], row.total)
        yield average
        yield histogram

    def _broker_metrics(self) -> Iterator[GaugeMetricFamily]:
        with self._redis.pipeline(transaction=False) as pipe:
            for queue in self._queues:
                for key in queue_keys(queue):
                    pipe.llen(key)
            pipe.hlen(Channel.unacked_key)
            # Untyped in some redis-py releases, typed in others: cast states what LLEN/HLEN give.
            lengths = cast(list[int], pipe.execute())
        depth = _gauge(
            "teleai_queue_messages", "Messages waiting in each Celery queue (Redis).", ["queue"]
        )
        per_queue = len(PRIORITY_STEPS)
        for index, queue in enumerate(self._queues):
            depth.add_metric([queue], sum(lengths[index * per_queue : (index + 1) * per_queue]))
        yield depth
        unacked = _gauge(
            "teleai_queue_unacked_messages",
            "Messages delivered to workers and not yet acknowledged (tasks running or reserved).",
        )
        unacked.add_metric([], lengths[-1])
        yield unacked


def build_registry(database_url: str, broker_url: str, queues: Sequence[str]) -> CollectorRegistry:
    """A registry holding only the pipeline collector (nothing is read until a scrape)."""
    registry = CollectorRegistry()
    registry.register(PipelineCollector(database_url, broker_url, queues))
    return registry


def serve(registry: CollectorRegistry, *, host: str, port: int) -> WSGIServer:
    """Serve ``/metrics`` from a background thread; returns the server (call ``shutdown()``)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
