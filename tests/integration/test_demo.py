"""`python -m interfaces.demo` as it runs on a fresh machine: no PostgreSQL, Redis, ffmpeg or
espeak-ng. The demo runs as a subprocess with a PATH that hides those tools and with
``TELEAI_DEMO_EMBEDDED=1``, so it starts its embedded PostgreSQL and Valkey even though this
machine has servers; it transcribes and analyses the sample the project ships, and must leave no
process behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# What a fresh machine lacks: media tools and any PostgreSQL/Redis of its own.
HIDDEN = {
    "ffmpeg", "ffprobe", "espeak-ng", "espeak", "sox",
    "postgres", "pg_ctl", "pg_ctlcluster", "initdb", "psql", "pg_isready",
    "redis-server", "redis-cli", "valkey-server", "valkey-cli",
}  # fmt: skip
DEMO_TIMEOUT_S = 300
# What tiny.en hears in interfaces/samples/welcome.ogg.
SPOKEN = ("welcome", "sample was spoken by machine", "recordings into the ingest folder")


def fresh_machine_path(directory: Path) -> str:
    """A PATH with the venv and every system command except :data:`HIDDEN`."""
    directory.mkdir()
    seen: set[str] = set()
    for system_dir in map(Path, SYSTEM_DIRS):
        if not system_dir.is_dir():
            continue
        for entry in system_dir.iterdir():
            if entry.name in HIDDEN or entry.name in seen:
                continue
            seen.add(entry.name)
            (directory / entry.name).symlink_to(entry)
    return f"{VENV_BIN}{os.pathsep}{directory}"


def processes_mentioning(marker: str) -> dict[int, str]:
    """Processes (other than this one) whose command line, environment or working directory
    mentions ``marker``: what the demo started carries its directory in one of them."""
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
            cwd = str((proc / "cwd").readlink())
        except OSError:
            continue  # exited meanwhile, or a kernel thread
        if marker in cmdline or marker in environ or cwd.startswith(marker):
            found[int(proc.name)] = cmdline.strip() or cwd
    return found


def leftovers(marker: str, timeout: float = 10) -> dict[int, str]:
    """The processes still mentioning ``marker`` once ``timeout`` has passed (exits take a
    moment after a stop returns)."""
    deadline = time.monotonic() + timeout
    while (found := processes_mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def kill_all(pids: dict[int, str]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_demo(env: dict[str, str]) -> tuple[int, str]:
    """Run the demo; on timeout stop it as a user would (SIGTERM: it cleans up), then kill."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "interfaces.demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"the demo did not finish in {DEMO_TIMEOUT_S} s:\n{output[-6000:]}")
    return proc.returncode, output


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """A fresh demo directory outside pytest's tmp tree: as root, the embedded PostgreSQL runs
    as another user, and a pytest session starting meanwhile makes its own tree owner-only."""
    directory = Path(tempfile.mkdtemp(prefix="teleai-demo-"))
    yield directory / "demo"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S + 180)
def test_demo_on_a_fresh_machine(demo_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEAI_")}
    env.update(
        {
            "PATH": fresh_machine_path(tmp_path / "bin"),
            "TELEAI_DEMO_DIR": str(demo_dir),
            "TELEAI_DEMO_EMBEDDED": "1",
        }
    )
    for tool in ("ffmpeg", "ffprobe", "espeak-ng", "pg_ctl", "redis-server"):
        assert subprocess.run(["which", tool], env=env, capture_output=True).returncode != 0

    try:
        code, output = run_demo(env)
    finally:
        left = leftovers(str(demo_dir))
        kill_all(left)  # never leave them running, even when the test fails

    text = " ".join(output.split())  # rich wraps long lines at 80 columns
    assert code == 0, output[-6000:]
    assert "using embedded PostgreSQL 18." in text
    assert "using embedded Valkey" in text
    assert "espeak-ng not found: using the sample shipped with the project" in text
    for words in SPOKEN:
        assert words in text.lower(), f"{words!r} not in the transcript:\n{output[-6000:]}"
    assert "status completed" in text
    for analysis in ("sentiment (vader):", "keywords (", "entities (", "summary ("):
        assert analysis in text
    assert "demo completed" in text

    # Shutdown order: the worker, then Valkey, then PostgreSQL.
    worker = text.index("stopping the worker")
    valkey = text.index("stopped embedded Valkey in")
    postgres = text.index("stopped embedded PostgreSQL in")
    assert worker < valkey < postgres

    assert left == {}, f"the demo left processes running: {left}"
    announced = {int(pid) for pid in re.findall(r"\(pid (\d+)", text)}
    assert len(announced) == 3, text  # PostgreSQL, Valkey and the worker said who they were
    for pid in announced:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (demo_dir / "pg" / "PG_VERSION").read_text().strip() == "18"
