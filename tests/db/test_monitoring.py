"""The analytics materialized view, the user activity view and the processing queue."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db import monitoring, users
from db.analyses import record_analysis
from db.engine import unit_of_work
from db.monitoring import DailyAnalytics
from tests.db.factories import make_file, make_transcription, make_user

DAY1 = dt.date(2025, 6, 1)
DAY2 = dt.date(2025, 6, 2)


def _file(
    session: Session,
    user_id: uuid.UUID,
    *,
    fmt: str,
    status: str,
    created: str,
    size: int,
    duration: float | None = None,
    processing: float | None = None,
) -> None:
    """A file row as a finished (or not) pipeline leaves it; ``processing`` = seconds it took."""
    session.execute(
        text(
            """
            INSERT INTO audio_files (user_id, file_name, file_path, file_size, file_format,
                status, error_message, duration_seconds, created_at, processing_started_at,
                processing_completed_at)
            SELECT :user_id, 'f.' || fmt, '/uploads/x', :size, fmt, status,
                CASE WHEN status = 'failed' THEN 'decoder said no' END,
                CAST(:duration AS numeric), created,
                CASE WHEN status IN ('completed', 'failed', 'processing') THEN created END,
                created + make_interval(secs => CAST(:processing AS double precision))
            FROM (SELECT CAST(:fmt AS text) AS fmt, CAST(:status AS text) AS status,
                         CAST(:created AS timestamptz) AS created) AS given
            """
        ),
        {
            "user_id": user_id,
            "fmt": fmt,
            "status": status,
            "created": created,
            "size": size,
            "duration": duration,
            "processing": processing,
        },
    )


def test_refresh_concurrently_and_hand_computed_numbers(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        uid = make_user(session).id
        _file(
            session,
            uid,
            fmt="mp3",
            status="completed",
            created="2025-06-01T08:00:00Z",
            size=1000,
            duration=10.0,
            processing=2.0,
        )
        _file(
            session,
            uid,
            fmt="mp3",
            status="completed",
            created="2025-06-01T20:00:00Z",
            size=3000,
            duration=30.0,
            processing=4.0,
        )
        _file(session, uid, fmt="wav", status="failed", created="2025-06-01T12:00:00Z", size=500)
        # 23:30 UTC is already June 3rd in Tokyo: days must be UTC days whatever the TimeZone.
        _file(
            session,
            uid,
            fmt="mp3",
            status="completed",
            created="2025-06-02T23:30:00Z",
            size=2000,
            duration=20.5,
            processing=1.5,
        )
        _file(session, uid, fmt="flac", status="pending", created="2025-06-02T00:00:00Z", size=7000)

    with unit_of_work(engine) as session:
        assert monitoring.daily_analytics(session) == []  # not refreshed yet
        session.execute(text("SET LOCAL TimeZone = 'Asia/Tokyo'"))
        monitoring.refresh_analytics(session)

    expected = [
        DailyAnalytics(DAY1, "mp3", "completed", 2, 2000.0, 20.0, 3.0),
        DailyAnalytics(DAY1, "wav", "failed", 1, 500.0, None, None),
        DailyAnalytics(DAY2, "flac", "pending", 1, 7000.0, None, None),
        DailyAnalytics(DAY2, "mp3", "completed", 1, 2000.0, 20.5, 1.5),
    ]
    with unit_of_work(engine) as session:
        assert monitoring.daily_analytics(session) == expected

    # A second concurrent refresh with rows present picks up changes.
    with unit_of_work(engine) as session:
        _file(
            session,
            uid,
            fmt="mp3",
            status="completed",
            created="2025-06-02T01:00:00Z",
            size=4000,
            duration=9.5,
            processing=0.5,
        )
    with unit_of_work(engine) as session:
        assert monitoring.daily_analytics(session) == expected  # still the snapshot
        monitoring.refresh_analytics(session)
    with unit_of_work(engine) as session:
        rows = monitoring.daily_analytics(session)
    assert rows[:3] == expected[:3]
    assert rows[3] == DailyAnalytics(DAY2, "mp3", "completed", 2, 3000.0, 15.0, 1.0)
    assert rows[3].avg_duration_seconds == pytest.approx((20.5 + 9.5) / 2)


def test_user_activity_view(session: Session) -> None:
    busy, quiet, gone = make_user(session, "busy"), make_user(session, "quiet"), make_user(session)
    users.authenticate(session, "busy", "correct horse battery staple")
    first = make_file(session, busy)
    make_file(session, busy)
    v1 = make_transcription(session, first)
    v2 = make_transcription(session, first)
    for version in (v1, v2):
        record_analysis(
            session,
            version.id,
            analysis_type="sentiment",
            result={"score": 0.1},
            model_name=None,
            parameters={},
            processing_time_seconds=None,
        )
    make_file(session, gone)
    users.soft_delete_user(session, gone.id)

    rows = {row.username: row for row in monitoring.user_activity(session)}
    assert gone.username not in rows
    assert (rows["busy"].total_files, rows["busy"].total_transcriptions) == (2, 2)
    assert rows["busy"].total_analyses == 2
    assert rows["busy"].last_upload_at == first.upload_started_at
    assert rows["busy"].last_login_at is not None
    assert (rows["quiet"].total_files, rows["quiet"].total_analyses) == (0, 0)
    assert rows["quiet"].last_upload_at is None

    only = monitoring.user_activity(session, quiet.id)
    assert [(row.user_id, row.email, row.role, row.is_active) for row in only] == [
        (quiet.id, "quiet@example.org", "viewer", True)
    ]
    assert monitoring.user_activity(session, uuid.uuid4()) == []


def test_processing_queue(session: Session) -> None:
    user = make_user(session)
    make_file(session, user)
    make_file(session, user)
    processing = make_file(session, user)
    done = make_file(session, user)
    session.execute(
        text(
            "UPDATE audio_files SET status = 'processing', "
            "upload_started_at = now() - interval '90 seconds' WHERE id = :id"
        ),
        {"id": processing.id},
    )
    session.execute(
        text("UPDATE audio_files SET status = 'completed' WHERE id = :id"), {"id": done.id}
    )
    rows = sorted(monitoring.processing_queue(session), key=lambda row: row.status)
    assert [(row.status, row.count) for row in rows] == [("pending", 2), ("processing", 1)]
    assert rows[0].avg_wait_seconds == pytest.approx(0.0, abs=1.0)
    assert rows[1].avg_wait_seconds == pytest.approx(90.0, abs=1.0)
