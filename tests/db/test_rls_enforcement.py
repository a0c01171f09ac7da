"""Migration 009: what the API decided in Python, decided by the database, for real login roles.

Each rule is checked by presenting a real credential (a session opened through the database's
login, or an API key) as a real ``teleai_app`` login, with no Python check in between: the idle
timeout of sessions, the scope of keys (a read key writes nothing), uploads as the caller only
(owner = the acting user, roles that may own files, a fresh row, never another row's stored
copy), soft-deleted files hidden from everyone but admins (transcripts, analyses and search
included), the NOTIFY of status changes, and intake reading accounts without their password
hash. Also 009 up/down/up.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db import access, api_keys, users
from db.analyses import record_analysis
from db.auth_sessions import token_hash
from db.engine import libpq_url, unit_of_work
from db.migrate import downgrade, upgrade
from db.models import User
from db.transcripts import MAX_SEARCH_RESULTS, search_transcripts
from tests.conftest import DatabaseFactory, PgAdmin
from tests.db.app_roles import login_role
from tests.db.factories import PASSWORD, make_file, make_transcription, make_user
from tests.db.test_rls import full_snapshot

ROLES = ("admin", "manager", "analyst", "viewer")


@dataclass(frozen=True)
class World:
    url: str
    owner: Engine
    app: Engine
    intake: Engine
    users: dict[str, uuid.UUID]  # by role, plus "other" (an analyst)
    files: dict[str, uuid.UUID]
    paths: dict[str, str]


@pytest.fixture(scope="module")
def world(pg_admin: PgAdmin, template_database: str) -> Iterator[World]:
    factory = DatabaseFactory(pg_admin, template_database)
    url = factory.migrated()
    owner = create_engine(url)
    ids: dict[str, uuid.UUID] = {}
    files: dict[str, uuid.UUID] = {}
    paths: dict[str, str] = {}
    with unit_of_work(owner) as session:
        for name, role in [*((r, r) for r in ROLES), ("other", "analyst")]:
            user = make_user(session, f"{name}_{uuid.uuid4().hex[:6]}", role=role)
            audio = make_file(session, user, f"{name}.mp3")
            ids[name], files[name], paths[name] = user.id, audio.id, audio.file_path
    with (
        login_role(pg_admin, "app9", access.APP_ROLE) as app_role,
        login_role(pg_admin, "intake9", access.INTAKE_ROLE) as intake_role,
    ):
        app, intake = app_role.engine(url), intake_role.engine(url)
        try:
            yield World(url, owner, app, intake, ids, files, paths)
        finally:
            app.dispose()
            intake.dispose()
            owner.dispose()
    factory.drop_all()


def session_token(world: World, who: str, *, idle: dt.timedelta | None = None) -> str:
    """A session for ``who`` opened through the database's own login, as the API opens one."""
    with unit_of_work(world.owner) as session:
        username = session.execute(
            text("SELECT username FROM users WHERE id = :id"), {"id": world.users[who]}
        ).scalar_one()
    with unit_of_work(world.app) as session:
        opened = access.open_session(
            session, username, PASSWORD, ip_address=None, user_agent="test",
            ttl_seconds=3600, idle_seconds=idle.total_seconds() if idle else None,
        )  # fmt: skip
    assert opened is not None
    return opened.token


def key_for(world: World, who: str, scope: str) -> str:
    with unit_of_work(world.owner) as session:
        _, key = api_keys.create_key(session, world.users[who], name=f"{scope} key", scope=scope)
    return key


@pytest.fixture
def app_conn(world: World) -> Iterator[Connection]:
    """The app role's connection in a transaction rolled back afterwards."""
    with world.app.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


def changed(conn: Connection, statement: str, **params: Any) -> int | str:
    """Rows the statement changed (in a savepoint), or the error's message when refused."""
    try:
        with conn.begin_nested():
            return conn.execute(text(statement), params).rowcount
    except DBAPIError as error:
        assert isinstance(error.orig, psycopg.errors.InsufficientPrivilege), error
        return str(error.orig)


def visible_files(world: World, credential: str) -> set[uuid.UUID]:
    with access.acting_with(world.app, credential) as session:
        return set(session.scalars(text("SELECT id FROM audio_files")))


NEW_FILE = (
    "INSERT INTO audio_files (user_id, file_name, file_path, file_size, file_format{extra}) "
    "VALUES (:owner, 'new.mp3', :path, 1, 'mp3'{values})"
)


