"""Fault injection with real processes: a private Redis, a database clone, real workers.

The package shares one :class:`Cluster`: its own ``redis-server`` on a free port (no
persistence, so a restart really loses every queued message; nothing else on the machine shares
it) and one migrated database clone. No ``celery beat``: the workers run the recovery sweep
themselves (``workers.periodic``, one elected worker at a time), as in production. Each test
starts the workers it needs, breaks something, waits on the database with a deadline and asks
:mod:`tests.integration.oracle` whether anything was lost. Timings are shrunk through the
environment (lease 6 s, sweep every 2 s, queued grace 5 s, 3 attempts) so recovery fits a test
run; ``test_recovery_default_timings.py`` runs with the defaults instead (``DEFAULT_TIMINGS``).

Every test reports its figures (files, faults injected, lost, duplicates, seconds) through
``record_property`` and in a "fault injection figures" section at the end of the run.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery

from db.engine import libpq_url
from tests.conftest import PgAdmin
from tests.harness import RedisServer
from tests.harness import free_port as free_port  # the fault tests import these from here
from tests.harness import wait_until as wait_until
from tests.integration.conftest import VENV_BIN, pipeline_env, stop_worker
from tests.speech import espeak_wav, require_tool
from workers import process

REPO_ROOT = Path(__file__).resolve().parents[3]
ALL_QUEUES = "ingest,transcribe,analyze"
LEASE_SECONDS = 6
REAPER_SECONDS = 2
QUEUED_GRACE_SECONDS = 5
MAX_ATTEMPTS = 3
# Small timings so recovery happens within a test, and one thread per model so two pool
# children share two cores instead of fighting over them.
FAULT_TUNING = {
    "TELEAI_LEASE_SECONDS": str(LEASE_SECONDS),
    "TELEAI_REAPER_INTERVAL_SECONDS": str(REAPER_SECONDS),
    "TELEAI_QUEUED_GRACE_SECONDS": str(QUEUED_GRACE_SECONDS),
    "TELEAI_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "TELEAI_PRELOAD_MODELS": "true",
    "TELEAI_WHISPER_CPU_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
TIMING_KEYS = (
    "TELEAI_LEASE_SECONDS",
    "TELEAI_REAPER_INTERVAL_SECONDS",
    "TELEAI_QUEUED_GRACE_SECONDS",
    "TELEAI_MAX_ATTEMPTS",
)
UNFINISHED = ("pending", "processing")

_FIGURES: list[tuple[str, dict[str, Any]]] = []


# --- processes --------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Everything a fault test drives: database, private Redis, named worker processes."""

    database_url: str
    redis: RedisServer
    root: Path
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    worker_logs: dict[str, Path] = field(default_factory=dict)
    # Workers whose queues were changed by remote control: Celery 5.5 rebuilds consumers from
    # the start-up queue list after a broker reconnect, so an added-back queue is then dropped.
    rewired: set[str] = field(default_factory=set)
    _starts: Iterator[int] = field(default_factory=itertools.count)
    _probe: Celery | None = None

    # -- processes --

    def start_worker(
        self,
        name: str = "w1",
        *,
        queues: str = ALL_QUEUES,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        wrapper: tuple[str, ...] = (),
        ready_timeout: float = 180,
        teleai: bool = False,
        default_timings: bool = False,
    ) -> subprocess.Popen[bytes]:
        """A real ``celery worker`` in its own process group, returned once its pool is warm.

        Ready means Celery logged "ready." and every pool child logged its model warm-up, so
        a fault injected right after hits a worker that really is processing. ``teleai``
        starts it exactly as the README does (``teleai worker --queues … --concurrency …``);
        ``default_timings`` drops the package's shortened lease, sweep and grace settings.
        A worker already running under ``name`` is stopped first: ``test_baseline`` restarts
        ``w1`` this way, and overwriting its handle once left it running after the test run.
        """
        earlier = self.workers.pop(name, None)
        if earlier is not None:
            stop_worker(earlier)
            with contextlib.suppress(ProcessLookupError):  # a stray child of a killed main
                os.killpg(earlier.pid, signal.SIGKILL)
        log_file = self.root / "logs" / f"{name}-{next(self._starts)}.log"
        command = None
        if teleai:
            command = [
                str(VENV_BIN / "teleai"), "worker", "--queues", queues,
                "--concurrency", str(concurrency),
            ]  # fmt: skip
        base = {k: v for k, v in self.env.items() if not (default_timings and k in TIMING_KEYS)}
        self.worker_logs[name] = log_file
        try:
            proc = process.start_worker(
                log_file,
                env={**base, **(env or {})},
                queues=queues,
                concurrency=concurrency,
                name=name,
                ready_timeout=ready_timeout,
                warm=True,
                command=command,
                wrapper=wrapper,
                cwd=REPO_ROOT,
            )
        except process.WorkerStartError as error:
            raise AssertionError(f"worker {name}: {error}\n{self.log_tail(name)}") from error
        self.workers[name] = proc
        return proc

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group: main process and pool children at once."""
        proc = self.workers[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_workers(self, keep: str | None = None) -> None:
        """Stop every worker (but ``keep`` while it is alive); a dead one is just forgotten."""
        for name, proc in list(self.workers.items()):
            if name == keep and proc.poll() is None:
                continue
            stop_worker(proc)
            with contextlib.suppress(ProcessLookupError):  # a stray child of a killed main
                os.killpg(proc.pid, signal.SIGKILL)
            del self.workers[name]

    def log_tail(self, name: str | None = None, chars: int = 4000) -> str:
        files = [self.worker_logs[name]] if name else sorted((self.root / "logs").glob("*.log"))
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in files)

    def log_text(self, name: str) -> str:
        return "\n".join(
            p.read_text(errors="replace")
            for p in sorted((self.root / "logs").glob(f"{name}-*.log"))
        )

    # -- Celery remote control, for finding the child that runs a given task --

    @property
    def probe(self) -> Celery:
        if self._probe is None:
            self._probe = Celery("fault-probe", broker=self.redis.url)
        return self._probe

    def host(self, name: str) -> str:
        return f"{name}@{socket.gethostname()}"

    def active_tasks(self, name: str) -> list[dict[str, Any]]:
        """Tasks the worker's children are executing right now (id, name, args, worker_pid)."""
        host = self.host(name)
        # A fresh connection per call: Redis may have been restarted since the last one.
        with self.probe.connection_for_write() as connection:
            inspect = self.probe.control.inspect(
                destination=[host], timeout=1.0, limit=1, connection=connection
            )
            replies = inspect.active()
        return [dict(task) for task in (replies or {}).get(host, [])]

    def transcribing(self, name: str) -> list[tuple[str, str, int]]:
        """(task id, file id, child pid) of each transcription the worker is running now."""
        return [
            (str(t["id"]), str(t["args"][0]), int(t["worker_pid"]))
            for t in self.active_tasks(name)
            if t["name"] == "teleai.transcribe" and t.get("worker_pid")
        ]

    def consume(self, name: str, queue: str, *, enabled: bool) -> None:
        """Make a running worker start or stop consuming ``queue`` (Celery remote control)."""
        control = self.probe.control
        options: dict[str, Any] = {"destination": [self.host(name)], "reply": True}
        with self.probe.connection_for_write() as connection:
            if enabled:
                replies = control.add_consumer(queue, connection=connection, **options)
            else:
                replies = control.cancel_consumer(queue, connection=connection, **options)
        assert replies, f"worker {name} did not answer the {queue} consumer change"
        self.rewired.add(name)

    def standard(self, *, pristine: bool = False) -> None:
        """The package's default worker ``w1``: all queues, two pool processes, running.

        ``pristine`` restarts it if its queues were ever changed by remote control (needed
        before a broker restart, see ``rewired``).
        """
        proc = self.workers.get("w1")
        if proc is not None and pristine and "w1" in self.rewired:
            stop_worker(proc)
        if proc is None or proc.poll() is not None:
            self.start_worker("w1", concurrency=2)
            self.rewired.discard("w1")

    # -- files and rows --

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "teleai"), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def submit(self, *paths: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """``teleai ingest PATHS --json`` (no --wait): one row per file, as the CLI printed it."""
        result = self.cli("ingest", *map(str, paths), "--json", env=env)
        assert result.stdout.strip(), f"teleai ingest printed nothing: {result.stderr[-3000:]}"
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def submit_ok(self, *paths: Path) -> list[str]:
        """Submit and insist that every file was accepted; returns the ids."""
        rows = self.submit(*paths)
        refused = [r for r in rows if r["status"] != "pending"]
        assert not refused, refused[:5]
        return [str(r["id"]) for r in rows]

    def delay(self, task: str, ids: Iterable[str], times: int = 1) -> None:
        """Send ``workers.tasks.<task>.delay(id)`` ``times`` times per id through the real API."""
        code = (
            "import sys, workers.tasks as t\n"
            f"task = getattr(t, {task!r})\n"
            "for i in sys.argv[1:]:\n"
            f"    for _ in range({times}):\n"
            "        task.delay(i)\n"
        )
        subprocess.run(
            [sys.executable, "-c", code, *ids], env=self.env, cwd=REPO_ROOT, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One query on a fresh connection (the test's own connections may be terminated too)."""
        with psycopg.connect(libpq_url(self.database_url), connect_timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def states(self, ids: list[str]) -> collections.Counter[tuple[str, str]]:
        rows = self.query(
            "SELECT status, stage, count(*) FROM audio_files WHERE id = ANY(%s::uuid[])"
            " GROUP BY status, stage",
            (ids,),
        )
        return collections.Counter({(s, st): int(n) for s, st, n in rows})

    def row(self, file_id: str) -> tuple[str, str, int]:
        """(status, stage, attempts) of one file."""
        [found] = self.query(
            "SELECT status, stage, attempts FROM audio_files WHERE id = %s", (file_id,)
        )
        return str(found[0]), str(found[1]), int(found[2])

    def count(self, ids: list[str], status: str) -> int:
        return sum(n for (found, _), n in self.states(ids).items() if found == status)

    def log_marks(self) -> dict[Path, int]:
        """Where every log file ends now, so a test can read only what it caused."""
        return {p: p.stat().st_size for p in (self.root / "logs").glob("*.log")}

    def logs_since(self, marks: dict[Path, int], prefix: str = "") -> str:
        """Log text written after ``marks`` by the processes whose log name starts with prefix."""
        texts = []
        for path in sorted((self.root / "logs").glob(f"{prefix}*.log")):
            with path.open("rb") as f:
                f.seek(marks.get(path, 0))
                texts.append(f.read().decode(errors="replace"))
        return "\n".join(texts)

    def unfinished(self, ids: list[str]) -> int:
        try:
            counts = self.states(ids)
        except psycopg.OperationalError:
            return len(ids)  # the database is being disrupted: ask again
        settled = sum(n for (status, _), n in counts.items() if status not in UNFINISHED)
        return len(ids) - settled

    def wait_settled(self, ids: list[str], timeout: float) -> float:
        """Wait until no file is pending/processing; returns seconds, fails with a breakdown."""
        started = time.monotonic()
        while self.unfinished(ids):
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"{self.unfinished(ids)} of {len(ids)} files unfinished after {timeout:.0f} s:"
                    f" {dict(self.states(ids))}; queues {self.redis.queued()}\n{self.log_tail()}"
                )
            time.sleep(0.5)
        return time.monotonic() - started


# --- speech -----------------------------------------------------------------------------------

SENTENCES = (
    "The delivery arrived two days late and the box was damaged.",
    "Thank you for calling, your refund has been approved today.",
    "Our meeting with the supplier in Madrid is on Tuesday morning.",
    "The new invoice is wrong, please send a corrected copy.",
    "I really enjoyed the friendly help from your support team.",
    "Please reset my password, I cannot log in since Monday.",
    "The train to Chicago was cancelled because of the storm.",
    "We would like to order three hundred more units next month.",
)


@dataclass
class SpeechCorpus:
    """A few espeak-ng sentences made once; :meth:`batch` writes unique copies of them fast.

    Each copy, in any batch, differs from every other in two inaudible samples, so its SHA-256
    differs and the same owner may submit it without being told it is a duplicate.
    """

    directory: Path
    short: list[Path]
    long: list[Path]
    _tags: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def make(cls, directory: Path) -> SpeechCorpus:
        require_tool("ffmpeg")
        short = [cls._mono16k(directory, f"s{i}", text) for i, text in enumerate(SENTENCES)]
        long_texts = [" ".join(SENTENCES[i : i + 3]) for i in range(0, len(SENTENCES), 2)]
        long = [cls._mono16k(directory, f"l{i}", text) for i, text in enumerate(long_texts)]
        return cls(directory, short, long)

    @staticmethod
    def _mono16k(directory: Path, stem: str, text: str) -> Path:
        raw = espeak_wav(text, directory / f"{stem}.espeak.wav")
        out = directory / f"{stem}.wav"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(raw), "-ar", "16000",
             "-ac", "1", "-c:a", "pcm_s16le", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        return out

    def batch(
        self, target: Path, count: int, *, prefix: str, long: bool = False, flac_every: int = 4
    ) -> list[Path]:
        """``count`` unique files in ``target``: WAV, and every ``flac_every``-th one FLAC."""
        target.mkdir(parents=True, exist_ok=True)
        sources = self.long if long else self.short
        made = []
        for index in range(count):
            wav = target / f"{prefix}-{index:04d}.wav"
            _unique_copy(sources[index % len(sources)], wav, tag=next(self._tags))
            if flac_every and index % flac_every == flac_every - 1:
                flac = wav.with_suffix(".flac")
                subprocess.run(
                    ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(wav),
                     "-c:a", "flac", str(flac)],
                    check=True, capture_output=True,
                )  # fmt: skip
                wav.unlink()
                made.append(flac)
            else:
                made.append(wav)
        return made


def _unique_copy(source: Path, out: Path, *, tag: int) -> None:
    """Copy a 16-bit WAV, writing ``tag`` into its first two samples (inaudible, unique hash)."""
    with wave.open(str(source)) as src:
        params = src.getparams()
        frames = bytearray(src.readframes(src.getnframes()))
    frames[0:4] = (tag & 0xFFFFFFFF).to_bytes(4, "little")
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(bytes(frames))


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SpeechCorpus:
    return SpeechCorpus.make(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="package")
def cluster(
    pg_admin: PgAdmin, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The package's database and private Redis; workers are started by each test."""
    root = tmp_path_factory.mktemp("faults")
    (root / "logs").mkdir()
    server = RedisServer(free_port(), root / "logs" / "redis.log")
    server.start()
    name = pg_admin.new_name("faults")
    database_url = pg_admin.create(name, template=template_database)
    env = {**pipeline_env(database_url, server.url, root / "storage"), **FAULT_TUNING}
    env["TELEAI_RESULT_BACKEND"] = server.url.rsplit("/", 1)[0] + "/1"
    found = Cluster(database_url, server, root, env)
    try:
        yield found
    finally:
        found.stop_workers()
        if found._probe is not None:
            found._probe.close()
        server.kill()
        pg_admin.drop(name)


@pytest.fixture
def workers(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with its default worker ``w1`` running on all queues (started once, kept
    between tests because warming its models is the slowest part of a test). Any other worker
    a test starts is stopped when the test ends, and ``w1`` consumes all queues again."""
    cluster.standard()
    try:
        yield cluster
    finally:
        cluster.stop_workers(keep="w1")
        if "w1" in cluster.workers:
            cluster.consume("w1", "transcribe", enabled=True)


@pytest.fixture
def report(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Callable[..., None]:
    """Record a test's figures: in the JUnit XML and in the end-of-run summary."""

    def record(**figures: Any) -> None:
        for key, value in figures.items():
            record_property(key, value)
        _FIGURES.append((request.node.name, figures))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault injection figures")
    for name, figures in _FIGURES:
        shown = ", ".join(f"{k}={v}" for k, v in figures.items())
        terminalreporter.write_line(f"{name}: {shown}")
