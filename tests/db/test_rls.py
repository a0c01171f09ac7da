"""Migration 002: tenants isolated by row-level security, for real login roles.

Every test here connects as a LOGIN role made for this module (a member of ``teleai_app`` or
``teleai_worker``, never a superuser) to a database seeded once by the superuser: one user of
each app role plus an ``other`` user, each owning a session, a file, a transcription and an
analysis. Each statement runs in a transaction that is rolled back, so the cases are
independent. The matrix asserts exactly which (table, operation, role, whose row) are allowed:
a denied SELECT finds 0 rows; a denied write changes 0 rows or fails with
InsufficientPrivilege (RLS "new row violates row-level security policy" or a missing grant).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db import access, auth_sessions
from db.analyses import record_analysis
from db.auth_sessions import create_session
from db.engine import libpq_url, unit_of_work
from db.migrate import MIGRATIONS_DIR, downgrade, upgrade
from db.models import Stage
from db.transcripts import add_transcription_version
from pipeline import jobs
from tests.conftest import DatabaseFactory, PgAdmin
from tests.databases import rolled_back, rolled_back_session
from tests.db.app_roles import LoginRole, act_as, acting_as, login_role
from tests.db.catalog import snapshot
from tests.db.factories import PASSWORD, make_file, make_transcription, make_user

ROLES = ("admin", "manager", "analyst", "viewer")
TABLES = ("users", "sessions", "audio_files", "transcriptions", "analyses")
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")
UP_002 = MIGRATIONS_DIR / "002_security_up.sql"
DOWN_002 = MIGRATIONS_DIR / "002_security_down.sql"
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Owned:
    """One user's rows, one per table."""

    users: uuid.UUID
    sessions: uuid.UUID
    audio_files: uuid.UUID
    transcriptions: uuid.UUID
    analyses: uuid.UUID

    def id_in(self, table: str) -> uuid.UUID:
        value = getattr(self, table)
        assert isinstance(value, uuid.UUID)
        return value


@dataclass(frozen=True)
class World:
    admin_url: str
    app: Engine
    worker: Engine
    app_role: LoginRole
    worker_role: LoginRole
    rows: dict[str, Owned]  # by username: admin, manager, analyst, viewer, other


def _seed(admin_url: str) -> dict[str, Owned]:
    engine = create_engine(admin_url)
    rows: dict[str, Owned] = {}
    try:
        with unit_of_work(engine) as session:
            for name, role in [*((r, r) for r in ROLES), ("other", "viewer")]:
                user = make_user(session, name, role=role)
                login, _ = create_session(
                    session, user.id, ip_address=None, user_agent=name, ttl=HOUR
                )
                audio = make_file(session, user, f"{name}.mp3")
                version = make_transcription(session, audio, f"{name} said something.")
                analysis = record_analysis(
                    session,
                    version.id,
                    analysis_type="sentiment",
                    result={"label": "neutral"},
                    model_name="vader",
                    parameters={},
                    processing_time_seconds=0.1,
                )
                rows[name] = Owned(user.id, login.id, audio.id, version.id, analysis.id)
    finally:
        engine.dispose()
    return rows


@pytest.fixture(scope="module")
def world(pg_admin: PgAdmin, template_database: str) -> Iterator[World]:
    factory = DatabaseFactory(pg_admin, template_database)
    url = factory.migrated()
    rows = _seed(url)
    with (
        login_role(pg_admin, "app", access.APP_ROLE) as app_role,
        login_role(pg_admin, "worker", access.WORKER_ROLE) as worker_role,
    ):
        app = app_role.engine(url)
        worker = worker_role.engine(url)
        try:
            yield World(url, app, worker, app_role, worker_role, rows)
        finally:
            app.dispose()
            worker.dispose()
    factory.drop_all()


@pytest.fixture
def app_conn(world: World) -> Iterator[Connection]:
    """The app role's connection inside a transaction that is rolled back afterwards."""
    with rolled_back(world.app) as conn:
        yield conn


@pytest.fixture
def worker_session(world: World) -> Iterator[Session]:
    with rolled_back_session(world.worker) as session:
        yield session


def _denied_by_privilege(error: DBAPIError) -> bool:
    return isinstance(error.orig, psycopg.errors.InsufficientPrivilege)


