"""The leak check (:mod:`tests.processes`) on real runs: a nested pytest whose tests leave
processes behind must fail and name them, and nothing it started may outlive it — also when it
is stopped with SIGTERM or SIGINT in the middle of a test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.processes import MARKER, TOKEN

REPO = Path(__file__).resolve().parent.parent


def _pytest(tmp_path: Path, source: str, *, outermost: bool = False) -> subprocess.Popen[str]:
    """A child ``pytest -p tests.processes`` on one test file written into ``tmp_path``;
    ``outermost``: without this run's marker, as if started from a shell."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "test_child.py").write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTEST_TELEAI_LEAK_GRACE": "1"}
    if outermost:
        env.pop(MARKER, None)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.processes", "-p", "no:cacheprovider",
         "-o", "addopts=", str(tmp_path / "test_child.py")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _running(tag: str) -> list[psutil.Process]:
    """Live processes of this run whose command line ends with ``tag`` (a unique sleep)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.cmdline()[-1:] == [tag]
                and TOKEN in proc.environ().get(MARKER, "")
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except (psutil.Error, IndexError):
            continue
    return found


def test_a_run_that_leaks_processes_fails_and_names_them(tmp_path: Path) -> None:
    child = _pytest(
        tmp_path,
        """
        import subprocess

        def test_leaks_a_worker_like_process():
            subprocess.Popen(["sleep", "3001"], start_new_session=True)  # never stopped

        def test_leaks_a_grandchild_reparented_to_init():
            subprocess.run(["sh", "-c", "sleep 3002 >/dev/null 2>&1 &"], check=True)

        def test_cleans_up():
            proc = subprocess.Popen(["sleep", "3003"])
            proc.kill()
            proc.wait()
        """,
    )
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 1, out
    assert "3 passed" in out and "leaked processes" in out, out
    assert "sleep 3001" in out and "sleep 3002" in out and "sleep 3003" not in out, out
    assert _running("3001") == [] and _running("3002") == []  # the check killed them


def test_a_clean_run_passes(tmp_path: Path) -> None:
    child = _pytest(
        tmp_path,
        """
        import subprocess

        def test_waits_for_what_it_starts():
            subprocess.run(["sleep", "0.1"], check=True)
        """,
    )
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0, out
    assert "leaked" not in out, out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_run_tears_down_fixtures_and_still_kills_leaks(
    tmp_path: Path, signum: signal.Signals
) -> None:
    ready = tmp_path / "ready"
    child = _pytest(
        tmp_path,
        f"""
        import pathlib, subprocess, time
        import pytest

        @pytest.fixture
        def server():
            proc = subprocess.Popen(["sleep", "3004"], start_new_session=True)
            try:
                yield proc
            finally:  # a well-behaved fixture: must run although the run is killed
                proc.kill()
                proc.wait()
                pathlib.Path({str(tmp_path / "torn-down")!r}).write_text("yes")

        def test_interrupted(server):
            subprocess.Popen(["sleep", "3005"], start_new_session=True)  # leaked
            pathlib.Path({str(ready)!r}).write_text("go")
            time.sleep(120)
        """,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()[0]
        time.sleep(0.1)
    started = time.monotonic()
    child.send_signal(signum)
    out, _ = child.communicate(timeout=60)
    assert time.monotonic() - started < 20, out
    assert child.returncode not in (0, -signum), out  # interrupted, not just killed
    assert (tmp_path / "torn-down").read_text() == "yes", out
    assert "sleep 3005" in out and "leaked processes" in out, out
    assert _running("3004") == [] and _running("3005") == []


def test_processes_of_a_run_killed_outright_are_killed_by_the_next_run(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    first = _pytest(
        tmp_path / "first",
        f"""
        import pathlib, subprocess, time

        def test_killed_with_sigkill():
            subprocess.Popen(["sleep", "3006"], start_new_session=True)
            pathlib.Path({str(ready)!r}).write_text("go")
            time.sleep(120)
        """,
        outermost=True,
    )

    def orphans() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.cmdline() == ["sleep", "3006"] and MARKER in proc.environ():
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
            time.sleep(0.1)
        first.kill()  # SIGKILL: no teardown, no check
        first.communicate(timeout=30)
        assert len(orphans()) == 1  # left behind, re-parented, still marked
        second = _pytest(tmp_path / "second", "def test_nothing():\n    pass\n", outermost=True)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 0, out
        assert "left by an earlier, killed run" in out and "sleep 3006" in out, out
        assert orphans() == []
    finally:
        for proc in orphans():
            proc.kill()
