"""Analyses are written idempotently; updated_at is kept by the database."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db.analyses import analyses_for, record_analysis
from db.engine import unit_of_work
from db.models import Analysis
from tests.db.factories import make_file, make_transcription, make_user


def _record(session: Session, transcription_id: uuid.UUID, kind: str, score: float) -> Analysis:
    return record_analysis(
        session,
        transcription_id,
        analysis_type=kind,
        result={"score": score},
        model_name="vader",
        parameters={"threshold": 0.05},
        processing_time_seconds=0.002,
    )


def test_recording_twice_keeps_one_row(session: Session) -> None:
    transcription = make_transcription(session, make_file(session, make_user(session)))
    first = _record(session, transcription.id, "sentiment", 0.85)
    again = _record(session, transcription.id, "sentiment", 0.10)
    assert again.id == first.id
    assert again.result == {"score": 0.85}  # the first write wins
    assert [a.analysis_type for a in analyses_for(session, transcription.id)] == ["sentiment"]


def test_custom_analyses_may_repeat_and_types_are_checked(session: Session) -> None:
    transcription = make_transcription(session, make_file(session, make_user(session)))
    for kind in ("summary", "keywords", "entities"):
        _record(session, transcription.id, kind, 1.0)
    one = _record(session, transcription.id, "custom", 1.0)
    two = _record(session, transcription.id, "custom", 2.0)
    assert one.id != two.id
    kinds = sorted(a.analysis_type for a in analyses_for(session, transcription.id))
    assert kinds == ["custom", "custom", "entities", "keywords", "summary"]
    with pytest.raises(ValueError, match="mood"):
        _record(session, transcription.id, "mood", 1.0)
    with pytest.raises(ValueError, match="finite"):
        record_analysis(
            session,
            transcription.id,
            analysis_type="summary",
            result={},
            model_name=None,
            parameters={},
            processing_time_seconds=float("nan"),
        )


def test_each_transcription_version_has_its_own_analyses(session: Session) -> None:
    audio = make_file(session, make_user(session))
    v1 = make_transcription(session, audio, "old")
    v2 = make_transcription(session, audio, "new")
    a1 = _record(session, v1.id, "sentiment", 0.1)
    a2 = _record(session, v2.id, "sentiment", 0.2)
    assert a1.id != a2.id


def test_concurrent_redelivery_writes_one_row(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        transcription_id = make_transcription(session, make_file(session, make_user(session))).id
    workers = 3
    barrier = threading.Barrier(workers)
    ids: list[uuid.UUID] = []
    errors: list[BaseException] = []

    def deliver(score: float) -> None:
        try:
            with unit_of_work(engine) as session:
                barrier.wait(timeout=20)
                ids.append(_record(session, transcription_id, "keywords", score).id)
        except BaseException as err:  # re-raised on the test thread via the list
            errors.append(err)

    threads = [threading.Thread(target=deliver, args=(float(i),)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(set(ids)) == 1
    with unit_of_work(engine) as session:
        assert len(analyses_for(session, transcription_id)) == 1


def test_updated_at_moves_on_update(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        transcription = make_transcription(session, make_file(session, make_user(session)))
        analysis_id = _record(session, transcription.id, "summary", 1.0).id
    with unit_of_work(engine) as session:
        session.execute(
            text("UPDATE analyses SET model_name = 'other' WHERE id = :id"), {"id": analysis_id}
        )
    with unit_of_work(engine) as session:
        row = session.get(Analysis, analysis_id)
        assert row is not None
        assert row.updated_at > row.created_at


@pytest.mark.parametrize(
    "table", ["users", "sessions", "audio_files", "transcriptions", "analyses"]
)
def test_updated_at_is_set_by_the_database_not_the_client(session: Session, table: str) -> None:
    user = make_user(session)
    transcription = make_transcription(session, make_file(session, user))
    _record(session, transcription.id, "summary", 1.0)
    session.execute(
        text(
            "INSERT INTO sessions (user_id, token_hash, expires_at) "
            "VALUES (:u, repeat('a', 64), now() + interval '1 hour')"
        ),
        {"u": user.id},
    )
    session.execute(text(f"UPDATE {table} SET updated_at = '2000-01-01T00:00:00Z'"))  # noqa: S608
    stale = session.scalar(
        text(f"SELECT count(*) FROM {table} WHERE updated_at <> now()")  # noqa: S608
    )
    assert stale == 0
