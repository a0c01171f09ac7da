"""Every process a test run starts ends with the run, and a run that leaves one behind fails.

A pytest plugin (``-p tests.processes`` in ``pyproject.toml``), because the fixtures that
start workers, Redis servers, watchers and embedded services cannot see each other, and a
process that outlives its fixture (a worker whose main process was killed while its pool
children kept running, a daemonised grandchild, a fixture that overwrote a handle) is found by
nobody. So the run itself keeps the books:

- **Marker.** At start the run adds ``<run id>@<pytest pid>`` to :data:`MARKER` in its own
  environment, so every process started from the tests inherits it — also a pool child or a
  grandchild that was re-parented to init when its parent died. The name has no ``TELEAI_``
  prefix on purpose: the harness drops ``TELEAI_*`` variables when it builds a worker's
  environment. A nested pytest (the leak check's own test) appends its token.
- **The check.** In ``pytest_sessionfinish``, after pytest tore every fixture down (also after
  a failure or an interrupt), each descendant of the pytest process and each process carrying
  this run's token is a survivor. Survivors get a short grace (one that was just stopped may
  still be exiting), then each one still alive is listed, killed (its whole process group when
  it leads one) and the run fails with exit status 1 and a "leaked processes" section.
- **Interrupts.** SIGTERM is turned into ``KeyboardInterrupt``, so a killed run tears its
  fixtures down like Ctrl-C does and still reaches the check. A second SIGINT/SIGTERM while it
  is tearing down kills every survivor at once. An ``atexit`` hook kills whatever is left when
  the run ends some other way.
- **Orphans.** A run killed with SIGKILL cannot clean up after itself; the next run on the host
  kills the processes whose every marker token names a pytest process that is gone.

Helpers that end with pytest by design and hold nothing (multiprocessing's resource tracker
and forkserver, joblib's loky workers: they exit when their parent's pipe closes) are not
counted.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import psutil
import pytest

MARKER = "PYTEST_TELEAI_RUN"
# How long a survivor may take to exit (one just stopped may still be on its way out).
GRACE_SECONDS = float(os.environ.get("PYTEST_TELEAI_LEAK_GRACE", "5"))
TOKEN = f"{secrets.token_hex(4)}@{os.getpid()}"
# Started by the interpreter or a library for the pytest process itself; they end with it.
_ENDS_WITH_PARENT = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "joblib.externals.loky",
    "loky.backend.popen_loky",
)


def _tokens(environ: dict[str, str]) -> list[str]:
    return [t for t in environ.get(MARKER, "").split(":") if t]


def _install_marker() -> None:
    os.environ[MARKER] = ":".join([*_tokens(dict(os.environ)), TOKEN])


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.Error, OSError):  # gone, or another user's (then not ours either)
        return {}


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ends_with_parent(proc: psutil.Process) -> bool:
    try:
        command = " ".join(proc.cmdline())
    except psutil.Error:
        return True  # gone already
    return any(name in command for name in _ENDS_WITH_PARENT)


def survivors(token: str = TOKEN) -> list[psutil.Process]:
    """Live processes this run started: descendants of pytest and carriers of ``token``."""
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        found.update({p.pid: p for p in me.children(recursive=True)})
    for proc in psutil.process_iter():
        if proc.pid not in found and token in _tokens(_environ(proc)):
            found[proc.pid] = proc
    return [
        p
        for pid, p in sorted(found.items())
        if pid not in skip and _alive(p) and not _ends_with_parent(p)
    ]


def describe(proc: psutil.Process) -> str:
    """``pid 123 (ppid 1): celery -A workers.app worker … --hostname=w1@host``."""
    try:
        command = " ".join(proc.cmdline()) or proc.name()
        ppid = proc.ppid()
    except psutil.Error:
        return f"pid {proc.pid} (gone)"
    if len(command) > 240:
        command = command[:237] + "..."
    return f"pid {proc.pid} (ppid {ppid}): {command}"


def kill(procs: Iterable[psutil.Process]) -> None:
    """SIGKILL each process, and the whole group of one that leads its own process group."""
    own_group = os.getpgrp()
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            group = os.getpgid(proc.pid)
            if group == proc.pid and group != own_group:
                os.killpg(group, signal.SIGKILL)
            else:
                proc.kill()
    psutil.wait_procs(procs, timeout=5)


def reap_orphans() -> list[str]:
    """Kill processes left by earlier runs that were killed outright: every marker token they
    carry names a pytest process that no longer exists. Returns what was killed."""
    orphans = []
    for proc in psutil.process_iter():
        tokens = _tokens(_environ(proc))
        if not tokens or TOKEN in tokens or not _alive(proc):
            continue
        pids = [int(t.rsplit("@", 1)[1]) for t in tokens if t.rsplit("@", 1)[-1].isdigit()]
        if pids and not any(psutil.pid_exists(pid) for pid in pids):
            orphans.append(proc)
    shown = [describe(p) for p in orphans]
    kill(orphans)
    return shown


@dataclass
class Leaks:
    """What the check found, for the summary."""

    leaked: list[str]
    reaped_at_start: list[str]


_leaks = pytest.StashKey[Leaks]()
_signals = {"count": 0}


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """First SIGINT/SIGTERM: interrupt, so fixtures are torn down; later ones: kill now."""
    _signals["count"] += 1
    if _signals["count"] > 1:
        kill(survivors())
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


def _kill_at_exit() -> None:
    with contextlib.suppress(Exception):
        kill(survivors())


def pytest_configure(config: pytest.Config) -> None:
    _install_marker()
    config.stash[_leaks] = Leaks([], reap_orphans())
    with contextlib.suppress(ValueError):  # not the main thread (pytest run in a thread)
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    atexit.register(_kill_at_exit)


@pytest.hookimpl(trylast=True)  # after the runner tore down the fixtures (also on interrupt)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found = survivors()
    if found:
        _, alive = psutil.wait_procs(found, timeout=GRACE_SECONDS)
        found = [p for p in alive if _alive(p)]
    if not found:
        return
    session.config.stash[_leaks].leaked = [describe(p) for p in found]
    kill(found)
    if session.exitstatus == pytest.ExitCode.OK or session.exitstatus == 5:  # 5: no tests
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    leaks = config.stash.get(_leaks, None)
    if leaks is None:
        return
    if leaks.reaped_at_start:
        terminalreporter.section("processes left by an earlier, killed run (killed now)")
        for line in leaks.reaped_at_start:
            terminalreporter.write_line(line)
    if leaks.leaked:
        terminalreporter.section("leaked processes", red=True, bold=True)
        terminalreporter.write_line(
            f"{len(leaks.leaked)} process(es) started by this run were still running after "
            "every fixture was torn down (now killed); the run fails:",
            red=True,
        )
        for line in leaks.leaked:
            terminalreporter.write_line(f"  {line}")