def attempt(conn: Connection, statement: str, **params: Any) -> bool:
    """Run one statement in a savepoint; True when it reached (or wrote) exactly one row."""
    try:
        with conn.begin_nested():
            result = conn.execute(text(statement), params)
            if statement.startswith("SELECT"):
                return bool(result.scalar_one() == 1)
            return result.rowcount == 1
    except DBAPIError as error:
        if _denied_by_privilege(error):
            return False
        if isinstance(error.orig, psycopg.errors.ForeignKeyViolation):
            # DELETE of a user who owns files: the policy let the row through, the RESTRICT
            # foreign key (checked without RLS) then refused it.
            return True
        raise


UPDATES = {
    "users": "UPDATE users SET full_name = 'Renamed' WHERE id = :id",
    "sessions": "UPDATE sessions SET user_agent = 'renamed' WHERE id = :id",
    "audio_files": "UPDATE audio_files SET file_name = 'renamed.mp3' WHERE id = :id",
    "transcriptions": "UPDATE transcriptions SET language_code = 'de' WHERE id = :id",
    "analyses": "UPDATE analyses SET model_name = 'renamed' WHERE id = :id",
}
INSERTS = {
    "users": "INSERT INTO users (email, username, password_hash) "
    "VALUES (:tag || '@example.org', :tag, 'not-a-real-hash')",
    "sessions": "INSERT INTO sessions (user_id, token_hash, expires_at) "
    "VALUES (:user, :hash, now() + interval '1 hour')",
    "audio_files": "INSERT INTO audio_files (user_id, file_name, file_path, file_size, "
    "file_format) VALUES (:user, 'new.mp3', '/uploads/new.mp3', 1, 'mp3')",
    "transcriptions": "INSERT INTO transcriptions (audio_file_id, version, is_latest, "
    "transcription_text) VALUES (:file, 2, false, 'second version')",
    "analyses": "INSERT INTO analyses (transcription_id, analysis_type, result) "
    "VALUES (:transcription, 'custom', '{}')",
}


def run_operation(conn: Connection, table: str, operation: str, target: Owned) -> bool:
    row_id = target.id_in(table)
    if operation == "SELECT":
        return attempt(conn, f"SELECT count(*) FROM {table} WHERE id = :id", id=row_id)  # noqa: S608
    if operation == "UPDATE":
        return attempt(conn, UPDATES[table], id=row_id)
    if operation == "DELETE":
        return attempt(conn, f"DELETE FROM {table} WHERE id = :id", id=row_id)  # noqa: S608
    tag = f"new_{uuid.uuid4().hex[:12]}"
    return attempt(
        conn,
        INSERTS[table],
        tag=tag,
        user=target.users,
        hash=uuid.uuid4().hex * 2,
        file=target.audio_files,
        transcription=target.transcriptions,
    )


def expected(table: str, operation: str, role: str, own: bool) -> bool:
    """The policy matrix of migration 002 (its header comment), as a predicate, with 009's
    rule for new files: only for oneself (the acting user), by a role that may own files."""
    manages = role in ("admin", "manager")
    staff = manages or role == "analyst"
    if table == "users":
        return role == "admin" or (own and operation in ("SELECT", "UPDATE"))
    if table == "sessions":
        return role == "admin" or own
    if operation == "SELECT":
        return own or staff
    if table == "audio_files":
        if operation == "INSERT":
            return own and staff  # migration 009 (004 had taken INSERT from the app role)
        return manages or (own and role == "analyst")
    if table == "transcriptions":
        return manages
    return manages or (role == "analyst" and operation != "DELETE")  # analyses


