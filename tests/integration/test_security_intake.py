"""Submitting files, attacked: NUL names, the broker down, a squatted operator name, rows that
point outside managed storage. Real PostgreSQL, Redis, ``teleai`` processes and a real worker.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import Engine, select

from db import access
from db.engine import unit_of_work
from db.files import record_upload
from db.models import AudioFile, User
from pipeline.settings import Settings
from tests.conftest import PgAdmin
from tests.db.app_roles import login_role
from tests.db.factories import make_user
from tests.harness import free_port
from tests.integration.conftest import VENV_BIN, pipeline_env, start_worker, stop_worker
from tests.speech import espeak_wav
from workers.submit import BROKER_DOWN, Outcome, submit


def teleai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "teleai"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def queued_file_ids(redis_url: str, queue: str = "ingest") -> list[str]:
    """The file ids of the messages waiting in a Celery queue (kombu's Redis list)."""
    client = redis.Redis.from_url(redis_url)
    ids = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(str(args[0]))
    return ids


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def env(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    environment = pipeline_env(database_url, redis_url, tmp_path / "storage")
    try:
        yield environment
    finally:
        redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    return espeak_wav("the quarterly report is late", tmp_path / "call.wav")


def test_a_nul_in_the_file_name_is_refused_and_nothing_is_kept(
    engine: Engine, database_url: str, tmp_path: Path, speech: Path
) -> None:
    with unit_of_work(engine) as session:
        owner = make_user(session, "nul_owner", role="analyst").id
    storage = tmp_path / "nul-storage"
    settings = Settings(database_url=SecretStr(database_url), storage_dir=storage)
    result = submit(
        io.BytesIO(speech.read_bytes()),
        owner_id=owner,
        file_name="call\x00.wav",
        settings=settings,
    )
    assert result.outcome is Outcome.REFUSED
    assert result.reason is not None and "NUL character" in result.reason
    assert result.file_id is None and not result.queued
    assert stored_files(storage) == []
    with unit_of_work(engine) as session:
        assert session.scalars(select(AudioFile)).all() == []


def test_ingest_with_the_broker_down_keeps_the_row_and_a_rerun_sends_it(
    engine: Engine, env: dict[str, str], redis_url: str, speech: Path
) -> None:
    down = {**env, "TELEAI_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    started = time.monotonic()
    first = teleai(down, "ingest", str(speech), "--json")
    assert time.monotonic() - started < 60, "the unreachable broker was waited on too long"
    assert first.returncode == 3, first.stdout + first.stderr
    assert BROKER_DOWN in " ".join(first.stderr.split()), first.stderr
    assert "Traceback" not in first.stderr
    [row] = json.loads(first.stdout)
    assert (row["status"], row["queued"]) == ("pending", False)
    with unit_of_work(engine) as session:
        kept = session.get(AudioFile, uuid.UUID(row["id"]))
        assert kept is not None and (kept.status, kept.stage) == ("pending", "ingest")
    assert queued_file_ids(redis_url) == []

    still_down = teleai(down, "ingest", str(speech), "--json")  # never a silent "duplicate"
    assert still_down.returncode == 3, still_down.stdout + still_down.stderr
    assert BROKER_DOWN in " ".join(still_down.stderr.split())
    assert json.loads(still_down.stdout)[0]["queued"] is False

    again = teleai(env, "ingest", str(speech), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    [rerun] = json.loads(again.stdout)
    assert rerun["id"] == row["id"] and rerun["queued"] is True
    assert queued_file_ids(redis_url) == [row["id"]]  # the message the first run could not send
    with unit_of_work(engine) as session:
        assert len(session.scalars(select(AudioFile)).all()) == 1


def test_uploads_without_user_go_to_the_real_operator_through_an_intake_login(
    pg_admin: PgAdmin, engine: Engine, database_url: str, env: dict[str, str], speech: Path
) -> None:
    """The drop folder's least privilege (teleai_intake) is enough to submit, and the owner of
    an upload without --user is the flagged operator, not a user who took the name first."""
    with unit_of_work(engine) as session:
        squatter = make_user(session, "operator", role="viewer").id
    with login_role(pg_admin, "intake", access.INTAKE_ROLE) as intake:
        result = teleai({**env, "TELEAI_DATABASE_URL": intake.url(database_url)}, "ingest",
                        str(speech), "--json")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [row] = json.loads(result.stdout)
    with unit_of_work(engine) as session:
        audio = session.get(AudioFile, uuid.UUID(row["id"]))
        assert audio is not None
        owner = session.get(User, audio.user_id)
        assert owner is not None and owner.is_operator and owner.id != squatter


@pytest.fixture
def ingest_worker(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    worker_env = {**env, "TELEAI_PRELOAD_MODELS": "false"}
    worker = start_worker(worker_env, tmp_path / "worker.log", queues="ingest", concurrency=1)
    try:
        yield worker_env
    finally:
        stop_worker(worker)


def wait_failed(engine: Engine, ids: list[uuid.UUID], timeout: float = 90) -> dict[uuid.UUID, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with unit_of_work(engine) as session:
            rows = session.scalars(select(AudioFile).where(AudioFile.id.in_(ids))).all()
            messages = {r.id: r.error_message for r in rows if r.status == "failed"}
        if len(messages) == len(ids):
            return {k: str(v) for k, v in messages.items()}
        time.sleep(0.3)
    raise AssertionError(f"not all failed in {timeout:.0f} s: {messages}")


def test_a_row_pointing_outside_storage_fails_with_a_neutral_message(
    engine: Engine, ingest_worker: dict[str, str], tmp_path: Path, speech: Path
) -> None:
    storage = Path(ingest_worker["TELEAI_STORAGE_DIR"])
    storage.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    real = outside / "call.wav"
    real.write_bytes(speech.read_bytes())  # a readable audio file, just not ours
    link = storage / "call.wav"
    link.symlink_to(real)  # inside the root by name, outside once resolved
    targets = {
        "exists": str(real),
        "missing": str(tmp_path / "nowhere" / "call.wav"),
        "traversal": f"{storage}/../elsewhere/call.wav",
        "symlink": str(link),
    }
    ids = {}
    with unit_of_work(engine) as session:
        owner = make_user(session, "prober", role="analyst")
        for kind, path in targets.items():
            row = record_upload(
                session,
                user_id=owner.id,
                file_name="call.wav",
                file_path=path,
                file_size=real.stat().st_size,
                file_format="wav",
                checksum=uuid.uuid4().hex * 2,
            )
            ids[kind] = row.id
    code = "from workers.tasks import ingest\n" + "".join(
        f"ingest.delay({str(i)!r})\n" for i in ids.values()
    )
    subprocess.run([sys.executable, "-c", code], env=ingest_worker, check=True, timeout=60)
    messages = wait_failed(engine, list(ids.values()))
    shown = {kind: messages[file_id] for kind, file_id in ids.items()}
    assert len(set(shown.values())) == 1, shown  # the same words whether the path exists or not
    message = shown["exists"]
    assert "outside managed storage" in message, message
    for leak in ("No such file", "not found", "Permission", "exist", str(outside), "nowhere"):
        assert leak not in message, (leak, message)
    assert real.exists()  # untouched


def test_a_worker_logged_in_as_teleai_worker_runs_ingest_and_its_periodic_jobs(
    pg_admin: PgAdmin,
    engine: Engine,
    database_url: str,
    env: dict[str, str],
    speech: Path,
    tmp_path: Path,
) -> None:
    """What compose runs: workers as a login in teleai_worker, not the owner."""
    submitted = teleai(env, "ingest", str(speech), "--json")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    file_id = uuid.UUID(json.loads(submitted.stdout)[0]["id"])
    log_file = tmp_path / "worker-role.log"
    with login_role(pg_admin, "worker", access.WORKER_ROLE) as role:
        worker_env = {
            **env,
            "TELEAI_DATABASE_URL": role.url(database_url),
            "TELEAI_PRELOAD_MODELS": "false",
        }
        worker = start_worker(worker_env, log_file, queues="ingest", concurrency=1)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with unit_of_work(engine) as session:
                    row = session.get(AudioFile, file_id)
                    assert row is not None
                    if row.stage != "ingest" or row.status == "failed":
                        break
                time.sleep(0.3)
        finally:
            stop_worker(worker)
    log = log_file.read_text(errors="replace")
    assert row is not None
    assert (row.status, row.stage) != ("failed", "ingest"), row.error_message
    assert row.stage == "transcribe" and row.duration_seconds is not None, (row.stage, log[-3000:])
    assert "permission denied" not in log.lower() and "InsufficientPrivilege" not in log, log
