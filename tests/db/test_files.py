"""Audio file rows: recording, duplicates, keyset paging of a user's files."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db import files
from db.analyses import record_analysis
from db.engine import unit_of_work
from db.models import AudioFile
from tests.databases import statements_sent
from tests.db.factories import make_file, make_transcription, make_user


def test_record_upload_defaults(session: Session) -> None:
    user = make_user(session)
    checksum = hashlib.sha256(b"audio").hexdigest().upper()
    row = files.record_upload(
        session,
        user_id=user.id,
        file_name="call.WAV",
        file_path="/uploads/call.wav",
        file_size=44,
        file_format="WAV",
        checksum=checksum,
        mime_type="audio/wav",
        metadata={"source_path": "/tmp/call.wav"},
    )
    assert isinstance(row.id, uuid.UUID)
    assert (row.status, row.attempts, row.file_format) == ("pending", 0, "wav")
    assert row.checksum == checksum.lower()
    assert row.metadata_ == {"source_path": "/tmp/call.wav"}
    assert row.upload_started_at == row.created_at
    assert files.get_file(session, row.id) is row
    assert files.get_file(session, uuid.uuid4()) is None


def test_find_duplicate_is_per_user_and_returns_the_first(session: Session) -> None:
    alice, bob = make_user(session), make_user(session)
    checksum = hashlib.sha256(b"same bytes").hexdigest()
    first = make_file(session, alice, "a.mp3", checksum=checksum)
    make_file(session, alice, "b.mp3", checksum=checksum)
    session.execute(
        text("UPDATE audio_files SET created_at = created_at - interval '1 hour' WHERE id = :id"),
        {"id": first.id},
    )
    assert files.find_duplicate(session, alice.id, checksum) is first
    assert files.find_duplicate(session, alice.id, checksum.upper()) is first
    assert files.find_duplicate(session, bob.id, checksum) is None
    assert files.find_duplicate(session, alice.id, "0" * 64) is None


def _spread(session: Session, rows: list[AudioFile], start: dt.datetime) -> None:
    """Give the rows distinct creation times, one minute apart, oldest first."""
    for i, row in enumerate(rows):
        session.execute(
            text("UPDATE audio_files SET created_at = :t WHERE id = :id"),
            {"t": start + dt.timedelta(minutes=i), "id": row.id},
        )
    session.expire_all()


def test_list_user_files_keyset_pages(session: Session) -> None:
    user, other = make_user(session), make_user(session)
    mine = [make_file(session, user, f"f{i}.ogg") for i in range(5)]
    make_file(session, other, "theirs.ogg")
    _spread(session, mine, dt.datetime(2025, 6, 1, tzinfo=dt.UTC))

    pages: list[list[str]] = []
    before = None
    while True:
        page = files.list_user_files(session, user.id, limit=2, before=before)
        if not page:
            break
        pages.append([row.file_name for row in page])
        before = page[-1].created_at
    assert pages == [["f4.ogg", "f3.ogg"], ["f2.ogg", "f1.ogg"], ["f0.ogg"]]


def test_rows_sharing_created_at_are_not_skipped_with_before_id(session: Session) -> None:
    user = make_user(session)
    made = {make_file(session, user, f"same{i}.flac").id for i in range(3)}  # one transaction

    seen: list[uuid.UUID] = []
    page = files.list_user_files(session, user.id, limit=2)
    while page:
        seen += [row.id for row in page]
        last = page[-1]
        page = files.list_user_files(
            session, user.id, limit=2, before=last.created_at, before_id=last.id
        )
    assert sorted(seen) == sorted(made)
    assert len(seen) == 3
    # created_at alone cannot split ties: the second page would be empty.
    first = files.list_user_files(session, user.id, limit=2)
    assert files.list_user_files(session, user.id, limit=2, before=first[-1].created_at) == []


def test_listing_uses_the_user_created_at_index(session: Session) -> None:
    user = make_user(session)
    make_file(session, user)
    connection = session.connection()
    with statements_sent(connection) as captured:
        files.list_user_files(session, user.id, before=dt.datetime.now(dt.UTC))
    statement, params = captured[-1]
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, params))
    assert "idx_audio_files_user_id_created_at" in plan


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_page_size_is_bounded(session: Session, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        files.list_user_files(session, uuid.uuid4(), limit=limit)


def test_returned_rows_stay_readable_after_the_unit_of_work(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        audio = make_file(session, make_user(session))
        version = make_transcription(session, audio, "readable later")
        newer = make_transcription(session, audio, "newer")
        analysis = record_analysis(
            session,
            newer.id,
            analysis_type="summary",
            result={"summary": "x"},
            model_name=None,
            parameters={},
            processing_time_seconds=None,
        )
    # Detached now: server defaults and flags were loaded when the rows were written.
    assert (audio.status, audio.attempts, audio.metadata_) == ("pending", 0, {})
    assert audio.created_at == audio.upload_started_at
    assert (version.version, version.is_latest) == (1, False)
    assert (newer.version, newer.is_latest) == (2, True)
    assert version.created_at is not None
    assert analysis.created_at is not None
    assert analysis.parameters == {}
