"""The row state machine on real PostgreSQL: claims, leases, fencing, failure, supersede."""

from __future__ import annotations

import uuid

import pytest
import structlog.testing
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db.engine import unit_of_work
from db.files import record_upload
from db.models import AudioFile, FileStatus, Stage
from db.users import create_user
from pipeline import jobs
from pipeline.errors import CorruptAudio


@pytest.fixture
def file_id(engine: Engine) -> uuid.UUID:
    with unit_of_work(engine) as session:
        user = create_user(session, email="ops@example.com", username="ops", password="pw-123456")
        row = record_upload(
            session,
            user_id=user.id,
            file_name="call.mp3",
            file_path="/storage/x.mp3",
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


def _claim(engine: Engine, file_id: uuid.UUID, stage: Stage, **kw: int) -> jobs.Claim | None:
    with unit_of_work(engine) as session:
        return jobs.claim(
            session,
            file_id,
            stage,
            lease_seconds=kw.get("lease", 60),
            max_attempts=kw.get("max_attempts", 3),
        )


def test_claim_moves_pending_to_processing_once(engine: Engine, file_id: uuid.UUID) -> None:
    first = _claim(engine, file_id, Stage.INGEST)
    assert first is not None and first.token == 1
    row = _row(engine, file_id)
    assert (row.status, row.stage, row.attempts) == ("processing", "ingest", 1)
    assert row.lease_expires_at is not None and row.processing_started_at is not None
    # A second delivery while the lease is alive does nothing.
    assert _claim(engine, file_id, Stage.INGEST) is None
    # A message for another stage does nothing either.
    assert _claim(engine, file_id, Stage.TRANSCRIBE) is None
    assert _row(engine, file_id).attempts == 1


def test_advance_hands_over_and_fences_old_claims(engine: Engine, file_id: uuid.UUID) -> None:
    claim = _claim(engine, file_id, Stage.INGEST)
    assert claim is not None
    with unit_of_work(engine) as session:
        assert jobs.advance(session, claim, Stage.TRANSCRIBE, timings={"probe": 0.25})
    row = _row(engine, file_id)
    assert (row.status, row.stage, row.attempts, row.lease_expires_at) == (
        "processing",
        "transcribe",
        0,
        None,
    )
    assert row.metadata_["stage_seconds"] == {"probe": 0.25}
    # The finished ingest claim can no longer write anything.
    with unit_of_work(engine) as session:
        assert not jobs.advance(session, claim, Stage.ANALYZE, timings={})
        assert not jobs.still_holds(session, claim)


def test_expired_lease_is_taken_over_and_the_old_worker_is_fenced(
    engine: Engine, file_id: uuid.UUID
) -> None:
    old = _claim(engine, file_id, Stage.INGEST)
    assert old is not None
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audio_files SET lease_expires_at = now() - interval '1 s' WHERE id = :i"),
            {"i": file_id},
        )
    new = _claim(engine, file_id, Stage.INGEST)
    assert new is not None and new.token == 2
    with unit_of_work(engine) as session:
        assert not jobs.renew(session, old, lease_seconds=60)
        assert not jobs.complete(session, old, timings={})
        assert jobs.renew(session, new, lease_seconds=60)


def test_too_many_attempts_fail_the_file_with_a_clear_message(
    engine: Engine, file_id: uuid.UUID
) -> None:
    for attempt in (1, 2):
        claim = _claim(engine, file_id, Stage.INGEST, max_attempts=2)
        assert claim is not None and claim.token == attempt
        with unit_of_work(engine) as session:
            jobs.release(session, claim)  # as if its worker died and the lease ran out
    assert _claim(engine, file_id, Stage.INGEST, max_attempts=2) is None
    row = _row(engine, file_id)
    assert row.status == "failed"
    assert row.error_message == (
        "ingest failed: gave up on the ingest stage after 2 attempts "
        "(the worker stopped or crashed each time)"
    )
    assert row.error_details is not None and row.error_details["exception_type"] == "GaveUp"


