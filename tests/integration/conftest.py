"""Real worker processes for end-to-end tests: Celery on the real Redis, a real database clone.

A module gets one migrated database and one ``celery worker`` subprocess (the project's real
app, queues and settings) so models load once per module. Tests drive it through the real
``teleai`` CLI and wait on database state with a deadline — no fixed sleeps. Redis not
answering fails the run loudly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import PgAdmin
from workers import process
from workers.process import ALL_QUEUES

REDIS_URL = os.environ.get("TELEAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
VENV_BIN = Path(sys.executable).parent


def _teleai() -> str:
    found = shutil.which("teleai", path=str(VENV_BIN)) or shutil.which("teleai")
    if found is None:
        pytest.fail("the `teleai` command is not installed (pip install -e .)", pytrace=False)
    return found


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis database, emptied first; fails loudly when Redis does not answer."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as err:
        pytest.fail(
            f"Redis is not answering at {REDIS_URL} (TELEAI_TEST_REDIS_URL): {err}", pytrace=False
        )
    client.flushdb()
    return REDIS_URL


@dataclass
class Pipeline:
    """A running pipeline: database, broker, storage and the environment that points at them."""

    database_url: str
    env: dict[str, str]
    storage_dir: Path
    workers: list[subprocess.Popen[bytes]]
    log_dir: Path

    def cli(
        self, *args: str, check: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `teleai` command against this pipeline."""
        result = subprocess.run(
            [_teleai(), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"teleai {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def ingest(self, *paths: Path, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        result = self.cli(
            "ingest", *map(str, paths), "--wait", "--json", "--timeout", "600", *extra
        )
        assert result.stdout.strip(), f"no output from teleai ingest: {result.stderr}"
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def show(self, file_id: str) -> dict[str, Any]:
        result = self.cli("show", file_id, "--json", check=True)
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def assert_workers_alive(self) -> None:
        for proc in self.workers:
            assert proc.poll() is None, (
                f"worker exited with {proc.returncode}:\n{self.worker_logs()[-4000:]}"
            )


def start_worker(
    env: dict[str, str],
    log_file: Path,
    *,
    queues: str = ALL_QUEUES,
    concurrency: int = 2,
    name: str = "w1",
    warm: bool = True,
) -> subprocess.Popen[bytes]:
    """A real worker subprocess (``workers.process``), returned once its pool children loaded
    their models (``warm``), so the first test's timings and deadlines are not the warm-up's;
    a failed start fails with its log."""
    try:
        return process.start_worker(
            log_file,
            env=env,
            queues=queues,
            concurrency=concurrency,
            name=name,
            ready_timeout=180 if warm else 90,
            warm=warm,
        )
    except process.WorkerStartError as error:
        raise AssertionError(f"{error}:\n{log_file.read_text(errors='replace')[-4000:]}") from error


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    process.stop_worker(proc, timeout=timeout)


def pipeline_env(database_url: str, redis_url: str, storage_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEAI_")}
    base = redis_url.rsplit("/", 1)[0]
    env.update(
        {
            "TELEAI_DATABASE_URL": database_url,
            "TELEAI_BROKER_URL": redis_url,
            "TELEAI_RESULT_BACKEND": f"{base}/6",
            "TELEAI_STORAGE_DIR": str(storage_dir),
            "TELEAI_LOG_LEVEL": "INFO",
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        }
    )
    return env


@contextmanager
def module_pipeline(
    pg_admin: PgAdmin,
    template_database: str,
    broker_url: str,
    root: Path,
    kind: str,
    *,
    settings: dict[str, str] | None = None,
    **worker: Any,
) -> Iterator[Pipeline]:
    """A database clone and one worker on it (``worker``: :func:`start_worker`'s options),
    with ``settings`` (``TELEAI_*``) over :func:`pipeline_env`. Afterwards every worker in
    ``Pipeline.workers`` is stopped, the broker database emptied (no message for this clone's
    files may reach the next module's worker) and the clone dropped."""
    name = pg_admin.new_name(kind)
    database_url = pg_admin.create(name, template=template_database)
    env = pipeline_env(database_url, broker_url, root / "storage")
    env.update(settings or {})
    log_dir = root / "logs"
    log_dir.mkdir()
    workers = [start_worker(env, log_dir / "worker.log", **worker)]
    try:
        yield Pipeline(database_url, env, root / "storage", workers, log_dir)
    finally:
        for proc in workers:
            stop_worker(proc)
        redis.Redis.from_url(broker_url).flushdb()
        pg_admin.drop(name)


@pytest.fixture(scope="module")
def pipeline(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """One database clone and one worker (2 processes, all queues) for the module."""
    root = tmp_path_factory.mktemp("pipeline")
    with module_pipeline(pg_admin, template_database, redis_url, root, "e2e") as found:
        yield found
