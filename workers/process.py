"""Start and stop a real ``celery worker`` subprocess (demo, tests, benchmarks).

The worker runs in its own session (process group) so that stopping it also stops its pool
children; readiness is Celery's own "ready." log line, polled with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from db.models import Stage

ALL_QUEUES = ",".join(stage.value for stage in Stage)


class WorkerStartError(RuntimeError):
    """Raised when the worker exits or is not ready before the deadline (the log says why)."""


def start_worker(
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    queues: str = ALL_QUEUES,
    concurrency: int = 2,
    name: str = "w1",
    ready_timeout: float = 120,
    extra_args: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start ``celery -A workers.app worker`` and return it once it reports ready."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                "-Q", queues, f"--concurrency={concurrency}", "--loglevel=INFO",
                f"--hostname={name}@%h", "--without-gossip", "--without-mingle", *extra_args,
            ],
            env=dict(env) if env is not None else os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise WorkerStartError(f"the worker exited at start (code {proc.returncode})")
            if "ready." in log_file.read_text(errors="replace"):
                return proc
            time.sleep(0.2)
        raise WorkerStartError(f"the worker was not ready after {ready_timeout:.0f} s")
    except BaseException:
        stop_worker(proc, timeout=10)
        raise


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Warm shutdown (SIGTERM: running tasks finish), SIGKILL after ``timeout`` or on Ctrl-C;
    always the whole process group, so no pool child outlives it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
