"""The spec's usage examples, maintenance and monitoring queries, run as written.

The SQL blocks below are copied from schema-design.md ("Usage Examples", "Maintenance",
"Monitoring Queries"); only the placeholder ids ('user-uuid', …) are replaced with real ones.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from db import monitoring
from db.auth_sessions import create_session
from db.engine import libpq_url, unit_of_work

CREATE_USER = """
INSERT INTO users (email, username, password_hash, role)
VALUES ('admin@teleai.pro', 'admin', 'hashed_password_here', 'admin');
"""
RECORD_UPLOAD = """
INSERT INTO audio_files (user_id, file_name, file_path, file_size, file_format)
VALUES ('user-uuid', 'interview.mp3', '/uploads/2025/06/interview.mp3', 5242880, 'mp3');
"""
CREATE_TRANSCRIPTION = """
INSERT INTO transcriptions (audio_file_id, transcription_text, language_code, confidence_score)
VALUES ('audio-file-uuid', 'Transcribed text here...', 'en', 0.95);
"""
RUN_ANALYSIS = """
INSERT INTO analyses (transcription_id, analysis_type, result)
VALUES ('transcription-uuid', 'sentiment', '{"sentiment": "positive", "score": 0.85}'::jsonb);
"""
REFRESH = """
REFRESH MATERIALIZED VIEW CONCURRENTLY file_processing_analytics;
"""


def _one(conn: psycopg.Connection, query: str) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return row[0]


def test_usage_examples_run_verbatim(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(CREATE_USER)
        user_id = _one(conn, "SELECT id FROM users WHERE username = 'admin'")
        conn.execute(RECORD_UPLOAD.replace("user-uuid", str(user_id)))
        file_id = _one(conn, "SELECT id FROM audio_files")
        conn.execute(CREATE_TRANSCRIPTION.replace("audio-file-uuid", str(file_id)))
        transcription_id = _one(conn, "SELECT id FROM transcriptions")
        conn.execute(RUN_ANALYSIS.replace("transcription-uuid", str(transcription_id)))
        conn.execute(REFRESH)

        row = conn.execute(
            "SELECT u.role, f.status, t.version, t.is_latest, a.result "
            "FROM users u JOIN audio_files f ON f.user_id = u.id "
            "JOIN transcriptions t ON t.audio_file_id = f.id "
            "JOIN analyses a ON a.transcription_id = t.id"
        ).fetchone()
        assert row == ("admin", "pending", 1, True, {"sentiment": "positive", "score": 0.85})
        analytics = conn.execute(
            "SELECT file_format, status, file_count, avg_file_size_bytes "
            "FROM file_processing_analytics"
        ).fetchall()
        assert analytics == [("mp3", "pending", 1, 5242880)]
        summary = conn.execute(
            "SELECT total_files, total_transcriptions, total_analyses FROM user_activity_summary"
        ).fetchone()
        assert summary == (1, 1, 1)


@pytest.fixture
def populated(engine: Engine) -> None:
    """One admin with a live session, a pending and a processing file; committed."""
    with unit_of_work(engine) as session:
        session.connection().exec_driver_sql(CREATE_USER)
        user_id = (
            session.connection()
            .exec_driver_sql("SELECT id FROM users WHERE username = 'admin'")
            .scalar_one()
        )
        create_session(
            session, user_id, ip_address="192.0.2.7", user_agent="curl", ttl=dt.timedelta(hours=1)
        )
        session.connection().exec_driver_sql(RECORD_UPLOAD.replace("user-uuid", str(user_id)))
        session.connection().exec_driver_sql(
            RECORD_UPLOAD.replace("user-uuid", str(user_id)).replace("'mp3'", "'wav'")
        )
        session.connection().exec_driver_sql(
            "UPDATE audio_files SET status = 'processing' WHERE file_format = 'wav'"
        )


def test_table_sizes_query(engine: Engine, populated: None) -> None:
    with unit_of_work(engine) as session:
        rows = monitoring.table_sizes(session)
    names = [row.tablename for row in rows]
    assert set(names) >= {"users", "sessions", "audio_files", "transcriptions", "analyses"}
    assert all(row.schemaname == "public" for row in rows)
    assert all(row.size.endswith(("bytes", "kB", "MB")) for row in rows)


def test_index_usage_spec_text_is_broken_and_the_fixed_query_works(
    engine: Engine, populated: None
) -> None:
    with engine.connect() as conn:
        # Use an index so its counter moves; the backend flushes its statistics once idle.
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql(
            "SELECT count(*) FROM users WHERE email = 'admin@teleai.pro' AND is_active "
            "AND deleted_at IS NULL"
        )
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        conn.commit()
        with pytest.raises(ProgrammingError, match='column "tablename" does not exist'):
            conn.exec_driver_sql(monitoring.SPEC_INDEX_USAGE_SQL)
        conn.rollback()
        with Session(bind=conn) as session:
            rows = monitoring.index_usage(session)
    by_name = {row.indexname: row for row in rows}
    assert {"idx_users_email_active", "idx_audio_files_queue", "pk_users"} <= by_name.keys()
    assert by_name["idx_users_email_active"].tablename == "users"
    assert by_name["idx_users_email_active"].schemaname == "public"
    assert by_name["idx_users_email_active"].idx_scan >= 1
    assert [row.idx_scan for row in rows] == sorted((row.idx_scan for row in rows), reverse=True)


def test_active_sessions_query(engine: Engine, populated: None) -> None:
    with unit_of_work(engine) as session:
        rows = monitoring.active_sessions(session)
    assert [(row.username, row.ip_address) for row in rows] == [("admin", "192.0.2.7")]
    assert rows[0].last_accessed_at >= rows[0].created_at


def test_processing_queue_query(engine: Engine, populated: None) -> None:
    with unit_of_work(engine) as session:
        rows = monitoring.processing_queue(session)
    assert sorted((row.status, row.count) for row in rows) == [("pending", 1), ("processing", 1)]
    assert all(0 <= row.avg_wait_seconds < 600 for row in rows)


def test_monitoring_function_on_a_session_fixture(session: Session) -> None:
    # Works inside an open unit of work too (no COMMIT, no autocommit needed).
    monitoring.refresh_analytics(session)
    assert monitoring.daily_analytics(session) == []


def test_backup_and_restore_commands(engine: Engine, populated: None, tmp_path: Path) -> None:
    """ "Backup and Recovery": pg_dump -F c, then pg_restore -c over the same database."""
    url = libpq_url(engine.url.render_as_string(hide_password=False))
    dump = tmp_path / "teleai_pro_backup.dump"
    before = _tables_with_rls(engine)
    assert {"users", "sessions", "audio_files", "transcriptions", "analyses"} <= before
    for command in (
        ["pg_dump", "-d", url, "-F", "c", "-f", str(dump)],
        ["pg_restore", "-d", url, "-c", str(dump)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
    with unit_of_work(engine) as session:
        assert [row.status for row in monitoring.processing_queue(session)] != []
        assert [row.username for row in monitoring.active_sessions(session)] == ["admin"]
        monitoring.refresh_analytics(session)  # the MV's unique index came back too
    assert _tables_with_rls(engine) == before  # row-level security survives the round trip


def _tables_with_rls(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relkind = 'r'"
        )
        return {name for (name,) in rows}