def insert_file(
    conn: Connection, owner: uuid.UUID, *, path: str | None = None, **extra: Any
) -> int | str:
    columns = "".join(f", {c}" for c in extra)
    values = "".join(f", :{c}" for c in extra)
    return changed(
        conn,
        NEW_FILE.format(extra=columns, values=values),
        owner=owner,
        path=path or f"/storage/{uuid.uuid4()}.mp3",
        **extra,
    )


# --- sessions: idle timeout -----------------------------------------------------------------


def test_the_database_refuses_a_session_idle_past_its_timeout(world: World) -> None:
    idle = session_token(world, "analyst", idle=dt.timedelta(minutes=10))
    unlimited = session_token(world, "analyst")
    assert world.files["analyst"] in visible_files(world, idle)
    with unit_of_work(world.owner) as session:
        stored = session.execute(
            text("SELECT idle_timeout FROM sessions WHERE token_hash = :h"),
            {"h": token_hash(idle)},
        ).scalar_one()
        assert stored == dt.timedelta(minutes=10)
        session.execute(
            text("UPDATE sessions SET last_accessed_at = now() - interval '11 minutes' "
                 "WHERE token_hash IN (:a, :b)"),
            {"a": token_hash(idle), "b": token_hash(unlimited)},
        )  # fmt: skip
    assert visible_files(world, idle) == set()
    with access.acting_with(world.app, idle) as session:
        assert session.execute(text("SELECT count(*) FROM app_whoami()")).scalar_one() == 0
        assert session.execute(text("SELECT current_app_scope()")).scalar_one() is None
    # Without an idle timeout (sessions the owner mints) only the absolute expiry applies.
    assert world.files["analyst"] in visible_files(world, unlimited)


def test_an_idle_timeout_must_be_positive(world: World) -> None:
    with pytest.raises(DBAPIError, match="idle timeout must be positive"):
        session_token(world, "viewer", idle=dt.timedelta(seconds=-1))


# --- scopes -----------------------------------------------------------------------------------


def test_a_read_key_reads_but_writes_nothing(world: World, app_conn: Connection) -> None:
    access.act_with(app_conn, key_for(world, "admin", "read"))
    assert app_conn.execute(text("SELECT current_app_scope()")).scalar_one() == "read"
    assert app_conn.execute(text("SELECT count(*) FROM audio_files")).scalar_one() >= len(ROLES)
    mine, theirs = world.files["admin"], world.files["analyst"]
    for statement in (
        "UPDATE audio_files SET file_name = 'x.mp3' WHERE id = :id",
        "DELETE FROM audio_files WHERE id = :id",
    ):
        for target in (mine, theirs):
            assert changed(app_conn, statement, id=target) == 0, statement
    refused = insert_file(app_conn, world.users["admin"])
    assert isinstance(refused, str) and "row-level security" in refused
    assert changed(app_conn, "UPDATE users SET full_name = 'x' WHERE id = :id",
                   id=world.users["admin"]) == 0  # fmt: skip
    refused = changed(
        app_conn,
        "INSERT INTO api_keys (user_id, name, key_prefix, key_hash) "
        "VALUES (:u, 'more', 'tk_x', repeat('a', 64))",
        u=world.users["admin"],
    )
    assert isinstance(refused, str) and "row-level security" in refused


def test_a_write_key_changes_data_but_only_its_own_account(
    world: World, app_conn: Connection
) -> None:
    access.act_with(app_conn, key_for(world, "admin", "write"))
    rename = "UPDATE audio_files SET file_name = 'renamed.mp3' WHERE id = :id"
    assert changed(app_conn, rename, id=world.files["analyst"]) == 1  # files: 'write' suffices
    account = "UPDATE users SET full_name = 'Renamed' WHERE id = :id"
    assert changed(app_conn, account, id=world.users["admin"]) == 1
    assert changed(app_conn, account, id=world.users["viewer"]) == 0  # another's: 'admin'
    ended = "UPDATE sessions SET is_revoked = true, revoked_at = now() WHERE user_id = :id"
    session_token(world, "viewer")
    assert changed(app_conn, ended, id=world.users["viewer"]) == 0


def test_an_admin_key_administers(world: World, app_conn: Connection) -> None:
    access.act_with(app_conn, key_for(world, "admin", "admin"))
    account = "UPDATE users SET full_name = 'Renamed' WHERE id = :id"
    assert changed(app_conn, account, id=world.users["viewer"]) == 1