@pytest.mark.parametrize("target", ["own", "other"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("table", TABLES)
def test_policy_matrix(
    world: World, app_conn: Connection, table: str, operation: str, role: str, target: str
) -> None:
    act_as(app_conn, world.rows[role].users)
    victim = world.rows[role if target == "own" else "other"]
    allowed = run_operation(app_conn, table, operation, victim)
    assert allowed is expected(table, operation, role, target == "own")


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("table", TABLES)
def test_no_acting_user_reaches_nothing(
    world: World, app_conn: Connection, table: str, operation: str
) -> None:
    assert access.current_user_id(app_conn) is None
    for owner in world.rows.values():
        assert run_operation(app_conn, table, operation, owner) is False


@pytest.mark.parametrize("table", TABLES)
def test_no_acting_user_counts_zero_rows(app_conn: Connection, table: str) -> None:
    count = app_conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    assert count == 0


def test_unknown_or_deactivated_user_reaches_nothing(world: World, app_conn: Connection) -> None:
    act_as(app_conn, uuid.uuid4())
    assert app_conn.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 0

    admin = world.rows["admin"]
    act_as(app_conn, admin.users)
    assert app_conn.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 5
    # An admin may deactivate themselves; from the next statement on they see nothing.
    assert attempt(app_conn, "UPDATE users SET is_active = false WHERE id = :id", id=admin.users)
    assert app_conn.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 0
    assert run_operation(app_conn, "users", "SELECT", admin) is False


@pytest.mark.parametrize(
    "change",
    ["role = 'admin'", "is_active = false", "deleted_at = now()", "id = uuid_generate_v4()"],
)
def test_users_cannot_change_their_own_standing(
    world: World, app_conn: Connection, change: str
) -> None:
    me = world.rows["viewer"].users
    act_as(app_conn, me)
    assert attempt(app_conn, "UPDATE users SET full_name = 'Me' WHERE id = :id", id=me)
    statement = f"UPDATE users SET {change} WHERE id = :id"  # noqa: S608 - fixed cases above
    assert not attempt(app_conn, statement, id=me)


def test_an_analyst_cannot_give_a_file_away(world: World, app_conn: Connection) -> None:
    analyst, other = world.rows["analyst"], world.rows["other"]
    act_as(app_conn, analyst.users)
    assert not attempt(
        app_conn,
        "UPDATE audio_files SET user_id = :other WHERE id = :id",
        other=other.users,
        id=analyst.audio_files,
    )


def test_pooled_connection_forgets_the_user_after_commit(world: World) -> None:
    engine = world.app_role.engine(world.admin_url, pool_size=1, max_overflow=0)
    try:
        with acting_as(engine, world.rows["admin"].users) as session:
            first_pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert session.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 5
        with unit_of_work(engine) as session:
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_pid
            assert access.current_user_id(session) is None
            assert session.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 0
            assert session.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    finally:
        engine.dispose()


def scram_matches(verifier: str, password: str) -> bool:
    """RFC 5802 check of a ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` verifier.

    pg_hba trusts 127.0.0.1 on test machines, so a login would not prove the password right.
    """
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    assert match is not None, verifier
    iterations, salt, stored_key = int(match[1]), base64.b64decode(match[2]), match[3]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


def test_app_roles_are_not_privileged_and_own_nothing(world: World) -> None:
    names = [access.APP_ROLE, access.WORKER_ROLE, world.app_role.name, world.worker_role.name]
    with psycopg.connect(libpq_url(world.admin_url)) as conn:
        roles = conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb "
            "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname",
            (names,),
        ).fetchall()
        owned = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = ANY(%s)",
            (names,),
        ).fetchall()
        forced = conn.execute(
            "SELECT relname FROM pg_class WHERE relforcerowsecurity AND relrowsecurity "
            "AND relkind = 'r'"
        ).fetchall()
        member_of = conn.execute(
            "SELECT pg_has_role(%s, 'teleai_app', 'USAGE'), pg_has_role(%s, 'teleai_worker', "
            "'USAGE'), pg_has_role(%s, 'teleai_app', 'USAGE')",
            (world.app_role.name, world.app_role.name, world.worker_role.name),
        ).fetchone()
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (world.app_role.name,)
        ).fetchone()
    assert stored is not None
    # Hashed on the client by libpq: the server (and its log) never saw the password.
    assert world.app_role.password not in stored[0]
    assert scram_matches(stored[0], world.app_role.password)
    assert not scram_matches(stored[0], world.app_role.password + "x")
    assert len(roles) == 4
    for name, superuser, bypass_rls, can_login, create_role, create_db in roles:
        assert not (superuser or bypass_rls or create_role or create_db), name
        assert can_login is name.startswith("teleai_test_"), name
    assert owned == []
    # 005 adds api_keys, usage_daily and app_secret, forced the same way (later migrations
    # add their own tables; each must force RLS too, which their own tests check).
    assert {name for (name,) in forced} >= {*TABLES, "api_keys", "usage_daily", "app_secret"}
    assert member_of == (True, False, False)


