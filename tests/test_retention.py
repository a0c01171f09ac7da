"""Retention purge on real PostgreSQL, a real directory and a real SeaweedFS bucket.

Only copies of files soft-deleted longer ago than ``TELEAI_RETENTION_DAYS`` go; the rows stay
and record the purge; a second run finds nothing; an outage defers, a reference outside
managed storage is never deleted.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from db.models import AudioFile
from pipeline import runner, storage
from pipeline.intake import record_submission
from pipeline.retention import purge_deleted
from pipeline.settings import Settings
from tests.storage_server import APP_KEY, APP_SECRET, REGION, SeaweedS3, free_port


def _local(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=SecretStr(database_url), storage_dir=tmp_path / "storage", retention_days=30
    )


def _s3(server: SeaweedS3, bucket: str, local: Settings) -> Settings:
    return local.model_copy(
        update={
            "storage_url": f"s3://{bucket}/calls",
            "s3_endpoint_url": server.endpoint_url,
            "s3_region": REGION,
            "s3_access_key_id": SecretStr(APP_KEY),
            "s3_secret_access_key": SecretStr(APP_SECRET),
        }
    )


def _store(uow: runner.UnitOfWork, owner: uuid.UUID, settings: Settings, tmp_path: Path) -> str:
    src = tmp_path / f"{uuid.uuid4().hex}.wav"
    src.write_bytes(uuid.uuid4().bytes * 100)
    with uow() as session:
        return str(record_submission(session, src, user_id=owner, settings=settings).file_id)


def _delete(engine: Engine, file_id: str, days_ago: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audio_files SET deleted_at = now() - :d * interval '1 day' WHERE id = :i"),
            {"d": days_ago, "i": file_id},
        )


def _row(uow: runner.UnitOfWork, file_id: str) -> AudioFile:
    with uow() as session:
        row = session.get(AudioFile, uuid.UUID(file_id))
        assert row is not None
        session.expunge(row)
        return row


def _exists(ref: str, settings: Settings) -> bool:
    return storage.resolve(ref, settings).size(ref) is not None


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_only_copies_past_retention_are_removed_once(
    uow: runner.UnitOfWork,
    engine: Engine,
    owner: uuid.UUID,
    database_url: str,
    s3_server: SeaweedS3,
    tmp_path: Path,
    backend: str,
) -> None:
    settings = _local(database_url, tmp_path)
    if backend == "s3":
        settings = _s3(s3_server, s3_server.new_bucket("retention"), settings)
    old, recent, kept = (_store(uow, owner, settings, tmp_path) for _ in range(3))
    _delete(engine, old, days_ago=31)
    _delete(engine, recent, days_ago=29)
    refs = {i: _row(uow, i).file_path for i in (old, recent, kept)}

    first = purge_deleted(uow, settings)
    second = purge_deleted(uow, settings)

    assert (first.removed, first.absent, first.skipped, first.retry) == (1, 0, 0, 0)
    assert second.removed == second.absent == 0, "a purged file is never looked at again"
    assert not _exists(refs[old], settings)
    assert _exists(refs[recent], settings) and _exists(refs[kept], settings)
    purged = _row(uow, old)
    assert purged.deleted_at is not None and purged.metadata_["storage_purge"] == "removed"
    assert "storage_purged_at" in purged.metadata_, "the row stays and says when"
    assert "storage_purged_at" not in _row(uow, recent).metadata_


def test_outage_defers_and_foreign_paths_are_never_deleted(
    uow: runner.UnitOfWork,
    engine: Engine,
    owner: uuid.UUID,
    database_url: str,
    s3_server: SeaweedS3,
    tmp_path: Path,
) -> None:
    local = _local(database_url, tmp_path)
    s3 = _s3(s3_server, s3_server.new_bucket("retention"), local)
    in_s3 = _store(uow, owner, s3, tmp_path)
    foreign = _store(uow, owner, local, tmp_path)
    outside = tmp_path / "not-managed.wav"
    outside.write_bytes(b"keep me")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audio_files SET file_path = :p WHERE id = :i"),
            {"p": str(outside), "i": foreign},
        )
    for file_id in (in_s3, foreign):
        _delete(engine, file_id, days_ago=40)

    down = s3.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    deferred = purge_deleted(uow, down)
    assert (deferred.retry, deferred.skipped) == (1, 1)
    assert outside.read_bytes() == b"keep me", "a path outside managed storage is never deleted"
    assert _row(uow, foreign).metadata_["storage_purge"] == "skipped"
    assert "storage_purged_at" not in _row(uow, in_s3).metadata_, "left for the next run"

    later = purge_deleted(uow, s3)
    assert later.removed == 1 and not _exists(_row(uow, in_s3).file_path, s3)


def test_purge_task_is_registered() -> None:
    from workers import tasks

    assert tasks.purge_deleted.name == "teleai.purge_deleted"
