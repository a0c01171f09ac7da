"""No password reaches a log line, a traceback or an error message, in console or JSON mode.

The database URL carries a password and points at a port where nothing listens, so every
attempt to use it fails with a driver error, the case where a Rich traceback printed the
password seven times (it shows each frame's local variables, connection strings included).
A real worker gets an ingest message and fails on the database; the real CLI fails its
service check. Their whole output is searched for the password, plain and URL-encoded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.harness import free_port
from tests.integration.conftest import REDIS_URL, VENV_BIN, start_worker, stop_worker

# Characters that URL encoding changes, so both spellings are searched for.
PASSWORD = "Hunter2-s3cr3t/pw@x"
ENCODED = quote(PASSWORD, safe="")


def env_with_unreachable_database(tmp_path: Path, *, json_logs: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEAI_")}
    base = REDIS_URL.rsplit("/", 1)[0]
    env.update(
        {
            "TELEAI_DATABASE_URL": (
                f"postgresql+psycopg://teleai:{ENCODED}@127.0.0.1:{free_port()}/teleai_pro"
            ),
            "TELEAI_BROKER_URL": REDIS_URL,
            "TELEAI_RESULT_BACKEND": f"{base}/6",
            "TELEAI_STORAGE_DIR": str(tmp_path / "storage"),
            "TELEAI_LOG_JSON": "true" if json_logs else "false",
            "TELEAI_LOG_LEVEL": "DEBUG",
            "TELEAI_PRELOAD_MODELS": "false",
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        }
    )
    return env


def assert_no_password(output: str) -> None:
    assert output.strip(), "no output to check"
    for spelling in (PASSWORD, ENCODED, "s3cr3t"):
        assert spelling not in output, f"{spelling!r} leaked:\n{output[-6000:]}"


def wait_for(log_file: Path, *needles: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_file.read_text(errors="replace")
        if all(needle in text for needle in needles):
            return text
        time.sleep(0.3)
    raise AssertionError(f"{needles} not logged in {timeout:.0f} s:\n{text[-4000:]}")


@pytest.mark.parametrize("json_logs", [False, True], ids=["console", "json"])
def test_a_worker_failing_on_the_database_never_logs_the_password(
    redis_url: str, tmp_path: Path, json_logs: bool
) -> None:
    env = env_with_unreachable_database(tmp_path, json_logs=json_logs)
    log_file = tmp_path / "worker.log"
    worker = start_worker(env, log_file, queues="ingest", concurrency=1)
    try:
        file_id = str(uuid.uuid4())
        subprocess.run(
            [sys.executable, "-c", f"from workers.tasks import ingest; ingest.delay({file_id!r})"],
            env=env,
            check=True,
            timeout=60,
        )
        # The task runs, fails on the database and is retried: a traceback is logged.
        wait_for(log_file, file_id, "Traceback", "OperationalError")
    finally:
        stop_worker(worker)
    text = log_file.read_text(errors="replace")
    assert_no_password(text)
    if json_logs:
        lines = [line for line in text.splitlines() if line.startswith("{")]
        assert lines and all(json.loads(line) for line in lines)
        assert any("exception" in json.loads(line) for line in lines)


@pytest.mark.parametrize("json_logs", [False, True], ids=["console", "json"])
def test_the_cli_failing_on_the_database_never_prints_the_password(
    tmp_path: Path, json_logs: bool
) -> None:
    env = env_with_unreachable_database(tmp_path, json_logs=json_logs)
    audio = tmp_path / "call.wav"
    audio.write_bytes(b"RIFF")
    drop = tmp_path / "drop"
    drop.mkdir()
    for args in (
        ["ingest", str(audio)],
        ["users", "list"],
        ["watch", str(drop), "--once"],
        ["db", "upgrade"],
    ):
        result = subprocess.run(
            [str(VENV_BIN / "teleai"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode != 0, args
        assert_no_password(result.stdout + result.stderr)
