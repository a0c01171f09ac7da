"""The oracle itself must be able to fail: each broken promise written by hand is caught."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from db.analyses import record_analysis
from db.files import record_upload
from db.models import AudioFile, Transcription
from db.transcripts import add_transcription_version
from db.users import get_or_create_operator
from tests.integration import oracle

Build = Callable[..., str]


@pytest.fixture
def build(engine: Engine, tmp_path: Path) -> Build:
    """Write one file row in a chosen state; returns its id."""

    def make(
        *,
        status: str = "completed",
        versions: int = 1,
        analyses: tuple[str, ...] = tuple(sorted(oracle.ANALYSIS_TYPES)),
        error: str | None = None,
        stored_bytes: int | None = 10,
    ) -> str:
        stored = tmp_path / f"{uuid.uuid4().hex}.wav"
        if stored_bytes is not None:
            stored.write_bytes(b"x" * stored_bytes)
        with Session(engine) as session, session.begin():
            owner = get_or_create_operator(session, None).id
            row = record_upload(
                session,
                user_id=owner,
                file_name="call.wav",
                file_path=str(stored),
                file_size=10,
                file_format="wav",
            )
            session.flush()
            for _ in range(versions):
                version = add_transcription_version(
                    session, row.id, text="hello", language_code="en", confidence_score=0.9,
                    engine="e", engine_version="1", model_name="m", segments=[],
                    word_count=1, processing_time_seconds=0.1,
                )  # fmt: skip
                for kind in analyses:
                    record_analysis(
                        session, version.id, analysis_type=kind, result={}, model_name="m",
                        parameters={}, processing_time_seconds=0.1,
                    )  # fmt: skip
            session.execute(
                update(AudioFile)
                .where(AudioFile.id == row.id)
                .values(
                    status=status,
                    error_message=error,
                    processing_started_at=AudioFile.upload_started_at,
                    processing_completed_at=(
                        AudioFile.upload_started_at if status in ("completed", "failed") else None
                    ),
                )
            )
            return str(row.id)

    return make


def test_a_whole_completed_file_passes(database_url: str, build: Build) -> None:
    good = build()
    failed = build(status="failed", versions=0, error="ingest failed: not audio")
    counts = oracle.check(database_url, [good, failed])
    assert (counts.files, counts.completed, counts.failed, counts.lost) == (2, 1, 1, 0)
    assert counts.versions == 1 and counts.analyses == len(oracle.ANALYSIS_TYPES)


@pytest.mark.parametrize(
    ("state", "complaint"),
    [
        ({"status": "processing"}, "left processing"),
        ({"status": "pending", "versions": 0}, "left pending"),
        ({"status": "failed", "versions": 0, "error": "  "}, "without an error message"),
        ({"status": "failed", "versions": 0, "error": "Traceback (most"}, "unreadable"),
        ({"versions": 2}, "2 versions, at most 1"),
        ({"versions": 0}, "expected 1..1"),
        ({"analyses": ("sentiment", "summary", "keywords")}, "latest version has analyses"),
        ({"stored_bytes": None}, "stored file is unreadable"),
        ({"stored_bytes": 9}, "stored file has 9 bytes"),
    ],
)
def test_each_broken_promise_is_caught(
    database_url: str, build: Build, state: dict[str, object], complaint: str
) -> None:
    file_id = build(**state)
    with pytest.raises(AssertionError, match=complaint):
        oracle.check(database_url, [build(), file_id])


def test_a_missing_row_is_a_lost_file(database_url: str, build: Build) -> None:
    with pytest.raises(AssertionError, match="no row"):
        oracle.check(database_url, [build(), str(uuid.uuid4())])


def test_retranscriptions_are_allowed_versions(
    database_url: str, build: Build, engine: Engine
) -> None:
    file_id = build(versions=2)
    assert oracle.check(database_url, [file_id], retranscriptions={file_id: 1}).versions == 2
    with Session(engine) as session, session.begin():  # the latest flag on the older version
        session.execute(update(Transcription).values(is_latest=False))
        session.execute(
            update(Transcription)
            .where(Transcription.audio_file_id == uuid.UUID(file_id), Transcription.version == 1)
            .values(is_latest=True)
        )
    with pytest.raises(AssertionError, match="not the newest"):
        oracle.check(database_url, [file_id], retranscriptions=1)


def test_outcome_figures() -> None:
    counts = oracle.Counts(files=4, completed=2, failed=1, versions=5, analyses=0)
    assert counts.outcome() == {"lost": 1, "failed": 1, "duplicates": 1}