def test_a_session_has_the_rights_of_its_role(world: World, app_conn: Connection) -> None:
    access.act_with(app_conn, session_token(world, "analyst"))
    assert app_conn.execute(text("SELECT current_app_scope()")).scalar_one() == "admin"
    rename = "UPDATE audio_files SET file_name = 'renamed.mp3' WHERE id = :id"
    assert changed(app_conn, rename, id=world.files["analyst"]) == 1
    assert changed(app_conn, rename, id=world.files["other"]) == 0  # 002: an analyst, not a manager


# --- uploads as the caller ------------------------------------------------------------------


@pytest.mark.parametrize("role", ["analyst", "manager", "admin"])
def test_a_file_is_inserted_only_for_the_acting_user(
    world: World, app_conn: Connection, role: str
) -> None:
    access.act_with(app_conn, session_token(world, role))
    assert insert_file(app_conn, world.users[role]) == 1
    for victim in ("other", "viewer"):
        refused = insert_file(app_conn, world.users[victim])
        assert isinstance(refused, str) and "row-level security" in refused, victim


def test_viewers_and_nobody_insert_no_file(world: World, app_conn: Connection) -> None:
    access.act_with(app_conn, session_token(world, "viewer"))
    assert isinstance(insert_file(app_conn, world.users["viewer"]), str)
    access.act_with(app_conn, "not a credential")
    assert isinstance(insert_file(app_conn, world.users["analyst"]), str)