def test_view_applies_the_callers_policies(world: World, app_conn: Connection) -> None:
    summary = "SELECT username, total_files, total_transcriptions FROM user_activity_summary"
    act_as(app_conn, world.rows["viewer"].users)
    assert [tuple(row) for row in app_conn.execute(text(summary))] == [("viewer", 1, 1)]
    act_as(app_conn, world.rows["admin"].users)
    rows = app_conn.execute(text(summary)).all()
    assert {name for name, _, _ in rows} >= {*ROLES, "other"}
    assert all(files == 1 for name, files, _ in rows if name in ROLES)


def test_materialized_view_is_not_readable_by_the_app(world: World, app_conn: Connection) -> None:
    act_as(app_conn, world.rows["admin"].users)
    assert not attempt(app_conn, "SELECT count(*) FROM file_processing_analytics")
    assert not attempt(app_conn, "SELECT refresh_file_processing_analytics() IS NULL")
    assert not attempt(app_conn, "SELECT purge_expired_sessions(interval '1 day') = 1")


def test_login_and_request_flow_under_rls(world: World) -> None:
    """A login and a later request, end to end as the app role: the database checks the
    password proof and opens the session (005), the token then decides the acting user."""
    with unit_of_work(world.app) as session:
        assert (
            access.open_session(
                session, "nobody", PASSWORD, ip_address=None, user_agent="rls", ttl_seconds=3600
            )
            is None
        )
        assert (
            access.open_session(
                session,
                "analyst",
                PASSWORD + "x",
                ip_address=None,
                user_agent="rls",
                ttl_seconds=3600,
            )
            is None
        )
        opened = access.open_session(
            session, "Analyst@Example.org", PASSWORD, ip_address="192.0.2.1", user_agent="rls",
            ttl_seconds=3600,
        )  # fmt: skip
        assert opened is not None
        assert opened.user_id == world.rows["analyst"].users
        token = opened.token
    with unit_of_work(world.app) as session:
        access.act_with(session, token + "x")
        assert access.current_user_id(session) is None
    with access.acting_with(world.app, token) as session:
        assert access.current_user_id(session) == opened.user_id
        live = auth_sessions.verify_session(session, token)
        assert live is not None
        assert str(live.ip_address) == "192.0.2.1"
        rotated = auth_sessions.rotate_session(session, token, ttl=HOUR)
        assert rotated is not None
    with access.acting_with(world.app, token) as session:
        assert access.current_user_id(session) is None  # the old token is revoked
    with access.acting_with(world.app, rotated[1]) as session:
        assert access.current_user_id(session) == opened.user_id


def test_worker_processes_any_file_but_reads_no_accounts(
    world: World, worker_session: Session
) -> None:
    session = worker_session
    other = world.rows["other"]
    assert session.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 5
    assert session.execute(text("SELECT count(*) FROM transcriptions")).scalar_one() == 5

    claim = jobs.claim(session, other.audio_files, Stage.INGEST, lease_seconds=60, max_attempts=3)
    assert claim is not None
    assert jobs.renew(session, claim, lease_seconds=60)
    assert jobs.advance(session, claim, Stage.TRANSCRIBE, timings={"probe": 0.1}, values={})
    claim = jobs.claim(
        session, other.audio_files, Stage.TRANSCRIBE, lease_seconds=60, max_attempts=3
    )
    assert claim is not None
    version = add_transcription_version(
        session,
        other.audio_files,
        text="second pass",
        language_code="en",
        confidence_score=0.9,
        engine="faster-whisper",
        engine_version="1",
        model_name="tiny.en",
        segments=[],
        word_count=2,
        processing_time_seconds=0.2,
    )
    assert version.version == 2
    analysis = record_analysis(
        session,
        version.id,
        analysis_type="keywords",
        result={"keywords": []},
        model_name="keybert",
        parameters={},
        processing_time_seconds=0.1,
    )
    assert analysis.transcription_id == version.id
    assert jobs.advance(session, claim, Stage.ANALYZE, timings={}, values={})
    assert (
        session.execute(text("SELECT purge_expired_sessions(interval '7 days')")).scalar_one() == 0
    )
    session.execute(text("SELECT refresh_file_processing_analytics()"))


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM sessions",
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM audit_log",
        "SELECT count(*) FROM user_activity_summary",
        "DELETE FROM audio_files WHERE id = :file",
        "INSERT INTO audio_files (user_id, file_name, file_path, file_size, file_format) "
        "VALUES (:user, 'x.mp3', '/x.mp3', 1, 'mp3')",
        "UPDATE audio_files SET user_id = :user WHERE id = :file",
        "UPDATE audio_files SET file_path = '/etc/passwd' WHERE id = :file",
        "UPDATE transcriptions SET transcription_text = 'forged' WHERE audio_file_id = :file",
        "DELETE FROM transcriptions WHERE audio_file_id = :file",
        "UPDATE analyses SET result = '{}'",
        "TRUNCATE audio_files",
    ],
)
def test_worker_cannot(world: World, statement: str) -> None:
    other = world.rows["other"]
    with world.worker.connect() as conn, conn.begin(), pytest.raises(DBAPIError) as caught:
        conn.execute(text(statement), {"file": other.audio_files, "user": other.users})
    assert _denied_by_privilege(caught.value), caught.value