def test_fail_records_message_details_and_finish_time(engine: Engine, file_id: uuid.UUID) -> None:
    claim = _claim(engine, file_id, Stage.INGEST)
    assert claim is not None
    with unit_of_work(engine) as session:
        assert jobs.fail(
            session, file_id, Stage.INGEST, CorruptAudio("moov atom not found"), token=claim.token
        )
    row = _row(engine, file_id)
    assert row.status == "failed"
    assert row.error_message == "ingest failed: moov atom not found"
    assert row.error_details == {
        "stage": "ingest",
        "exception_type": "CorruptAudio",
        "message": "moov atom not found",
        "attempt": 1,
    }
    assert row.processing_completed_at is not None
    # A failed file is not claimed again.
    assert _claim(engine, file_id, Stage.INGEST) is None


def test_complete_then_requeue_for_retranscription(engine: Engine, file_id: uuid.UUID) -> None:
    claim = _claim(engine, file_id, Stage.INGEST)
    assert claim is not None
    with unit_of_work(engine) as session:
        assert jobs.complete(session, claim, timings={"analyze": 1.0})
        # Unfinished files cannot be requeued; finished ones can.
    with unit_of_work(engine) as session:
        assert jobs.requeue(session, file_id, Stage.TRANSCRIBE)
    row = _row(engine, file_id)
    assert (row.status, row.stage, row.attempts, row.processing_completed_at) == (
        "processing",
        "transcribe",
        0,
        None,
    )
    with unit_of_work(engine) as session:
        assert not jobs.requeue(session, file_id, Stage.TRANSCRIBE)


