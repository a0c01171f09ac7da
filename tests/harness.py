"""The test harness in one place: free ports, waiting with a deadline, a private Redis, test
speech and real workers, for the tests, the fault tests and the benchmarks.

Before, each of these lived in three or more copies (the fault tests, the bad-input tests, the
metrics and storage tests, the benchmarks) that drifted apart. What lives elsewhere, and is
only re-exported here so there is one place to look:

- free ports: :mod:`interfaces.ports` (the embedded demo servers and the API process use it);
- workers: :mod:`workers.process` (the demo uses it too): :func:`start_worker` (``warm=True``
  waits until every pool child loaded its models), :func:`stop_worker`;
- speech: :mod:`interfaces.speech`, by way of :mod:`tests.speech` (espeak-ng and ffmpeg; a
  missing tool fails loudly; the demo speaks its sample calls with it);
- fresh databases: :mod:`tests.databases` (:class:`PgAdmin`, :func:`fresh_database`,
  :func:`statements_sent`; the benchmarks use them, and ``pg_admin``/``database_factory`` in
  ``tests/conftest.py`` build on them: clones of one migrated template, dropped when the test
  ends, orphans of killed runs reaped).

Every process started here runs in its own process group and is stopped by its owner's
``finally``; :mod:`tests.processes` fails the run if one survives anyway.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis
from typer.testing import CliRunner

from db.engine import dispose_all
from interfaces.ports import free_port, free_ports
from pipeline.settings import get_settings
from tests.databases import PgAdmin, PostgresUnavailable, fresh_database, statements_sent
from tests.speech import espeak_wav, require_tool, speech_file
from workers.process import ALL_QUEUES, WorkerStartError, start_worker, stop_worker

__all__ = [
    "PgAdmin",
    "PostgresUnavailable",
    "RedisServer",
    "WorkerStartError",
    "espeak_wav",
    "free_port",
    "free_ports",
    "fresh_database",
    "in_process_cli",
    "private_redis",
    "require_tool",
    "speech_file",
    "start_worker",
    "statements_sent",
    "stop_worker",
    "wait_until",
]


@contextlib.contextmanager
def in_process_cli() -> Iterator[CliRunner]:
    """A runner for ``teleai`` commands in this process (``CliRunner().invoke(app, ...)``).

    Settings are read once per process and engines cached per URL, so the settings cache is
    cleared before and after and the engines disposed after: each test points ``TELEAI_*``
    (monkeypatch) where it needs and finds no engine of an earlier test's database.
    """
    get_settings.cache_clear()
    try:
        yield CliRunner()
    finally:
        get_settings.cache_clear()
        dispose_all()


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.2
) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


@dataclass
class RedisServer:
    """A private ``redis-server`` without persistence: a restart empties it, as a crash would,
    and nothing else on the machine (other test runs, tools) shares its queues."""

    port: int
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> None:
        require_tool("redis-server")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        with redis.Redis.from_url(self.url, socket_connect_timeout=1) as client:

            def answers() -> bool:
                assert self.proc is not None and self.proc.poll() is None, self.log_file.read_text()
                try:
                    return bool(client.ping())
                except redis.exceptions.ConnectionError:
                    return False

            try:
                wait_until(answers, timeout, f"redis-server on port {self.port}", every=0.1)
            except BaseException:
                self.kill()
                raise

    def kill(self) -> None:
        """SIGKILL: queued and unacknowledged messages are gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def queued(self, queues: str = ALL_QUEUES) -> dict[str, int]:
        with redis.Redis.from_url(self.url) as client:
            return {q: int(cast(int, client.llen(q))) for q in queues.split(",")}


@contextlib.contextmanager
def private_redis(log_file: Path) -> Iterator[str]:
    """A :class:`RedisServer` on a free port for the length of the block; yields its URL
    (database 0). A worker on a shared Redis database would eat other runs' messages."""
    server = RedisServer(free_port(), log_file)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
