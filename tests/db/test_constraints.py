"""Every CHECK rejects a bad value, and the error names the constraint that did it."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import pytest
from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.analyses import record_analysis
from db.auth_sessions import create_session
from tests.db.factories import make_file, make_transcription, make_user


@dataclass(frozen=True)
class Rows:
    user: uuid.UUID
    session: uuid.UUID
    file: uuid.UUID
    transcription: uuid.UUID
    analysis: uuid.UUID


@pytest.fixture
def rows(session: Session) -> Rows:
    user = make_user(session)
    login, _ = create_session(
        session, user.id, ip_address="10.0.0.1", user_agent="pytest", ttl=dt.timedelta(hours=1)
    )
    audio = make_file(session, user)
    transcription = make_transcription(session, audio)
    analysis = record_analysis(
        session,
        transcription.id,
        analysis_type="sentiment",
        result={"sentiment": "positive", "score": 0.85},
        model_name="vader",
        parameters={},
        processing_time_seconds=0.01,
    )
    return Rows(user.id, login.id, audio.id, transcription.id, analysis.id)


# (table, SET clause, constraint that must reject it)
BAD_VALUES = [
    ("users", "role = 'superuser'", "ck_users_role"),
    ("users", "email = 'not-an-email'", "ck_users_email_format"),
    ("users", "username = 'has@at'", "ck_users_username_format"),
    ("users", "password_hash = ''", "ck_users_password_hash_nonempty"),
    ("users", "metadata = '[]'::jsonb", "ck_users_metadata_object"),
    ("sessions", "token_hash = repeat('Z', 64)", "ck_sessions_token_hash_hex"),
    ("sessions", "expires_at = created_at", "ck_sessions_expiry_after_creation"),
    ("sessions", "is_revoked = true", "ck_sessions_revocation_time"),
    ("sessions", "idle_timeout = interval '0'", "ck_sessions_idle_timeout_positive"),
    ("audio_files", "file_format = 'aac'", "ck_audio_files_file_format"),
    ("audio_files", "status = 'done'", "ck_audio_files_status"),
    ("audio_files", "stage = 'upload'", "ck_audio_files_stage"),
    ("audio_files", "file_size = -1", "ck_audio_files_file_size_nonnegative"),
    ("audio_files", "file_name = ''", "ck_audio_files_file_name_nonempty"),
    ("audio_files", "checksum = upper(repeat('a', 64))", "ck_audio_files_checksum_hex"),
    ("audio_files", "duration_seconds = -0.5", "ck_audio_files_duration_nonnegative"),
    ("audio_files", "sample_rate = 0", "ck_audio_files_sample_rate_positive"),
    ("audio_files", "channels = 0", "ck_audio_files_channels_range"),
    ("audio_files", "bitrate = -1", "ck_audio_files_bitrate_positive"),
    ("audio_files", "attempts = -1", "ck_audio_files_attempts_nonnegative"),
    ("audio_files", "status = 'failed', error_message = NULL", "ck_audio_files_failed_has_message"),
    (
        "audio_files",
        "processing_started_at = now(), processing_completed_at = now() - interval '1 s'",
        "ck_audio_files_processing_order",
    ),
    ("audio_files", "metadata = '\"text\"'::jsonb", "ck_audio_files_metadata_object"),
    ("transcriptions", "version = 0", "ck_transcriptions_version_positive"),
    ("transcriptions", "confidence_score = 1.5", "ck_transcriptions_confidence_range"),
    ("transcriptions", "language_code = 'english'", "ck_transcriptions_language_code"),
    ("transcriptions", "language_code = 'EN'", "ck_transcriptions_language_code"),
    ("transcriptions", "word_count = -1", "ck_transcriptions_word_count_nonnegative"),
    (
        "transcriptions",
        "processing_time_seconds = -1",
        "ck_transcriptions_processing_time_nonnegative",
    ),
    ("transcriptions", "segments = '{}'::jsonb", "ck_transcriptions_segments_array"),
    ("transcriptions", "metadata = 'null'::jsonb", "ck_transcriptions_metadata_object"),
    ("analyses", "analysis_type = 'mood'", "ck_analyses_analysis_type"),
    ("analyses", "result = '[1, 2]'::jsonb", "ck_analyses_result_object"),
    ("analyses", "parameters = '3'::jsonb", "ck_analyses_parameters_object"),
    ("analyses", "processing_time_seconds = -2", "ck_analyses_processing_time_nonnegative"),
]

_ID_COLUMN = {
    "users": "user",
    "sessions": "session",
    "audio_files": "file",
    "transcriptions": "transcription",
    "analyses": "analysis",
}


def _update(session: Session, table: str, assignment: str, row_id: uuid.UUID) -> int:
    # The table and SET text are this file's constants, never outside input.
    statement = text(f"UPDATE {table} SET {assignment} WHERE id = :id")  # noqa: S608
    result = session.execute(statement, {"id": row_id})
    return int(result.rowcount)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("table", "assignment", "constraint"), BAD_VALUES)
def test_check_rejects_bad_value(
    session: Session, rows: Rows, table: str, assignment: str, constraint: str
) -> None:
    row_id = getattr(rows, _ID_COLUMN[table])
    with pytest.raises(IntegrityError) as caught, session.begin_nested():
        _update(session, table, assignment, row_id)
    assert isinstance(caught.value.orig, pg_errors.CheckViolation)
    assert caught.value.orig.diag.constraint_name == constraint


def test_every_check_constraint_is_exercised(session: Session) -> None:
    names = set(
        session.scalars(
            text(
                "SELECT conname FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
                "WHERE c.contype = 'c' AND r.relname = ANY(:tables)"
            ),
            {"tables": list(_ID_COLUMN)},
        )
    )
    assert names == {constraint for _, _, constraint in BAD_VALUES}


GOOD_VALUES = [
    ("transcriptions", "language_code = 'pt-BR'"),
    ("transcriptions", "language_code = 'yue'"),
    ("transcriptions", "confidence_score = 0"),
    ("transcriptions", "confidence_score = 1"),
    ("audio_files", "status = 'failed', error_message = 'decoder said no'"),
    ("audio_files", "channels = 255, duration_seconds = 0"),
    ("sessions", "is_revoked = true, revoked_at = now()"),
    ("analyses", "analysis_type = 'custom'"),
]


@pytest.mark.parametrize(("table", "assignment"), GOOD_VALUES)
def test_check_accepts_good_value(
    session: Session, rows: Rows, table: str, assignment: str
) -> None:
    assert _update(session, table, assignment, getattr(rows, _ID_COLUMN[table])) == 1
