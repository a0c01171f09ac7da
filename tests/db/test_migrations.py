"""Migration 001 up, down and up again (runner and plain psql), and the runner's own rules.

These pin ``target="001"`` (and copy only 001 where they add files of their own): later
migrations have their own up/down tests (002: tests/db/test_rls.py).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from db.engine import libpq_url
from db.migrate import MIGRATIONS_DIR, MigrationError, discover, downgrade, status, upgrade
from tests.conftest import ADMIN_URL, DatabaseFactory
from tests.db.catalog import public_names, snapshot

REPO = Path(__file__).resolve().parents[2]
UP = MIGRATIONS_DIR / "001_initial_schema_up.sql"
DOWN = MIGRATIONS_DIR / "001_initial_schema_down.sql"

TABLES = {"users", "sessions", "audio_files", "transcriptions", "analyses"}
VIEWS = {"user_activity_summary"}
MATVIEWS = {"file_processing_analytics"}
EXTENSIONS = {"uuid-ossp", "pgcrypto"}
FUNCTIONS = {"set_updated_at"}
TRIGGERS = {f"trg_{table}_updated_at" for table in TABLES}
CREATED_INDEXES = {
    "idx_users_email_active",
    "idx_users_username",
    "idx_users_role",
    "idx_sessions_user_id",
    "idx_sessions_active",
    "idx_sessions_expires_at",
    "idx_audio_files_user_id_created_at",
    "idx_audio_files_status",
    "idx_audio_files_file_format",
    "idx_audio_files_queue",
    "idx_audio_files_user_id_checksum",
    "uq_transcriptions_latest",
    "idx_transcriptions_language_code",
    "idx_transcriptions_search_vector",
    "uq_analyses_transcription_id_type",
    "idx_analyses_transcription_id",
    "idx_analyses_analysis_type",
    "idx_analyses_result",
    "uq_file_processing_analytics_day_format_status",
}
# Indexes PostgreSQL makes for PRIMARY KEY and UNIQUE constraints carry the constraint's name.
CONSTRAINT_INDEXES = {f"pk_{table}" for table in TABLES} | {
    "uq_users_email",
    "uq_users_username",
    "uq_sessions_token_hash",
    "uq_transcriptions_audio_file_id_version",
}


def _sql_names(pattern: str) -> set[str]:
    return set(re.findall(pattern, UP.read_text()))


def assert_schema_complete(database_url: str) -> None:
    names = public_names(database_url)
    assert names["tables"] == TABLES
    assert names["views"] == VIEWS
    assert names["matviews"] == MATVIEWS
    assert names["indexes"] == CREATED_INDEXES | CONSTRAINT_INDEXES
    assert names["triggers"] == TRIGGERS
    assert names["extensions"] == EXTENSIONS
    assert names["functions"] == FUNCTIONS
    assert names["constraints"] == _sql_names(r"CONSTRAINT (\w+)")
    assert names["rls_tables"] == TABLES


def test_expected_object_lists_match_the_sql_file() -> None:
    # Keeps the lists above honest: a new index in the SQL must be named here too.
    assert _sql_names(r"CREATE (?:UNIQUE )?INDEX (\w+)") == CREATED_INDEXES
    assert _sql_names(r"CREATE TRIGGER (\w+)") == TRIGGERS
    assert _sql_names(r"CREATE TABLE (\w+)") == TABLES
    assert _sql_names(r'CREATE EXTENSION IF NOT EXISTS "?([\w-]+)"?') == EXTENSIONS
    assert _sql_names(r"ALTER TABLE (\w+) ENABLE ROW LEVEL SECURITY") == TABLES


def test_runner_up_down_up_leaves_no_trace(empty_database_url: str) -> None:
    before = snapshot(empty_database_url)

    assert upgrade(empty_database_url, target="001") == ["001"]
    assert_schema_complete(empty_database_url)
    assert upgrade(empty_database_url, target="001") == []  # idempotent

    assert downgrade(empty_database_url) == ["001"]
    assert snapshot(empty_database_url) == before

    assert upgrade(empty_database_url, target="001") == ["001"]
    assert_schema_complete(empty_database_url)


def _psql(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", libpq_url(database_url), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr, result.stderr
    return result


def test_psql_up_down_up_as_the_migration_guide_shows(database_factory: DatabaseFactory) -> None:
    # "Create a new database: CREATE DATABASE teleai_pro;" (a per-run name instead).
    name, url = database_factory.adopt("psql")
    _psql(ADMIN_URL, "-c", f"CREATE DATABASE {name};")
    before = snapshot(url)

    _psql(url, "-f", "db/migrations/001_initial_schema_up.sql")
    assert_schema_complete(url)

    _psql(url, "-f", "db/migrations/001_initial_schema_down.sql")
    assert snapshot(url) == before

    _psql(url, "-f", "db/migrations/001_initial_schema_up.sql")
    assert_schema_complete(url)


def test_runner_records_name_and_checksum(empty_database_url: str) -> None:
    upgrade(empty_database_url, target="001")
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
    assert rows == [("001", "initial_schema", hashlib.sha256(UP.read_bytes()).hexdigest())]
    assert status(empty_database_url)[0] == ("001", "initial_schema", True)
    assert all(not done for _, _, done in status(empty_database_url)[1:])


def _copy_migrations(tmp_path: Path) -> Path:
    """A migrations folder with 001 only, for tests that add a 002 of their own."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for path in MIGRATIONS_DIR.glob("001_*.sql"):
        shutil.copy2(path, directory / path.name)
    return directory


def test_editing_an_applied_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    assert upgrade(empty_database_url, directory=directory) == ["001"]
    edited = directory / UP.name
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        upgrade(empty_database_url, directory=directory)


def test_a_failing_migration_leaves_nothing_behind(empty_database_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "002_broken_up.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT 1 / 0;\n"
    )
    with pytest.raises(psycopg.errors.DivisionByZero):
        upgrade(empty_database_url, directory=directory)
    names = public_names(empty_database_url)
    assert "half_done" not in names["tables"]
    assert names["tables"] >= TABLES  # 001 went in before 002 failed, in its own transaction
    assert status(empty_database_url, directory=directory) == [
        ("001", "initial_schema", True),
        ("002", "broken", False),
    ]


def test_target_and_missing_down_file(empty_database_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "002_extra_up.sql").write_text("CREATE TABLE extra (id int);\n")
    assert upgrade(empty_database_url, target="001", directory=directory) == ["001"]
    assert upgrade(empty_database_url, directory=directory) == ["002"]
    with pytest.raises(MigrationError, match="no down file"):
        downgrade(empty_database_url, target="001", directory=directory)
    assert [m.version for m in discover(directory)] == ["001", "002"]


def test_concurrent_upgrades_apply_once(empty_database_url: str) -> None:
    runners = 3
    barrier = threading.Barrier(runners)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait(timeout=10)
        try:
            results.append(upgrade(empty_database_url, target="001"))
        except BaseException as err:  # reported below, on the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(results) == [[], [], ["001"]]
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (1,)
    assert_schema_complete(empty_database_url)


def test_rls_enabled_on_the_five_tables(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute(
            "SELECT relname, relrowsecurity FROM pg_class "
            "WHERE relname = ANY(%s) AND relkind = 'r'",
            (sorted(TABLES),),
        ).fetchall()
    assert dict(rows) == dict.fromkeys(TABLES, True)
