"""Migration 002's audit log: every row change of the five tables, secrets redacted, append-only
for the application and worker roles (real login roles, as in test_rls)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db import access, auth_sessions, users
from db.engine import unit_of_work
from db.models import AuditLog, Stage
from pipeline import jobs
from tests.conftest import PgAdmin
from tests.db.app_roles import LoginRole, act_as, acting_as, login_role
from tests.db.factories import make_file, make_transcription, make_user

HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def app_role(pg_admin: PgAdmin) -> Iterator[LoginRole]:
    with login_role(pg_admin, "audit_app", access.APP_ROLE) as role:
        yield role


@pytest.fixture(scope="module")
def worker_role(pg_admin: PgAdmin) -> Iterator[LoginRole]:
    with login_role(pg_admin, "audit_worker", access.WORKER_ROLE) as role:
        yield role


@pytest.fixture
def app_engine(app_role: LoginRole, database_url: str) -> Iterator[Engine]:
    engine = app_role.engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def audit_rows(engine: Engine, table: str | None = None) -> list[AuditLog]:
    """The log in order, read as the superuser (no app role may read it)."""
    with Session(engine) as session:
        stmt = text("SELECT * FROM audit_log ORDER BY id")
        rows = [AuditLog(**row._mapping) for row in session.execute(stmt)]
    return [row for row in rows if table is None or row.table_name == table]


def test_app_writes_are_logged_with_the_acting_user_and_the_login_role(
    engine: Engine, app_engine: Engine, app_role: LoginRole
) -> None:
    with unit_of_work(engine) as session:
        admin = make_user(session, "chief", role="admin")
    [created] = audit_rows(engine, "users")
    assert (created.operation, created.row_id, created.app_user_id) == ("INSERT", admin.id, None)
    assert created.db_role == "postgres"
    assert created.old_data is None
    assert created.new_data is not None
    assert created.new_data["username"] == "chief"

    with unit_of_work(engine) as session:  # intake writes files (migration 004), the owner here
        audio = make_file(session, admin, "call.wav")
    with acting_as(app_engine, admin.id) as session:
        session.execute(
            text("UPDATE audio_files SET file_name = 'renamed.wav' WHERE id = :id"),
            {"id": audio.id},
        )
        session.execute(text("DELETE FROM audio_files WHERE id = :id"), {"id": audio.id})

    logged = audit_rows(engine, "audio_files")
    assert [(row.operation, row.row_id) for row in logged] == [
        ("INSERT", audio.id),
        ("UPDATE", audio.id),
        ("DELETE", audio.id),
    ]
    insert, update, delete = logged
    assert (insert.app_user_id, insert.db_role) == (None, "postgres")
    assert {(row.app_user_id, row.db_role) for row in (update, delete)} == {
        (admin.id, app_role.name)
    }
    assert insert.new_data is not None
    assert insert.new_data["file_name"] == "call.wav"
    assert update.old_data is not None
    assert update.new_data is not None
    assert (update.old_data["file_name"], update.new_data["file_name"]) == (
        "call.wav",
        "renamed.wav",
    )
    assert delete.old_data is not None
    assert delete.old_data["file_name"] == "renamed.wav"
    assert delete.new_data is None
    assert all(row.occurred_at is not None for row in logged)


def test_password_and_token_hashes_never_reach_the_log(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        user = make_user(session, "secretive")
        login, token = auth_sessions.create_session(
            session, user.id, ip_address=None, user_agent="audit", ttl=HOUR
        )
        user.password_hash = users.hash_password("a new password")
        session.flush()
        auth_sessions.revoke_session(session, login.id)
        secrets = [user.password_hash, login.token_hash, token]

    user_rows = audit_rows(engine, "users")
    assert [row.operation for row in user_rows] == ["INSERT", "UPDATE"]
    assert user_rows[0].new_data is not None
    assert user_rows[0].new_data["password_hash"] == "[redacted]"
    changed = user_rows[1]
    assert changed.old_data is not None
    assert changed.new_data is not None
    assert changed.old_data["password_hash"] == "[redacted]"
    assert changed.new_data["password_hash"] == "[redacted: changed]"

    session_rows = audit_rows(engine, "sessions")
    assert [row.operation for row in session_rows] == ["INSERT", "UPDATE"]
    revoked = session_rows[1]
    assert revoked.new_data is not None
    assert revoked.new_data["is_revoked"] is True
    assert revoked.new_data["token_hash"] == "[redacted]"  # unchanged by the revocation

    with engine.connect() as conn:
        everything = conn.execute(text("SELECT string_agg(t::text, ' ') FROM audit_log t"))
        dump = everything.scalar_one()
    assert "$argon2id$" not in dump
    assert all(secret not in dump for secret in secrets)


def test_heartbeats_are_not_logged_but_real_changes_are(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        user = make_user(session)
        _, token = auth_sessions.create_session(
            session, user.id, ip_address=None, user_agent=None, ttl=HOUR
        )
        audio = make_file(session, user)
    before = len(audit_rows(engine))

    with unit_of_work(engine) as session:
        # Touches sessions.last_accessed_at and users.last_activity_at.
        assert auth_sessions.verify_session(session, token) is not None
        claim = jobs.claim(session, audio.id, Stage.INGEST, lease_seconds=60, max_attempts=3)
        assert claim is not None
    after_claim = audit_rows(engine)
    assert [(row.table_name, row.operation) for row in after_claim[before:]] == [
        ("audio_files", "UPDATE")  # the claim (status, attempts): verify_session wrote nothing
    ]

    with unit_of_work(engine) as session:
        assert jobs.renew(session, claim, lease_seconds=120)  # the lease alone: not logged
    assert len(audit_rows(engine)) == len(after_claim)


def test_deleting_a_file_logs_its_cascaded_rows(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        audio = make_file(session, make_user(session))
        version = make_transcription(session, audio)
    with unit_of_work(engine) as session:
        session.execute(text("DELETE FROM audio_files WHERE id = :id"), {"id": audio.id})
    [inserted] = audit_rows(engine, "transcriptions")[:1]
    assert inserted.new_data is not None
    assert inserted.new_data["transcription_text"] == version.transcription_text
    assert "search_vector" not in inserted.new_data  # derived, and large
    deletes = [row for row in audit_rows(engine) if row.operation == "DELETE"]
    assert {(row.table_name, row.row_id) for row in deletes} == {
        ("audio_files", audio.id),
        ("transcriptions", version.id),
    }


def test_worker_writes_are_logged_with_the_worker_role(
    engine: Engine, database_url: str, worker_role: LoginRole
) -> None:
    with unit_of_work(engine) as session:
        audio = make_file(session, make_user(session))
    worker = worker_role.engine(database_url)
    try:
        with unit_of_work(worker) as session:
            assert jobs.claim(session, audio.id, Stage.INGEST, lease_seconds=60, max_attempts=3)
    finally:
        worker.dispose()
    last = audit_rows(engine, "audio_files")[-1]
    assert (last.operation, last.db_role, last.app_user_id) == ("UPDATE", worker_role.name, None)
    assert last.new_data is not None
    assert last.new_data["status"] == "processing"


TAMPERING = [
    "INSERT INTO audit_log (table_name, operation, db_role, new_data) "
    "VALUES ('users', 'INSERT', 'forged', '{}')",
    "UPDATE audit_log SET db_role = 'someone else'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "SELECT count(*) FROM audit_log",
    "SELECT setval('audit_log_id_seq', 1)",
]


@pytest.mark.parametrize("statement", TAMPERING)
@pytest.mark.parametrize("who", ["app", "worker"])
def test_app_and_worker_cannot_touch_the_log_directly(
    engine: Engine,
    database_url: str,
    app_role: LoginRole,
    worker_role: LoginRole,
    who: str,
    statement: str,
) -> None:
    with unit_of_work(engine) as session:
        admin = make_user(session, role="admin")
    role = app_role if who == "app" else worker_role
    attacker = role.engine(database_url)
    try:
        with attacker.connect() as conn, conn.begin():
            act_as(conn, admin.id)
            with pytest.raises(DBAPIError) as caught:
                conn.execute(text(statement))
    finally:
        attacker.dispose()
    assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege), caught.value
    assert len(audit_rows(engine)) == 1  # the admin's creation, nothing else


def test_row_ids_are_the_rows_primary_keys(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        user = make_user(session)
    [row] = audit_rows(engine, "users")
    assert isinstance(row.row_id, uuid.UUID)
    assert row.row_id == user.id
    assert row.new_data is not None
    assert row.new_data["id"] == str(user.id)
