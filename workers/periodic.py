"""Periodic jobs inside every worker: no ``celery beat`` to forget, double-start or lose.

Every worker's main process runs a small scheduler thread (started by a worker bootstep, so it
lives exactly as long as the worker and never in the forked, recycled pool children). Only the
*leader* runs the jobs: the worker that holds a PostgreSQL session-level advisory lock on its
own dedicated connection (``pg_try_advisory_lock``). When the leader stops, crashes or loses
its connection, PostgreSQL releases the lock and another worker takes it within a tick, as in
procrastinate, which runs periodic jobs inside ordinary workers with database de-duplication.

Jobs (``build_jobs``): the recovery sweep (``workers.recovery``; checked every tick, sweeps every
``TELEAI_REAPER_INTERVAL_SECONDS`` and at once after a Redis restart), the analytics refresh
(``TELEAI_ANALYTICS_REFRESH_SECONDS``), the expired-session purge (hourly) and the retention
purge of soft-deleted files' stored copies (``pipeline.retention``, hourly) and the webhook
delivery (``workers.webhooks``, every tick, deliveries in its own threads). Each runs in its
own thread, so a long analytics refresh never delays recovery, and never overlaps itself.

The lock needs a real session: point ``TELEAI_DATABASE_URL`` at PostgreSQL itself or a
session-mode pooler, not a transaction-mode PgBouncer. Two leaders for a moment (a connection
dying unnoticed) are harmless: every job is safe to run twice at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from celery import Celery, bootsteps

from db.engine import libpq_url
from pipeline.settings import Settings, get_settings

log = structlog.get_logger(__name__)

LOCK_KEY = 0x7E1EA1_5EED_0001
"""The advisory lock that makes one worker the leader (any fixed 64-bit number)."""

TICK_SECONDS = 1.0
"""How often the leader looks at its jobs and a follower tries to become leader."""


class Leadership:
    """The cluster-wide advisory lock, held on one dedicated autocommit connection."""

    def __init__(self, database_url: str, key: int = LOCK_KEY) -> None:
        self._url = libpq_url(database_url)
        self._key = key
        self._conn: psycopg.Connection[Any] | None = None
        self.leader = False

    def check(self) -> bool:
        """Still (or now) the leader? A dead connection means the lock is gone with it."""
        try:
            if self._conn is None or self._conn.closed:
                self.leader = False
                self._conn = psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="teleai-periodic",
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
            if self.leader:
                self._conn.execute("SELECT 1")  # the session lives, so its lock does too
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                self.leader = bool(row and row[0])
        except psycopg.Error as error:
            if self.leader:
                log.warning("periodic_leadership_lost", error=type(error).__name__)
            self.close()
        return self.leader

    def close(self) -> None:
        """Give the lock up (closing the session releases it at once)."""
        self.leader = False
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


@dataclass
class Job:
    """One periodic job: ``run`` every ``every`` seconds on the leader, never overlapping."""

    name: str
    every: float
    run: Callable[[], Any]
    due: float = 0.0
    thread: threading.Thread | None = field(default=None, repr=False)

    def start_if_due(self, now: float) -> None:
        if now < self.due or (self.thread is not None and self.thread.is_alive()):
            return
        self.due = now + self.every
        self.thread = threading.Thread(target=self._run, name=f"periodic-{self.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        structlog.contextvars.clear_contextvars()
        try:
            self.run()
        except Exception as error:  # a failed run is retried at its next period
            log.warning(
                "periodic_job_failed", job=self.name, error=f"{type(error).__name__}: {error}"
            )


class Scheduler:
    """The thread that keeps leadership and starts due jobs while this worker leads."""

    def __init__(self, leadership: Leadership, jobs: list[Job], tick: float = TICK_SECONDS):
        self.leadership = leadership
        self.jobs = jobs
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="periodic-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop starting jobs, let running ones finish (bounded), then give leadership up."""
        self._stop.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for job in self.jobs:
            if job.thread is not None:
                job.thread.join(max(deadline - time.monotonic(), 0))
            close = getattr(job.run, "close", None)
            if callable(close):
                close()
        self.leadership.close()

    def _loop(self) -> None:
        was_leader = False
        while True:
            leader = self.leadership.check()
            if leader != was_leader:
                log.info("periodic_leader" if leader else "periodic_follower")
                if leader:
                    for job in self.jobs:  # a new leader runs everything once at once
                        job.due = 0.0
                was_leader = leader
            if leader:
                now = time.monotonic()
                for job in self.jobs:
                    job.start_if_due(now)
            if self._stop.wait(self.tick):
                return


def build_jobs(app: Celery, settings: Settings) -> list[Job]:
    """The cluster's periodic jobs (the same ones ``beat_schedule`` lists for ``celery beat``)."""
    from db.auth_sessions import delete_expired_sessions
    from db.engine import get_engine, unit_of_work
    from db.monitoring import refresh_analytics
    from workers.recovery import Recovery
    from workers.webhooks import Deliverer

    engine_url = settings.sqlalchemy_url()
    recovery = Recovery(app, settings)

    def analytics() -> None:
        with unit_of_work(get_engine(engine_url)) as session:
            refresh_analytics(session)

    def sessions() -> None:
        with unit_of_work(get_engine(engine_url)) as session:
            delete_expired_sessions(session, older_than=dt.timedelta(days=7))

    def retention() -> None:
        from pipeline.retention import purge_deleted

        purge_deleted(lambda: unit_of_work(get_engine(engine_url)), settings)

    return [
        Job("recovery", 0.0, recovery),  # every tick: it keeps its own schedule
        Job("refresh_analytics", float(settings.analytics_refresh_seconds), analytics),
        Job("expire_sessions", 3600.0, sessions),
        Job("purge_deleted", 3600.0, retention),  # stored copies past TELEAI_RETENTION_DAYS
        # Every tick: claims due webhook messages and hands them to its own threads.
        Job("webhooks", 0.0, Deliverer(lambda: unit_of_work(get_engine(engine_url)))),
    ]


class PeriodicJobsStep(bootsteps.StartStopStep):
    """Worker bootstep: the scheduler starts after the pool (children are forked before the
    thread exists) and stops, giving leadership up, when the worker shuts down."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.scheduler: Scheduler | None = None

    def start(self, parent: Any) -> None:
        settings = get_settings()
        if not settings.periodic_jobs:
            log.info("periodic_jobs_off", reason="TELEAI_PERIODIC_JOBS=false: run celery beat")
            return
        leadership = Leadership(settings.sqlalchemy_url())
        self.scheduler = Scheduler(leadership, build_jobs(parent.app, settings))
        self.scheduler.start()

    def stop(self, parent: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