# --- the migration itself ---------------------------------------------------------------------

ACL_QUERIES: dict[str, str] = {
    # Privileges as PostgreSQL resolves them: NULL (never granted) and an explicit ACL equal to
    # the default compare equal, so GRANT + REVOKE counts as "as before".
    "relations": """
        SELECT c.relname, c.relkind, x.grantee::regrole::text, x.privilege_type
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             aclexplode(COALESCE(c.relacl, acldefault(
                 CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) x
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S')""",
    "columns": """
        SELECT c.relname, a.attname, x.grantee::regrole::text, x.privilege_type
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(a.attacl) x
        WHERE n.nspname = 'public' AND a.attacl IS NOT NULL""",
    "schema": """
        SELECT x.grantee::regrole::text, x.privilege_type FROM pg_namespace n,
             aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) x
        WHERE n.nspname = 'public'""",
    "functions": """
        SELECT p.proname, x.grantee::regrole::text, x.privilege_type
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) x
        WHERE n.nspname = 'public'""",
    "options": """
        SELECT c.relname, c.reloptions::text, c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'""",
}


def full_snapshot(database_url: str) -> dict[str, set[tuple[Any, ...]]]:
    """Every named object (tests.db.catalog) plus privileges and table options."""
    result = snapshot(database_url)
    with psycopg.connect(libpq_url(database_url)) as conn:
        for name, query in ACL_QUERIES.items():
            result[f"acl_{name}"] = {tuple(row) for row in conn.execute(query).fetchall()}
    return result


def _policies_in_sql() -> set[str]:
    return set(re.findall(r"CREATE POLICY (\w+)", UP_002.read_text()))


def assert_002_applied(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        policies = conn.execute(
            "SELECT polname, array(SELECT rolname FROM pg_roles WHERE oid = ANY(polroles)) "
            "FROM pg_policy"
        ).fetchall()
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'trg_%%_audit'"
        ).fetchone()
        invoker = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'user_activity_summary'"
        ).fetchone()
    assert {name for name, _ in policies} == _policies_in_sql()
    # A policy without TO would apply to PUBLIC; each one names exactly one group role.
    assert all(roles in (["teleai_app"], ["teleai_worker"]) for _, roles in policies), policies
    assert triggers == (len(TABLES),)
    assert invoker == (["security_invoker=true"],)


def test_down_file_drops_every_policy_the_up_file_creates() -> None:
    assert set(re.findall(r"DROP POLICY (\w+)", DOWN_002.read_text())) == _policies_in_sql()


def test_002_up_down_up_restores_001_exactly(empty_database_url: str) -> None:
    assert upgrade(empty_database_url, target="001") == ["001"]
    after_001 = full_snapshot(empty_database_url)

    # Pinned to 002: later migrations have their own up/down tests (003: test_search_rls.py).
    assert upgrade(empty_database_url, target="002") == ["002"]
    assert_002_applied(empty_database_url)
    assert full_snapshot(empty_database_url) != after_001

    assert downgrade(empty_database_url, target="001") == ["002"]
    assert full_snapshot(empty_database_url) == after_001

    assert upgrade(empty_database_url, target="002") == ["002"]  # the roles exist now
    assert_002_applied(empty_database_url)
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        kept = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('teleai_app', 'teleai_worker')"
        ).fetchone()
    assert kept == (2,)
