"""The pipeline on object storage, in-process: intake uploads to SeaweedFS, the stages fetch.

The row's ``file_path`` is the ``s3://`` reference and its checksum the SHA-256 computed on the
way in; every stage runs from a temporary copy that is gone afterwards, so nothing stays under
``TELEAI_STORAGE_DIR``. A refused duplicate leaves no object behind; a missing object fails the
file with a message that names the user's file.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from db.models import AudioFile
from pipeline import runner
from pipeline.errors import StoredFileMissing
from pipeline.intake import record_submission
from pipeline.settings import Settings
from tests.speech import speech_file
from tests.storage_server import APP_KEY, APP_SECRET, REGION, SeaweedS3

SENTENCE = "Please send the quarterly report to the finance team before Monday morning."


@pytest.fixture
def bucket(s3_server: SeaweedS3) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def settings(s3_server: SeaweedS3, bucket: str, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=SecretStr(database_url),
        storage_dir=tmp_path / "storage",
        storage_url=f"s3://{bucket}/calls",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=REGION,
        s3_access_key_id=SecretStr(APP_KEY),
        s3_secret_access_key=SecretStr(APP_SECRET),
    )


def left_behind(settings: Settings) -> list[Path]:
    root = settings.storage_dir
    return sorted(p for p in root.rglob("*") if not p.is_dir()) if root.exists() else []


def test_whole_chain_on_object_storage(
    uow: runner.UnitOfWork,
    owner: uuid.UUID,
    settings: Settings,
    s3_server: SeaweedS3,
    bucket: str,
    tmp_path: Path,
) -> None:
    path = speech_file(SENTENCE, "flac", tmp_path)
    with uow() as session:
        recorded = record_submission(session, path, user_id=owner, settings=settings)
    assert runner.run_ingest(uow, recorded.file_id, settings)
    version_id = runner.run_transcribe(uow, recorded.file_id, settings)
    assert version_id is not None  # analysis reads the database only: no storage left to test

    with uow() as session:
        row = session.get(AudioFile, recorded.file_id)
        assert row is not None
        assert row.stage == "analyze" and row.error_message is None, row.error_message
        assert row.file_path.startswith(f"s3://{bucket}/calls/") and row.file_path.endswith(".flac")
        assert row.checksum == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row.duration_seconds is not None and row.duration_seconds > 1
    assert s3_server.keys(bucket) == [row.file_path.removeprefix(f"s3://{bucket}/")]
    assert left_behind(settings) == [], "nothing but removed temp copies under the storage dir"


def test_duplicate_upload_leaves_no_object(
    uow: runner.UnitOfWork,
    owner: uuid.UUID,
    settings: Settings,
    s3_server: SeaweedS3,
    bucket: str,
    tmp_path: Path,
) -> None:
    data = speech_file(SENTENCE, "ogg", tmp_path).read_bytes()
    with uow() as session:
        first = record_submission(
            session, io.BytesIO(data), user_id=owner, settings=settings, original_name="a.ogg"
        )
        again = record_submission(
            session, io.BytesIO(data), user_id=owner, settings=settings, original_name="b.ogg"
        )
    assert again.duplicate_of == first.file_id
    assert len(s3_server.keys(bucket)) == 1, "the duplicate's upload was removed"


def test_missing_object_fails_the_file_naming_it(
    uow: runner.UnitOfWork,
    owner: uuid.UUID,
    settings: Settings,
    s3_server: SeaweedS3,
    bucket: str,
    tmp_path: Path,
) -> None:
    path = speech_file(SENTENCE, "wav", tmp_path)
    with uow() as session:
        recorded = record_submission(
            session, path, user_id=owner, settings=settings, original_name="Monday call.wav"
        )
    assert recorded.stored_ref is not None
    s3_server.client(admin=True).delete_object(
        Bucket=bucket, Key=recorded.stored_ref.removeprefix(f"s3://{bucket}/")
    )
    with pytest.raises(StoredFileMissing):
        runner.run_ingest(uow, recorded.file_id, settings)
    with uow() as session:
        row = session.get(AudioFile, recorded.file_id)
        assert row is not None and row.status == "failed"
        assert row.error_message is not None and "Monday call.wav" in row.error_message
    assert left_behind(settings) == []
