"""Stage runner in-process on real PostgreSQL and real models: redelivery, races, failures."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from bench.wer import word_error_rate
from db.models import Analysis, AudioFile, Transcription
from pipeline import intake, runner
from pipeline.analysis.records import ANALYSIS_TYPES
from pipeline.errors import EmptyAudio, UnsupportedAudio
from pipeline.settings import Settings
from tests.speech import speech_file

SENTENCE = "Please send the quarterly report to the finance team before Monday morning."


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=SecretStr(database_url), storage_dir=tmp_path / "storage")


def _submit(uow: runner.UnitOfWork, path: Path, owner: uuid.UUID, settings: Settings) -> uuid.UUID:
    with uow() as session:
        return intake.record_submission(session, path, user_id=owner, settings=settings).file_id


def _count(engine: Engine, model: type[Transcription] | type[Analysis]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def test_full_chain_in_process_and_redelivery_is_harmless(
    uow: runner.UnitOfWork, engine: Engine, owner: uuid.UUID, settings: Settings, tmp_path: Path
) -> None:
    path = speech_file(SENTENCE, "flac", tmp_path)
    file_id = _submit(uow, path, owner, settings)
    stored = Path(engine.connect().execute(select(AudioFile.file_path)).scalar_one())
    assert stored.is_relative_to(settings.storage_dir) and path.name not in str(stored)
    assert path.exists(), "the user's original stays where it was"

    assert runner.run_ingest(uow, file_id, settings)
    assert not runner.run_ingest(uow, file_id, settings), "a second ingest message is a no-op"

    version_id = runner.run_transcribe(uow, file_id, settings)
    assert version_id is not None
    assert runner.run_transcribe(uow, file_id, settings) is None
    assert _count(engine, Transcription) == 1

    assert runner.run_analyze(uow, version_id, settings)
    assert not runner.run_analyze(uow, version_id, settings)
    assert _count(engine, Analysis) == len(ANALYSIS_TYPES)  # conversation included

    with uow() as session:
        row = session.get(AudioFile, file_id)
        version = session.get(Transcription, version_id)
        assert row is not None and version is not None
        assert row.status == "completed" and row.error_message is None
        assert version.is_latest and version.version == 1
        assert word_error_rate(SENTENCE, version.transcription_text) <= 0.2
        timings = row.metadata_["stage_seconds"]
        assert {"validate", "probe", "decode", "transcribe", "analyze"} <= set(timings)


def test_two_workers_on_the_same_file_write_one_version(
    uow: runner.UnitOfWork, engine: Engine, owner: uuid.UUID, settings: Settings, tmp_path: Path
) -> None:
    file_id = _submit(uow, speech_file(SENTENCE, "wav", tmp_path), owner, settings)
    assert runner.run_ingest(uow, file_id, settings)
    results: list[uuid.UUID | None] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        results.append(runner.run_transcribe(uow, file_id, settings))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(r is None for r in results) == [False, True]
    assert _count(engine, Transcription) == 1


def test_duplicate_content_is_reported_not_processed_twice(
    uow: runner.UnitOfWork, owner: uuid.UUID, settings: Settings, tmp_path: Path
) -> None:
    path = speech_file(SENTENCE, "ogg", tmp_path)
    first = _submit(uow, path, owner, settings)
    with uow() as session:
        again = intake.record_submission(session, path, user_id=owner, settings=settings)
        forced = intake.record_submission(
            session, path, user_id=owner, settings=settings, force=True
        )
    assert again.duplicate_of == first and again.file_id == first
    assert forced.duplicate_of is None and forced.file_id != first


@pytest.mark.parametrize(
    ("name", "data", "error", "words"),
    [
        ("empty.wav", b"", EmptyAudio, "empty"),
        ("report.mp3", b"%PDF-1.7\n%binary\n" + b"x" * 2000, UnsupportedAudio, "pdf"),
    ],
)
def test_bad_input_fails_the_row_with_a_readable_message(
    uow: runner.UnitOfWork,
    owner: uuid.UUID,
    settings: Settings,
    tmp_path: Path,
    name: str,
    data: bytes,
    error: type[Exception],
    words: str,
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    file_id = _submit(uow, path, owner, settings)
    with pytest.raises(error):
        runner.run_ingest(uow, file_id, settings)
    with uow() as session:
        row = session.get(AudioFile, file_id)
        assert row is not None
        assert row.status == "failed"
        assert row.error_message is not None and words in row.error_message.lower()
        if name in {"report.mp3"}:
            assert name in row.error_message, "the message names the user's file"
        assert row.error_details is not None
        assert row.error_details["exception_type"] == error.__name__
        assert Path(row.file_path).exists(), "the stored copy is kept for the user"


def test_unsupported_extension_is_refused_before_any_row(
    uow: runner.UnitOfWork, owner: uuid.UUID, settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedAudio, match="unsupported extension"):
        _submit(uow, path, owner, settings)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AudioFile)).scalar_one() == 0
