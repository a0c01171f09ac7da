"""``jobs.supersede`` on real PostgreSQL: a submission whose file changed afterwards ends
``failed`` with the superseded message, whatever it was doing, and a worker that still holds a
claim on it can no longer write."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db.engine import unit_of_work
from db.files import record_upload
from db.models import AudioFile, FileStatus, Stage
from db.users import create_user
from pipeline import jobs


@pytest.fixture
def file_id(engine: Engine) -> uuid.UUID:
    with unit_of_work(engine) as session:
        user = create_user(session, email="drop@example.com", username="drop", password="pw-123456")
        row = record_upload(
            session,
            user_id=user.id,
            file_name="slow.mp3",
            file_path="/storage/slow.mp3",
            file_size=10,
            file_format="mp3",
        )
        return row.id


def _row(engine: Engine, file_id: uuid.UUID) -> AudioFile:
    with Session(engine) as session:
        row = session.get(AudioFile, file_id)
        assert row is not None
        session.expunge(row)
        return row


def _supersede(engine: Engine, file_id: uuid.UUID) -> FileStatus | None:
    with unit_of_work(engine) as session:
        return jobs.supersede(session, file_id)


def _claim(engine: Engine, file_id: uuid.UUID, stage: Stage) -> jobs.Claim:
    with unit_of_work(engine) as session:
        claim = jobs.claim(session, file_id, stage, lease_seconds=60, max_attempts=3)
    assert claim is not None
    return claim


def test_a_queued_submission_is_cancelled(engine: Engine, file_id: uuid.UUID) -> None:
    assert _supersede(engine, file_id) is FileStatus.PENDING
    row = _row(engine, file_id)
    assert (row.status, row.error_message) == ("failed", jobs.SUPERSEDED)
    assert row.error_details is not None and row.error_details["superseded"] is True
    assert row.error_details["previous_status"] == "pending"
    assert row.processing_completed_at is not None
    # Its message arriving afterwards finds nothing to claim.
    with unit_of_work(engine) as session:
        assert jobs.claim(session, file_id, Stage.INGEST, lease_seconds=60, max_attempts=3) is None


def test_a_worker_mid_stage_is_fenced_out(engine: Engine, file_id: uuid.UUID) -> None:
    claim = _claim(engine, file_id, Stage.INGEST)
    with unit_of_work(engine) as session:
        assert jobs.advance(session, claim, Stage.TRANSCRIBE, timings={})
    transcribing = _claim(engine, file_id, Stage.TRANSCRIBE)

    assert _supersede(engine, file_id) is FileStatus.PROCESSING

    with unit_of_work(engine) as session:  # everything the worker would write next is refused
        assert not jobs.still_holds(session, transcribing)
        assert not jobs.renew(session, transcribing, lease_seconds=60)
        assert not jobs.advance(session, transcribing, Stage.ANALYZE, timings={})
        assert not jobs.complete(session, transcribing, timings={})
    row = _row(engine, file_id)
    assert (row.status, row.stage, row.error_message) == ("failed", "transcribe", jobs.SUPERSEDED)
    assert row.error_details is not None and row.error_details["stage"] == "transcribe"


def test_a_completed_submission_is_retracted_and_a_failed_one_left_alone(
    engine: Engine, file_id: uuid.UUID
) -> None:
    claim = _claim(engine, file_id, Stage.INGEST)
    with unit_of_work(engine) as session:
        assert jobs.complete(session, claim, timings={})
    finished_at = _row(engine, file_id).processing_completed_at

    assert _supersede(engine, file_id) is FileStatus.COMPLETED
    row = _row(engine, file_id)
    assert (row.status, row.error_message) == ("failed", jobs.SUPERSEDED)
    assert row.processing_completed_at == finished_at
    # Twice is harmless: an already failed row keeps what it says.
    assert _supersede(engine, file_id) is None
    assert _supersede(engine, uuid.uuid4()) is None
    assert _row(engine, file_id).error_message == jobs.SUPERSEDED
