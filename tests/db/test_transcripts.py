"""Transcript versions: numbering, exactly one latest, and concurrent writers for one file."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from psycopg import errors as pg_errors
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import transcripts
from db.engine import unit_of_work
from tests.db.factories import make_file, make_transcription, make_user


def test_versions_count_up_and_only_the_newest_is_latest(session: Session) -> None:
    audio = make_file(session, make_user(session))
    assert transcripts.latest_transcription(session, audio.id) is None
    assert transcripts.list_versions(session, audio.id) == []

    first = make_transcription(session, audio, "first draft")
    assert (first.version, first.is_latest) == (1, True)
    second = make_transcription(session, audio, "second draft", segments=[], word_count=2)
    third = make_transcription(session, audio, "third draft", confidence_score=None)

    versions = transcripts.list_versions(session, audio.id)
    assert [(t.version, t.is_latest) for t in versions] == [(1, False), (2, False), (3, True)]
    assert versions == [first, second, third]
    assert transcripts.latest_transcription(session, audio.id) is third
    assert third.confidence_score is None
    session.refresh(first)
    assert str(first.confidence_score) == "0.9500"  # numeric(5,4) as stored
    assert first.segments == [{"start": 0.0, "end": 1.0, "text": "first draft"}]


def test_unknown_file_and_non_finite_numbers_are_refused(session: Session) -> None:
    audio = make_file(session, make_user(session))
    with pytest.raises(LookupError, match="no audio file"):
        transcripts.add_transcription_version(
            session,
            uuid.uuid4(),
            text="orphan",
            language_code=None,
            confidence_score=None,
            engine=None,
            engine_version=None,
            model_name=None,
            segments=[],
            word_count=None,
            processing_time_seconds=None,
        )
    with pytest.raises(ValueError, match="finite"):
        make_transcription(session, audio, confidence_score=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        make_transcription(session, audio, processing_time_seconds=float("inf"))


def test_partial_unique_index_rejects_a_second_latest_row(session: Session) -> None:
    audio = make_file(session, make_user(session))
    make_transcription(session, audio)
    with pytest.raises(IntegrityError) as caught, session.begin_nested():
        session.execute(
            text(
                "INSERT INTO transcriptions (audio_file_id, version, is_latest, transcription_text)"
                " VALUES (:f, 2, true, 'sneaked in')"
            ),
            {"f": audio.id},
        )
    assert isinstance(caught.value.orig, pg_errors.UniqueViolation)
    assert caught.value.orig.diag.constraint_name == "uq_transcriptions_latest"
    # Not latest is fine: history rows are unlimited.
    session.execute(
        text(
            "INSERT INTO transcriptions (audio_file_id, version, is_latest, transcription_text)"
            " VALUES (:f, 2, false, 'history')"
        ),
        {"f": audio.id},
    )


def _file_id(engine: Engine) -> uuid.UUID:
    with unit_of_work(engine) as session:
        return make_file(session, make_user(session)).id


def _run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as err:  # re-raised on the test thread via the list
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def _state(engine: Engine, file_id: uuid.UUID) -> list[tuple[int, bool]]:
    with unit_of_work(engine) as session:
        return [(t.version, t.is_latest) for t in transcripts.list_versions(session, file_id)]


def test_concurrent_writers_get_distinct_versions_and_one_latest(engine: Engine) -> None:
    file_id = _file_id(engine)
    writers = 4
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        with unit_of_work(engine) as session:
            session.execute(text("SET LOCAL lock_timeout = '20s'"))
            barrier.wait(timeout=20)
            transcripts.add_transcription_version(
                session,
                file_id,
                text=f"writer {i}",
                language_code="en",
                confidence_score=0.5,
                engine="test",
                engine_version=None,
                model_name=None,
                segments=[],
                word_count=2,
                processing_time_seconds=0.0,
            )

    assert _run_threads(writers, write) == []
    state = _state(engine, file_id)
    assert sorted(version for version, _ in state) == [1, 2, 3, 4]
    assert [version for version, latest in state if latest] == [4]


def test_second_writer_waits_for_the_first_then_writes_the_next_version(engine: Engine) -> None:
    """Deterministic interleaving: B provably blocks on A's row lock, then sees A's version."""
    file_id = _file_id(engine)
    a_wrote = threading.Event()
    release_a = threading.Event()
    results: dict[str, int] = {}

    def add(session: Session, label: str) -> None:
        row = transcripts.add_transcription_version(
            session,
            file_id,
            text=label,
            language_code="en",
            confidence_score=None,
            engine=None,
            engine_version=None,
            model_name=None,
            segments=[],
            word_count=1,
            processing_time_seconds=None,
        )
        results[label] = row.version

    def writer(i: int) -> None:
        with unit_of_work(engine) as session:
            session.execute(text("SET LOCAL lock_timeout = '20s'"))
            if i == 0:
                add(session, "A")
                a_wrote.set()
                assert release_a.wait(timeout=20)
            else:
                assert a_wrote.wait(timeout=20)
                session.execute(text("SET LOCAL application_name = 'writer-b'"))
                add(session, "B")

    outcome: list[list[BaseException]] = []
    runner = threading.Thread(target=lambda: outcome.append(_run_threads(2, writer)))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        with engine.connect() as probe:
            while time.monotonic() < deadline:
                waiting = probe.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'writer-b' AND wait_event_type = 'Lock'"
                ).scalar_one()
                probe.rollback()
                if waiting:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("writer B never waited on the file's row lock")
    finally:
        release_a.set()
        runner.join(timeout=60)
    assert outcome == [[]]
    assert results == {"A": 1, "B": 2}
    assert _state(engine, file_id) == [(1, False), (2, True)]


def test_deleting_a_file_deletes_its_transcripts(session: Session) -> None:
    audio = make_file(session, make_user(session))
    make_transcription(session, audio)
    make_transcription(session, audio)
    session.delete(audio)
    session.flush()
    count = session.scalar(
        text("SELECT count(*) FROM transcriptions WHERE audio_file_id = :f"), {"f": audio.id}
    )
    assert count == 0
