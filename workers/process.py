"""Start and stop a real ``celery worker`` subprocess: the one way the demo, the tests, the fault
tests and the benchmarks do it.

The worker runs in its own session (process group) so that stopping it also stops its pool
children. *Ready* is Celery's own "ready." line; *warm* additionally waits for every pool child
of a worker that serves a model stage (transcribe, analyze) to log ``models_warmed_up``
(:mod:`pipeline.warmup`): Celery says "ready." before the children have loaded their models, so
a caller that measures, or injects a fault, wants a warm worker. Both are polled with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from db.models import Stage

ALL_QUEUES = ",".join(stage.value for stage in Stage)
MODEL_QUEUES = frozenset({Stage.TRANSCRIBE.value, Stage.ANALYZE.value})
WARM_LINE = "models_warmed_up"


class WorkerStartError(RuntimeError):
    """Raised when the worker exits or is not ready before the deadline (the log says why)."""


def warm_ups(queues: str, concurrency: int) -> int:
    """How many ``models_warmed_up`` lines a warm worker has logged: one per pool child when it
    serves a stage that loads models, none for an ingest-only worker."""
    return concurrency if MODEL_QUEUES & set(queues.split(",")) else 0


def worker_command(
    *,
    queues: str = ALL_QUEUES,
    concurrency: int = 2,
    name: str = "w1",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The worker as every harness runs it: ``python -m workers`` (:mod:`workers.launch`,
    Celery's worker without the ``celery`` command's imports), no gossip/mingle: quicker
    start, nothing to wait for between test workers."""
    return [
        sys.executable, "-m", "workers",
        "-Q", queues, f"--concurrency={concurrency}", "--loglevel=INFO",
        f"--hostname={name}@%h", "--without-gossip", "--without-mingle", *extra_args,
    ]  # fmt: skip


def launch(
    command: Sequence[str],
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, appending stdout and stderr to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(command),
            env=dict(env) if env is not None else os.environ.copy(),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass(frozen=True)
class Readiness:
    """When (``time.monotonic()``) the worker said "ready." and when it was warm."""

    ready: float
    warm: float


def wait_ready(
    proc: subprocess.Popen[bytes],
    log_file: Path,
    *,
    timeout: float,
    warm: int = 0,
    every: float = 0.05,
    since: int = 0,
) -> Readiness:
    """Wait for "ready." and ``warm`` ``models_warmed_up`` lines in the log written after byte
    ``since``; :class:`WorkerStartError` when the worker exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    ready = 0.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WorkerStartError(f"the worker exited at start (code {proc.returncode})")
        with log_file.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        if not ready and "ready." in text:
            ready = time.monotonic()
        if ready and text.count(WARM_LINE) >= warm:
            return Readiness(ready, time.monotonic())
        time.sleep(every)
    what = "warm" if ready else "ready"
    raise WorkerStartError(f"the worker was not {what} after {timeout:.0f} s")


def start_worker(
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    queues: str = ALL_QUEUES,
    concurrency: int = 2,
    name: str = "w1",
    ready_timeout: float = 120,
    extra_args: tuple[str, ...] = (),
    warm: bool = False,
    command: Sequence[str] | None = None,
    wrapper: Sequence[str] = (),
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a worker and return it once it reports ready (``warm``: and its models loaded).

    ``command`` replaces the default :func:`worker_command` (e.g. ``teleai worker …``);
    ``wrapper`` is put in front of it (e.g. ``sh -c 'echo $$ > cgroup.procs; exec "$@"'``).
    A worker that fails to start is stopped before the error is raised.
    """
    argv = [*wrapper, *(command or worker_command(
        queues=queues, concurrency=concurrency, name=name, extra_args=extra_args
    ))]  # fmt: skip
    since = log_file.stat().st_size if log_file.exists() else 0
    proc = launch(argv, log_file, env=env, cwd=cwd)
    try:
        wait_ready(
            proc,
            log_file,
            timeout=ready_timeout,
            warm=warm_ups(queues, concurrency) if warm else 0,
            since=since,
        )
    except BaseException:
        stop_worker(proc, timeout=10)
        raise
    return proc


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Warm shutdown (SIGTERM: running tasks finish), SIGKILL after ``timeout`` or on Ctrl-C;
    always the whole process group, so no pool child outlives it (also one whose main process
    already died)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):  # children left behind
        os.killpg(proc.pid, signal.SIGKILL)