def _age(engine: Engine, file_id: uuid.UUID, seconds: int) -> None:
    """Back-date the row's updated_at (the trigger would undo it: switched off here)."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text(
                "UPDATE audio_files SET updated_at = now() - make_interval(secs => :s)"
                " WHERE id = :i"
            ),
            {"i": file_id, "s": seconds},
        )


def test_expired_leases_are_released_once(engine: Engine, file_id: uuid.UUID) -> None:
    claim = _claim(engine, file_id, Stage.INGEST)
    assert claim is not None
    with unit_of_work(engine) as session:
        assert jobs.release_expired(session) == []  # a live lease is left alone
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audio_files SET lease_expires_at = now() - interval '1 s' WHERE id = :i"),
            {"i": file_id},
        )
    with unit_of_work(engine) as session:
        assert jobs.release_expired(session) == [jobs.Queued(file_id, Stage.INGEST, file_id)]
    # Queued again (lease cleared): not released twice, and it just changed, so not waiting.
    assert _row(engine, file_id).lease_expires_at is None
    with unit_of_work(engine) as session:
        assert jobs.release_expired(session) == []
        assert jobs.waiting(session, settled_seconds=5) == []


def test_two_sweeps_never_release_the_same_row(engine: Engine, file_id: uuid.UUID) -> None:
    assert _claim(engine, file_id, Stage.INGEST) is not None
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audio_files SET lease_expires_at = now() - interval '1 s' WHERE id = :i"),
            {"i": file_id},
        )
    with unit_of_work(engine) as first:
        got_first = jobs.release_expired(first)
        # While the first sweep's transaction is open, a second one skips the locked row.
        with unit_of_work(engine) as second:
            assert jobs.release_expired(second) == []
    assert got_first == [jobs.Queued(file_id, Stage.INGEST, file_id)]


def test_waiting_rows_settle_first_and_are_marked_resent_once(
    engine: Engine, file_id: uuid.UUID
) -> None:
    with unit_of_work(engine) as session:
        assert jobs.waiting(session, settled_seconds=15) == []  # just submitted: settling
    _age(engine, file_id, 60)
    with unit_of_work(engine) as session:
        found = jobs.waiting(session, settled_seconds=15)
    assert found == [jobs.Queued(file_id, Stage.INGEST, file_id)]
    with unit_of_work(engine) as session:
        assert jobs.mark_resent(session, found, settled_seconds=15) == found
    # A second sweep that read the same rows before the first one marked them sends nothing.
    with unit_of_work(engine) as session:
        assert jobs.mark_resent(session, found, settled_seconds=15) == []
        assert jobs.waiting(session, settled_seconds=15) == []


def test_a_row_claimed_or_moved_on_meanwhile_is_not_marked_resent(
    engine: Engine, file_id: uuid.UUID
) -> None:
    _age(engine, file_id, 60)
    with unit_of_work(engine) as session:
        found = jobs.waiting(session, settled_seconds=0)
    claim = _claim(engine, file_id, Stage.INGEST)  # a worker got the message after all
    assert claim is not None
    with unit_of_work(engine) as session:
        assert jobs.mark_resent(session, found, settled_seconds=0) == []
        assert jobs.advance(session, claim, Stage.TRANSCRIBE, timings={})
    with unit_of_work(engine) as session:  # queued now, but at another stage than was read
        assert jobs.mark_resent(session, found, settled_seconds=0) == []
        assert jobs.waiting(session, settled_seconds=0) == [
            jobs.Queued(file_id, Stage.TRANSCRIBE, file_id)
        ]


def test_job_finished_is_logged_once_after_commit_for_both_outcomes(
    engine: Engine, file_id: uuid.UUID
) -> None:
    claim = _claim(engine, file_id, Stage.INGEST)
    assert claim is not None
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(RuntimeError), unit_of_work(engine) as session:
            assert jobs.fail(session, file_id, Stage.INGEST, CorruptAudio("bad"), token=1)
            raise RuntimeError("the commit never happens")
        assert logs == []  # rolled back: the job did not finish
        with unit_of_work(engine) as session:
            assert jobs.fail(session, file_id, Stage.INGEST, CorruptAudio("bad"), token=1)
            assert logs == []  # not before the commit
        with unit_of_work(engine) as session:
            assert not jobs.fail(session, file_id, Stage.INGEST, CorruptAudio("bad"))
    finished = [entry for entry in logs if entry["event"] == "job_finished"]
    assert len(finished) == 1, logs
    assert finished[0]["outcome"] == "failed" and finished[0]["file_id"] == str(file_id)
    assert finished[0]["error"] == "ingest failed: bad"
    with unit_of_work(engine) as session:
        assert jobs.requeue(session, file_id, Stage.TRANSCRIBE)
    again = _claim(engine, file_id, Stage.TRANSCRIBE)
    assert again is not None
    with structlog.testing.capture_logs() as logs, unit_of_work(engine) as session:
        assert jobs.complete(session, again, timings={"transcribe": 1.5})
    assert [(e["event"], e["outcome"]) for e in logs] == [("job_finished", "completed")]
    assert logs[0]["stage_seconds"]["transcribe"] == 1.5


# --- supersede: a submission whose file changed afterwards (the drop folder) ------------------
# It ends ``failed`` with the superseded message whatever it was doing, and a worker that still
# holds a claim on it can no longer write.


def _supersede(engine: Engine, file_id: uuid.UUID) -> FileStatus | None:
    with unit_of_work(engine) as session:
        return jobs.supersede(session, file_id)


def _held(engine: Engine, file_id: uuid.UUID, stage: Stage) -> jobs.Claim:
    claim = _claim(engine, file_id, stage)
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
    claim = _held(engine, file_id, Stage.INGEST)
    with unit_of_work(engine) as session:
        assert jobs.advance(session, claim, Stage.TRANSCRIBE, timings={})
    transcribing = _held(engine, file_id, Stage.TRANSCRIBE)

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
    claim = _held(engine, file_id, Stage.INGEST)
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
