"""Migration 004: the operator account cannot be taken over, reserved names, fixed stored copies.

The attacks are the ones issue 10 reproduced, run for real: LOGIN roles in ``teleai_app`` (with
a minted session credential, as the API presents it), ``teleai_worker`` and ``teleai_intake``
against one seeded database; each statement runs in a transaction that is rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from db import access, users
from db.engine import unit_of_work
from db.migrate import downgrade, upgrade
from tests.conftest import DatabaseFactory, PgAdmin
from tests.databases import rolled_back
from tests.db.app_roles import LoginRole, act_as, login_role
from tests.db.factories import make_file, make_user
from tests.db.test_rls import full_snapshot


@dataclass(frozen=True)
class World:
    url: str
    app: Engine
    worker: Engine
    intake: Engine
    intake_role: LoginRole
    users: dict[str, uuid.UUID]
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
        for name in ("viewer", "analyst", "victim", "manager", "admin"):
            role = "analyst" if name == "victim" else name
            user = make_user(session, f"{name}_{uuid.uuid4().hex[:6]}", role=role)
            ids[name] = user.id
            audio = make_file(session, user, f"{name}.wav")
            files[name], paths[name] = audio.id, audio.file_path
    owner.dispose()
    with (
        login_role(pg_admin, "app", access.APP_ROLE) as app_role,
        login_role(pg_admin, "worker", access.WORKER_ROLE) as worker_role,
        login_role(pg_admin, "intake", access.INTAKE_ROLE) as intake_role,
    ):
        app, worker, intake = (role.engine(url) for role in (app_role, worker_role, intake_role))
        try:
            yield World(url, app, worker, intake, intake_role, ids, files, paths)
        finally:
            for engine in (app, worker, intake):
                engine.dispose()
    factory.drop_all()


@pytest.fixture
def app_conn(world: World) -> Iterator[Connection]:
    with rolled_back(world.app) as conn:
        yield conn


def refused(conn: Connection, statement: str, **params: Any) -> str | None:
    """The database's refusal message, or None when the statement went through (on 1 row)."""
    try:
        with conn.begin_nested():
            result = conn.execute(text(statement), params)
            assert result.rowcount == 1, f"{statement}: {result.rowcount} rows"
    except DBAPIError as error:
        if isinstance(error.orig, psycopg.errors.InsufficientPrivilege):
            return str(error.orig).splitlines()[0]
        raise
    return None


# --- the operator account and reserved names -------------------------------------------------


@pytest.mark.parametrize("name", ["operator", "Operator", "admin", "SYSTEM", "root"])
def test_a_viewer_cannot_rename_themselves_to_a_reserved_name(
    world: World, app_conn: Connection, name: str
) -> None:
    me = world.users["viewer"]
    act_as(app_conn, me)
    message = refused(app_conn, "UPDATE users SET username = :n WHERE id = :id", n=name, id=me)
    assert message is not None and "is reserved" in message, message
    assert (
        refused(app_conn, "UPDATE users SET username = :n WHERE id = :id", n="vi3w3r", id=me)
        is None
    )


def test_an_admin_can_neither_give_a_reserved_name_nor_mark_an_operator(
    world: World, app_conn: Connection
) -> None:
    act_as(app_conn, world.users["admin"])
    victim = world.users["viewer"]
    rename = "UPDATE users SET username = 'operator' WHERE id = :id"
    assert "is reserved" in (refused(app_conn, rename, id=victim) or "")
    insert = (
        "INSERT INTO users (email, username, password_hash) "
        "VALUES ('sys@example.org', 'system', 'x')"
    )
    assert "is reserved" in (refused(app_conn, insert) or "")
    mark = "UPDATE users SET is_operator = true WHERE id = :id"
    assert "only the schema owner" in (refused(app_conn, mark, id=victim) or "")


def test_the_default_owner_is_the_flagged_account_not_whoever_is_named_operator(
    database_url: str,
) -> None:
    """A squatter from before 004 (a viewer named ``operator``) keeps the name, not the role."""
    engine = create_engine(database_url)
    try:
        with unit_of_work(engine) as session:
            squatter = make_user(session, "operator", role="viewer")
        with unit_of_work(engine) as session:
            operator = users.get_or_create_operator(session, None)
            assert operator.id != squatter.id
            assert operator.is_operator and operator.role == "admin"
            assert operator.username.startswith("operator-")
            again = users.get_or_create_operator(session, None)
            assert again.id == operator.id
            assert session.scalar(text("SELECT count(*) FROM users WHERE is_operator")) == 1
    finally:
        engine.dispose()