@pytest.mark.parametrize(
    "forged",
    [
        {"status": "completed"},
        {"stage": "analyze"},
        {"attempts": 3},
        {"deleted_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        {"lease_expires_at": dt.datetime(2099, 1, 1, tzinfo=dt.UTC)},
    ],
)
def test_a_new_file_starts_as_a_fresh_submission(
    world: World, app_conn: Connection, forged: dict[str, Any]
) -> None:
    access.act_with(app_conn, session_token(world, "manager"))
    refused = insert_file(app_conn, world.users["manager"], **forged)
    assert isinstance(refused, str) and "row-level security" in refused, forged


def test_a_new_file_cannot_reuse_another_files_stored_copy(
    world: World, app_conn: Connection
) -> None:
    access.act_with(app_conn, session_token(world, "analyst"))
    refused = insert_file(app_conn, world.users["analyst"], path=world.paths["manager"])
    assert isinstance(refused, str) and "belongs to another file" in refused
    with world.intake.connect() as conn, conn.begin():
        refused = insert_file(conn, world.users["analyst"], path=world.paths["viewer"])
        assert isinstance(refused, str) and "belongs to another file" in refused
        conn.rollback()


# --- soft delete ------------------------------------------------------------------------------


def test_soft_deleted_files_are_hidden_from_all_but_admins(world: World) -> None:
    with unit_of_work(world.owner) as session:
        user = session.get(User, world.users["analyst"])
        assert user is not None
        audio = make_file(session, user, "to-delete.mp3")
        version = make_transcription(session, audio, "the zebra crossing was mentioned")
        record_analysis(
            session, version.id, analysis_type="sentiment", result={"label": "neutral"},
            model_name="vader", parameters={}, processing_time_seconds=0.1,
        )  # fmt: skip
        file_id = audio.id
    manager = session_token(world, "manager")
    with access.acting_with(world.app, manager) as session:
        assert [h.audio_file_id for h in search_transcripts(session, "zebra")] == [file_id]
        deleted = session.execute(
            text("UPDATE audio_files SET deleted_at = now() WHERE id = :id RETURNING id"),
            {"id": file_id},
        ).scalar_one()
        # The deleting transaction still sees what it deleted (its new row is checked).
        assert deleted == file_id
        assert file_id in set(session.scalars(text("SELECT id FROM audio_files")))

    counts = (
        "SELECT (SELECT count(*) FROM audio_files WHERE id = :id), "
        "(SELECT count(*) FROM transcriptions WHERE audio_file_id = :id), "
        "(SELECT count(*) FROM analyses a JOIN transcriptions t ON t.id = a.transcription_id "
        " WHERE t.audio_file_id = :id)"
    )
    for role in ("manager", "analyst"):
        with access.acting_with(world.app, session_token(world, role)) as session:
            assert tuple(session.execute(text(counts), {"id": file_id}).one()) == (0, 0, 0), role
            assert search_transcripts(session, "zebra") == [], role
            # No WHERE, so no read access is needed, yet the deleted row is not changed.
            session.execute(text("UPDATE audio_files SET deleted_at = NULL"))
            assert file_id not in set(session.scalars(text("SELECT id FROM audio_files")))
            session.rollback()
    with access.acting_with(world.app, session_token(world, "admin")) as session:
        assert tuple(session.execute(text(counts), {"id": file_id}).one()) == (1, 1, 1)
        assert [h.audio_file_id for h in search_transcripts(session, "zebra")] == [file_id]
    with unit_of_work(world.owner) as session:
        assert session.execute(
            text("SELECT deleted_at IS NOT NULL FROM audio_files WHERE id = :id"), {"id": file_id}
        ).scalar_one()


# --- live status ----------------------------------------------------------------------------


def test_status_changes_are_notified_at_commit(world: World) -> None:
    file_id = world.files["viewer"]
    with psycopg.connect(libpq_url(world.url), autocommit=True) as listener:
        listener.execute("LISTEN teleai_file_status")
        with unit_of_work(world.owner) as session:
            session.execute(
                text("UPDATE audio_files SET lease_expires_at = now() WHERE id = :id"),
                {"id": file_id},
            )
        assert list(listener.notifies(timeout=0.5)) == []  # a lease renewal is no news
        with unit_of_work(world.owner) as session:
            session.execute(
                text("UPDATE audio_files SET status = 'processing', lease_expires_at = NULL "
                     "WHERE id = :id"),
                {"id": file_id},
            )  # fmt: skip
        notes = list(listener.notifies(timeout=2.0, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [("teleai_file_status", str(file_id))]
        with unit_of_work(world.owner) as session:
            session.execute(
                text("UPDATE audio_files SET status = 'pending' WHERE id = :id"), {"id": file_id}
            )
            session.rollback()  # a rolled-back change is never announced
        assert list(listener.notifies(timeout=0.5)) == []


# --- intake -----------------------------------------------------------------------------------


def test_intake_reads_accounts_but_not_their_password_hash(world: World) -> None:
    with world.intake.connect() as conn, conn.begin():
        with pytest.raises(DBAPIError) as caught, conn.begin_nested():
            conn.execute(text("SELECT password_hash FROM users"))
        assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
        assert conn.execute(text("SELECT count(username) FROM users")).scalar_one() >= len(ROLES)
    # What the drop folder does with it: resolve --user and the operator account.
    with Session(world.intake) as session, session.begin():
        name = session.execute(
            text("SELECT username FROM users WHERE id = :id"), {"id": world.users["other"]}
        ).scalar_one()
        assert users.get_or_create_operator(session, name).id == world.users["other"]
        assert users.get_or_create_operator(session, None).is_operator


# --- up and down -------------------------------------------------------------------------------


def test_009_up_down_up_restores_008_exactly(empty_database_url: str) -> None:
    upgrade(empty_database_url, target="008")
    after_008 = full_snapshot(empty_database_url)
    assert upgrade(empty_database_url, target="009") == ["009"]
    assert full_snapshot(empty_database_url) != after_008
    assert downgrade(empty_database_url, target="008") == ["009"]
    assert full_snapshot(empty_database_url) == after_008
    assert upgrade(empty_database_url, target="009") == ["009"]


# --- teleai search --limit ------------------------------------------------------------------


def test_the_cli_search_limit_is_the_databases(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """``teleai search --limit`` offers what search_latest_transcriptions accepts (1..100):
    the largest passes through to the database, one more is refused before it is asked."""
    from interfaces.cli import app
    from tests.harness import in_process_cli

    monkeypatch.setenv("TELEAI_DATABASE_URL", database_url)
    with in_process_cli() as runner:
        most = runner.invoke(app, ["search", "zebra", "--limit", str(MAX_SEARCH_RESULTS)])
        assert most.exit_code == 0, most.output
        over = runner.invoke(app, ["search", "zebra", "--limit", str(MAX_SEARCH_RESULTS + 1)])
    assert over.exit_code == 2 and "--limit" in over.output, over.output
    engine = create_engine(database_url)
    try:
        with pytest.raises(DBAPIError, match="between 1 and 100"), unit_of_work(engine) as s:
            s.execute(text("SELECT * FROM search_latest_transcriptions('zebra', 101)"))
    finally:
        engine.dispose()
