"""Start and stop a real ``teleai serve`` subprocess (tests, benchmarks, the demo).

Like :mod:`workers.process`: the server runs in its own session (process group), so stopping it
stops uvicorn's worker processes too; readiness is ``/healthz`` answering, polled with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from interfaces.ports import free_port

__all__ = ["ServerStartError", "free_port", "start_server", "stop_server"]
# free_port is re-exported: start_server's callers (tests, bench) choose the port with it.


class ServerStartError(RuntimeError):
    """Raised when the server exits or does not answer before the deadline (the log says why)."""


def start_server(
    log_file: Path,
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
    host: str = "127.0.0.1",
    ready_timeout: float = 60,
) -> subprocess.Popen[bytes]:
    """Run ``teleai serve`` and return it once ``GET /healthz`` answers 200."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from interfaces.cli import main; main()", "serve",
             "--host", host, "--port", str(port),
             "--workers", str(workers), "--log-level", "warning"],
            env=dict(env) if env is not None else os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://{host}:{port}/healthz"
    try:
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerStartError(f"the server exited at start (code {proc.returncode})")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return proc
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ServerStartError(f"the server did not answer {url} after {ready_timeout:.0f} s")
    except BaseException:
        stop_server(proc, timeout=10)
        raise


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Graceful shutdown (SIGTERM: requests in flight finish), SIGKILL after ``timeout``; always
    the whole process group."""
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