def test_an_operator_made_before_004_is_adopted_and_a_squatter_is_not(
    empty_database_url: str,
) -> None:
    upgrade(empty_database_url, target="003")
    engine = create_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (email, username, password_hash, role, full_name) VALUES "
                    "('operator@localhost', 'operator', 'x', 'admin', 'Local operator'), "
                    "('squat@example.org', 'operator2', 'x', 'viewer', 'Local operator')"
                )
            )
        upgrade(empty_database_url, target="004")
        with engine.connect() as conn:
            flagged = conn.execute(text("SELECT username FROM users WHERE is_operator")).all()
        assert flagged == [("operator",)]
    finally:
        engine.dispose()


# --- stored copies -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["analyst", "manager", "admin"])
def test_no_app_user_can_point_a_row_at_another_users_stored_copy(
    world: World, app_conn: Connection, role: str
) -> None:
    act_as(app_conn, world.users[role])
    stolen = world.paths["victim"]
    insert = (
        "INSERT INTO audio_files (user_id, file_name, file_path, file_size, file_format) "
        "VALUES (:me, 'mine.wav', :path, 1, 'wav')"
    )
    # Since 009 the app role inserts files as the caller, but never onto a stored copy that
    # another row already points at.
    message = refused(app_conn, insert, me=world.users[role], path=stolen)
    assert message is not None and "belongs to another file" in message, message
    update = "UPDATE audio_files SET file_path = :path WHERE id = :id"
    message = refused(app_conn, update, path=stolen, id=world.files[role])
    assert message is not None and "never changed" in message, message
    outside = "UPDATE audio_files SET file_path = '/etc/passwd' WHERE id = :id"
    assert refused(app_conn, outside, id=world.files[role]) is not None
    # What an owner of a row may still change.
    rename = "UPDATE audio_files SET file_name = 'renamed.wav' WHERE id = :id"
    assert refused(app_conn, rename, id=world.files[role]) is None


def test_workers_cannot_move_a_stored_copy(world: World) -> None:
    with world.worker.connect() as conn, conn.begin():
        message = refused(
            conn,
            "UPDATE audio_files SET file_path = :path WHERE id = :id",
            path=world.paths["victim"],
            id=world.files["analyst"],
        )
    assert message is not None and "permission denied" in message, message


def test_intake_records_files_and_nothing_else(world: World) -> None:
    with world.intake.connect() as conn, conn.begin():
        operator_id = conn.execute(text("SELECT operator_user_id()")).scalar_one()
        assert conn.execute(
            text("SELECT is_operator FROM users WHERE id = :id"), {"id": operator_id}
        ).scalar_one()
        new_id = conn.execute(
            text(
                "INSERT INTO audio_files (user_id, file_name, file_path, file_size, file_format) "
                "VALUES (:u, 'new.wav', '/storage/2026/12/new.wav', 1, 'wav') RETURNING id"
            ),
            {"u": world.users["analyst"]},
        ).scalar_one()
        done = "UPDATE audio_files SET upload_completed_at = now() WHERE id = :id"
        assert refused(conn, done, id=new_id) is None
        for statement in (
            "UPDATE audio_files SET file_path = '/elsewhere.wav' WHERE id = :id",
            "UPDATE audio_files SET status = 'completed' WHERE id = :id",
            "DELETE FROM audio_files WHERE id = :id",
        ):
            assert refused(conn, statement, id=new_id) is not None, statement
        user = world.users["viewer"]
        for statement in (
            "UPDATE users SET role = 'admin' WHERE id = :id",
            "SELECT count(*) FROM sessions WHERE user_id = :id",
            "SELECT count(*) FROM transcriptions WHERE audio_file_id = :id",
        ):
            assert refused(conn, statement, id=user) is not None, statement
        conn.rollback()


# --- up and down -------------------------------------------------------------------------------


def test_004_up_down_up_restores_003_exactly(empty_database_url: str) -> None:
    assert upgrade(empty_database_url, target="003")
    after_003 = full_snapshot(empty_database_url)
    assert upgrade(empty_database_url, target="004") == ["004"]
    assert full_snapshot(empty_database_url) != after_003
    assert downgrade(empty_database_url, target="003") == ["004"]
    assert full_snapshot(empty_database_url) == after_003
    assert upgrade(empty_database_url, target="004") == ["004"]  # teleai_intake exists now
