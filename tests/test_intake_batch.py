"""Batched intake (``teleai ingest`` of a folder): one transaction per batch, the same rules
per file as one at a time. Real PostgreSQL, real files in a real storage directory."""

from __future__ import annotations

import uuid
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from db.models import AudioFile
from pipeline import intake, runner
from pipeline.settings import Settings
from workers.submit import chunks


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=SecretStr(database_url), storage_dir=tmp_path / "storage")


def _wav(path: Path, pitch: int) -> Path:
    """A short WAV whose bytes depend on ``pitch`` (distinct files, or equal ones on purpose)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes((pitch + i) % 256 for i in range(1600)))
    return path


def _stored(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.storage_dir.rglob("*") if p.is_file())


def test_chunks_batches_lazily_in_order() -> None:
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []
    assert list(chunks(range(3), 3)) == [[0, 1, 2]]
    consumed: list[int] = []

    def source() -> Iterator[int]:
        for i in range(10):
            consumed.append(i)
            yield i

    first = next(chunks(source(), 4))
    assert first == [0, 1, 2, 3] and consumed == [0, 1, 2, 3], "no read-ahead past one batch"
    with pytest.raises(ValueError):
        list(chunks(range(3), 0))


def test_a_batch_records_rows_and_finds_duplicates_inside_and_before_it(
    uow: runner.UnitOfWork, owner: uuid.UUID, settings: Settings, tmp_path: Path
) -> None:
    earlier = _wav(tmp_path / "earlier.wav", 1)
    with uow() as session:
        before = intake.record_submission(session, earlier, user_id=owner, settings=settings)
    paths = [
        _wav(tmp_path / "a.wav", 2),
        _wav(tmp_path / "same-as-earlier.wav", 1),
        _wav(tmp_path / "b.wav", 3),
        _wav(tmp_path / "same-as-a.wav", 2),
    ]
    staged = [intake.stage_upload(path, settings) for path in paths]
    with uow() as session:
        recorded = intake.record_staged(session, staged, user_id=owner, settings=settings)
    a, again, b, a_again = recorded
    assert a.duplicate_of is None and b.duplicate_of is None and a.file_id != b.file_id
    assert again.duplicate_of == before.file_id == again.file_id
    assert a_again.duplicate_of == a.file_id, "the batch's own earlier upload is found too"
    with uow() as session:
        rows = {r.id: r for r in session.scalars(select(AudioFile))}
    assert set(rows) == {before.file_id, a.file_id, b.file_id}
    for file_id, path in ((a.file_id, paths[0]), (b.file_id, paths[2])):
        row = rows[file_id]
        assert row.status == "pending" and row.stage == "ingest"
        assert row.upload_completed_at is not None
        assert row.upload_completed_at == row.upload_started_at
        assert row.metadata_["source_path"] == str(path)
        assert row.file_name == path.name and row.file_format == "wav"
    assert len(_stored(settings)) == 3, "duplicates' copies are removed, one copy per row"


def test_force_records_every_upload_and_a_failed_batch_leaves_no_copies(
    uow: runner.UnitOfWork, owner: uuid.UUID, settings: Settings, tmp_path: Path
) -> None:
    one = _wav(tmp_path / "one.wav", 5)
    staged = [intake.stage_upload(one, settings) for _ in range(3)]
    with uow() as session:
        recorded = intake.record_staged(
            session, staged, user_id=owner, settings=settings, force=True
        )
    assert len({r.file_id for r in recorded}) == 3 and all(r.duplicate_of is None for r in recorded)
    kept = _stored(settings)
    assert len(kept) == 3

    bad = [intake.stage_upload(_wav(tmp_path / f"n{i}.wav", 10 + i), settings) for i in range(2)]
    with pytest.raises(Exception, match=r"foreign key|violates"), uow() as session:
        intake.record_staged(session, bad, user_id=uuid.uuid4(), settings=settings)  # no such user
    assert _stored(settings) == kept, "the failed batch's copies are gone"
