"""Real services for the pipeline benchmarks: a fresh database, a Redis DB, Celery workers.

Each benchmark that runs the pipeline gets its own freshly migrated database (dropped after),
the benchmark Redis databases (flushed before and after; 14 = broker, 15 = results: the
test-suite uses 5, 6 and 12, the defaults are 0 and 1), and real ``celery worker`` processes
started exactly as an operator would start them. Files are recorded with the same intake
function the submit path uses (:func:`pipeline.intake.record_submission`) and the ``ingest``
message is sent after the commit, as :func:`workers.submit.submit` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from celery import Celery
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, select

from db.engine import libpq_url, unit_of_work
from db.models import AudioFile
from pipeline.intake import record_submission as submit_file
from pipeline.settings import Settings
from tests.harness import PgAdmin
from tests.harness import fresh_database as harness_fresh_database
from workers import process
from workers.celeryconfig import QUEUES

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
BROKER_DB = 14
RESULT_DB = 15
STALL_SECONDS = 60.0
# Messages re-sent because nothing moved for STALL_SECONDS (a lost message: someone flushed or
# restarted Redis). The run notes them: the timings they touch are inflated.
stall_events: list[str] = []


@dataclass(frozen=True)
class ServiceConfig:
    """Where the benchmark's services are: an admin URL that may create databases, Redis, disk."""

    admin_url: str  # SQLAlchemy URL of a role with CREATEDB, pointed at an existing database
    redis_base: str  # redis://host:port, without a database number
    work_dir: Path  # storage, logs and scratch files of this run

    @property
    def broker_url(self) -> str:
        return f"{self.redis_base}/{BROKER_DB}"

    @property
    def result_url(self) -> str:
        return f"{self.redis_base}/{RESULT_DB}"

    @classmethod
    def from_env(cls, work_dir: Path) -> ServiceConfig:
        admin = os.environ.get(
            "TELEAI_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
        redis_base = os.environ.get("TELEAI_BENCH_REDIS", "redis://127.0.0.1:6379")
        return cls(admin, redis_base.rstrip("/"), work_dir)


# --- database ---------------------------------------------------------------------------------


def _admin_conn(config: ServiceConfig) -> psycopg.Connection:
    return psycopg.connect(libpq_url(config.admin_url), autocommit=True, connect_timeout=5)


def drop_database(config: ServiceConfig, name: str) -> None:
    with _admin_conn(config) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def fresh_database(config: ServiceConfig, tag: str) -> Iterator[str]:
    """A new migrated database ``teleai_bench_<tag>_…``, dropped when the block ends: the test
    harness's :func:`tests.harness.fresh_database` on the benchmark's admin URL."""
    admin = PgAdmin(config.admin_url, prefix="teleai_bench_")
    try:
        with harness_fresh_database(admin, tag) as url:
            yield url
    finally:
        admin.close()


def flush_redis(config: ServiceConfig) -> None:
    for url in (config.broker_url, config.result_url):
        redis.Redis.from_url(url, socket_connect_timeout=3).flushdb()


# --- workers ----------------------------------------------------------------------------------


def worker_env(config: ServiceConfig, database_url: str, **settings: str | int) -> dict[str, str]:
    """The environment of a worker: our services, and ``TELEAI_<NAME>`` for each keyword."""
    keep = {"TELEAI_MODEL_CACHE_DIR", "TELEAI_HUB_DOWNLOADS"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEAI_") or k in keep}
    env.update(
        {
            "TELEAI_DATABASE_URL": database_url,
            "TELEAI_BROKER_URL": config.broker_url,
            "TELEAI_RESULT_BACKEND": config.result_url,
            "TELEAI_STORAGE_DIR": str(config.work_dir / "storage"),
            "TELEAI_LOG_LEVEL": "INFO",
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        }
    )
    env.update({f"TELEAI_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``; the benchmarks measure Linux workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return sorted(found)


def proc_status_mib(pid: int, field_name: str) -> float:
    """A ``kB`` line of ``/proc/<pid>/status`` (VmRSS, VmHWM) in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else float("nan")


@dataclass
class Worker:
    """One running ``celery worker`` (main process plus its prefork children)."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    started: float  # time.monotonic() at Popen
    ready: float = 0.0  # time.monotonic() when the log said "ready."
    warm: float = 0.0  # ... and when every child had logged its model warm-up (if it has any)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def children(self) -> list[int]:
        """Pids of the pool children (where tasks run and models live)."""
        return child_pids(self.process.pid)

    def child_rss_mib(self) -> list[float]:
        return [proc_status_mib(pid, "VmRSS") for pid in self.children()]

    def main_rss_mib(self) -> float:
        return proc_status_mib(self.process.pid, "VmRSS")

    def child_peak_rss_mib(self) -> list[float]:
        """VmHWM of each child: its resident-set high-water mark since it started."""
        return [proc_status_mib(pid, "VmHWM") for pid in self.children()]

    def warmup_seconds(self) -> float | None:
        """The transcriber load time the worker logged (``models_warmed_up transcriber=…``)."""
        found = re.findall(r"models_warmed_up.*?transcriber=([0-9.]+)", self.log())
        return float(found[-1]) if found else None


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    *,
    queues: str,
    concurrency: int,
    name: str,
    timeout: float = 180,
) -> Worker:
    """Start the worker (``python -m workers``: :func:`workers.process.worker_command`); return
    once it is ready and its models loaded.

    Started and awaited by :mod:`workers.process`, as the tests and the demo start theirs; the
    worker records when it was started, said "ready." and was warm, which the scaling and
    memory benchmarks report.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{name}.log"
    log_file.write_bytes(b"")
    command = process.worker_command(
        queues=queues, concurrency=concurrency, name=name, extra_args=("--without-heartbeat",)
    )
    started = time.monotonic()
    proc = process.launch(command, log_file, env=env, cwd=REPO)
    worker = Worker(name, proc, log_file, started)
    try:
        readiness = process.wait_ready(
            proc, log_file, timeout=timeout, warm=process.warm_ups(queues, concurrency), every=0.02
        )
    except process.WorkerStartError as error:
        stop_worker(worker)
        raise RuntimeError(f"worker {name}: {error}:\n{worker.log()[-3000:]}") from error
    worker.ready, worker.warm = readiness.ready, readiness.warm
    return worker


def stop_worker(worker: Worker, timeout: float = 30) -> None:
    """Warm shutdown (SIGTERM to its process group), then SIGKILL if it lingers."""
    process.stop_worker(worker.process, timeout=timeout)


@contextlib.contextmanager
def running_worker(
    env: dict[str, str], log_dir: Path, *, queues: str, concurrency: int, name: str
) -> Iterator[Worker]:
    worker = start_worker(env, log_dir, queues=queues, concurrency=concurrency, name=name)
    try:
        yield worker
    finally:
        stop_worker(worker)


# --- submitting and waiting -------------------------------------------------------------------


def producer(config: ServiceConfig) -> Celery:
    """A Celery app that only sends, to the same queues and exchanges the workers consume."""
    from kombu import Exchange, Queue

    app = Celery("teleai-bench", broker=config.broker_url)
    app.conf.task_queues = tuple(
        Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES
    )
    app.conf.task_serializer = "json"
    app.conf.accept_content = ["json"]
    return app


TASKS = {"ingest": "teleai.ingest", "transcribe": "teleai.transcribe", "analyze": "teleai.analyze"}


@dataclass
class Pipeline:
    """A database plus a broker to submit into, the way ``teleai ingest`` does."""

    config: ServiceConfig
    database_url: str
    settings: Settings = field(init=False)
    engine: Engine = field(init=False)
    sender: Celery = field(init=False)
    owner_id: uuid.UUID = field(init=False)

    def __post_init__(self) -> None:
        self.settings = Settings(
            database_url=SecretStr(self.database_url),
            broker_url=SecretStr(self.config.broker_url),
            result_backend=SecretStr(self.config.result_url),
            storage_dir=self.config.work_dir / "storage",
        )
        self.engine = create_engine(self.database_url, pool_size=4)
        self.sender = producer(self.config)
        from db.users import get_or_create_operator

        with unit_of_work(self.engine) as session:
            self.owner_id = get_or_create_operator(session, None).id

    def env(self, **settings: str | int) -> dict[str, str]:
        return worker_env(self.config, self.database_url, **settings)

    def send(self, stage: str, object_id: uuid.UUID | str, *args: Any) -> None:
        self.sender.send_task(TASKS[stage], args=[str(object_id), *args], queue=stage)

    def submit(self, path: Path, *, force: bool = True) -> uuid.UUID:
        """Record the file (copied into managed storage) and send ``ingest`` after the commit."""
        with unit_of_work(self.engine) as session:
            submitted = submit_file(
                session, path, user_id=self.owner_id, settings=self.settings, force=force
            )
        self.send("ingest", submitted.file_id)
        return submitted.file_id

    def rows(self, ids: list[uuid.UUID]) -> list[AudioFile]:
        with unit_of_work(self.engine) as session:
            return list(session.scalars(select(AudioFile).where(AudioFile.id.in_(ids))))

    def wait(
        self,
        ids: list[uuid.UUID],
        done: Callable[[AudioFile], bool],
        *,
        timeout: float,
        poll: float = 0.05,
    ) -> list[AudioFile]:
        """Poll until ``done`` holds for every row (a failed row raises), with a deadline.

        Like the pipeline's reaper (which the benchmark does not run), a queued row whose
        message was lost is sent again once nothing at all moved for ``STALL_SECONDS``.
        """
        deadline = time.monotonic() + timeout
        last_state: object = None
        last_change = time.monotonic()
        while True:
            rows = self.rows(ids)
            failed = [r for r in rows if r.status == "failed"]
            if failed:
                raise RuntimeError(f"{failed[0].file_name} failed: {failed[0].error_message}")
            if len(rows) == len(ids) and all(done(r) for r in rows):
                return rows
            now = time.monotonic()
            if now > deadline:
                waiting = sum(1 for r in rows if not done(r))
                raise TimeoutError(f"{waiting} of {len(ids)} files not done after {timeout} s")
            state = sorted(
                (str(r.id), r.status, r.stage, r.attempts, r.lease_expires_at) for r in rows
            )
            if state != last_state:
                last_state, last_change = state, now
            elif now - last_change > STALL_SECONDS:
                self.resend_queued([r for r in rows if not done(r)])
                last_change = now
            time.sleep(poll)

    def resend_queued(self, rows: list[AudioFile]) -> None:
        """Send the stage message again for rows that wait in a queue (no lease)."""
        from db.transcripts import latest_transcription

        for row in rows:
            if row.status not in ("pending", "processing") or row.lease_expires_at is not None:
                continue
            if row.stage == "analyze":
                with unit_of_work(self.engine) as session:
                    version = latest_transcription(session, row.id)
                if version is None:
                    continue
                self.send("analyze", version.id)
            else:
                self.send(row.stage, row.id)
            stall_events.append(f"re-sent the {row.stage} message of {row.file_name}")

    def purge(self) -> int:
        """Drop every message waiting in the three queues (rows stay as they are)."""
        return int(self.sender.control.purge())

    def close(self) -> None:
        self.engine.dispose()


def completed(row: AudioFile) -> bool:
    return row.status == "completed"


def at_stage(stage: str) -> Callable[[AudioFile], bool]:
    """Done with the stages before ``stage``: queued for it (nobody consumes it) or past it."""
    order = ["ingest", "transcribe", "analyze"]

    def check(row: AudioFile) -> bool:
        if row.status == "completed":
            return True
        return order.index(row.stage) >= order.index(stage) and row.lease_expires_at is None

    return check


@contextlib.contextmanager
def pipeline_services(config: ServiceConfig, tag: str) -> Iterator[Pipeline]:
    """Fresh database and flushed Redis for one benchmark; everything cleaned up after."""
    flush_redis(config)
    with fresh_database(config, tag) as url:
        pipe = Pipeline(config, url)
        try:
            yield pipe
        finally:
            pipe.close()
            flush_redis(config)
            # The managed copies belong to the database just dropped: nothing refers to them.
            shutil.rmtree(config.work_dir / "storage", ignore_errors=True)
