"""Migration 011: ``app_read_file`` (the API's one-statement status read) never shows a row that
row-level security would hide, and knows nobody without a live credential.

The oracle is the policies themselves: a plain SELECT of the same row, in a transaction acting
with the same credential. Seeded like the search tests (one user of each role, another viewer,
a soft-deleted manager, a deactivated analyst, each with files), through a real LOGIN role in
``teleai_app``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, make_url, text

from db import access
from db.auth_sessions import token_hash
from db.engine import unit_of_work
from tests.db.app_roles import mint_token
from tests.db.test_search_rls import PEOPLE, World, world

__all__ = ["world"]  # the module-scoped fixture, seeded once for this module

READ = text("SELECT * FROM app_read_file(:credential, :file_id)")


def _database(w: World) -> str:
    return make_url(w.admin_url).database or ""


def _read(engine: Engine, credential: str, file_id: uuid.UUID) -> list[Any]:
    """app_read_file as the API calls it: one statement in autocommit."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return list(conn.execute(READ, {"credential": credential, "file_id": file_id}))


def _policies_show(engine: Engine, credential: str, file_id: uuid.UUID) -> bool:
    with unit_of_work(engine) as session:
        access.act_with(session, credential)
        found = session.execute(
            text("SELECT count(*) FROM audio_files WHERE id = :id AND deleted_at IS NULL"),
            {"id": file_id},
        ).scalar_one()
    return bool(found)


@pytest.fixture(scope="module")
def tokens(world: World) -> dict[str, str]:
    return {name: mint_token(_database(world), user) for name, user in world.users.items()}


@pytest.fixture(scope="module")
def every_file(world: World) -> Iterator[dict[str, uuid.UUID]]:
    with unit_of_work(world.owner) as session:
        rows = session.execute(text("SELECT file_name, id FROM audio_files")).all()
    yield {str(name): uuid.UUID(str(ident)) for name, ident in rows}


@pytest.mark.parametrize("acting", [name for name in PEOPLE if name not in {"gone", "idle"}])
def test_the_file_is_returned_exactly_when_the_policies_show_it(
    world: World, tokens: dict[str, str], every_file: dict[str, uuid.UUID], acting: str
) -> None:
    shown = 0
    for name, file_id in every_file.items():
        rows = _read(world.app, tokens[acting], file_id)
        assert len(rows) == 1, name  # a live credential: always its identity
        row = rows[0]
        assert uuid.UUID(row.who["user_id"]) == world.users[acting]
        assert row.who["role"] == PEOPLE[acting][0]
        allowed = _policies_show(world.app, tokens[acting], file_id)
        assert (row.id == file_id) is allowed, name
        assert (row.id is None) is not allowed, name
        if allowed:
            assert row.file_name == name
            assert row.metadata_ is not None
        shown += allowed
    assert shown >= 2  # own files at least (the viewer's, with zoo.ogg: 3)
    if PEOPLE[acting][0] != "viewer":
        assert shown == len(every_file)


@pytest.mark.parametrize("who", ["deleted user", "inactive user", "unknown", "revoked", "empty"])
def test_without_a_live_credential_there_is_no_row(
    world: World, every_file: dict[str, uuid.UUID], who: str
) -> None:
    credential = {
        "deleted user": mint_token(_database(world), world.users["gone"]),
        "inactive user": mint_token(_database(world), world.users["idle"]),
        "unknown": "not-a-credential-of-anyone-0123456789abcdef",
        "revoked": mint_token(_database(world), world.users["admin"]),
        "empty": "",
    }[who]
    if who == "revoked":
        with unit_of_work(world.owner) as session:
            session.execute(
                text(
                    "UPDATE sessions SET (is_revoked, revoked_at) = (true, now()) "
                    "WHERE token_hash = :h"
                ),
                {"h": token_hash(credential)},
            )
    for file_id in every_file.values():
        assert _read(world.app, credential, file_id) == []


def test_a_soft_deleted_file_is_gone_even_for_its_owner(
    world: World, tokens: dict[str, str]
) -> None:
    with unit_of_work(world.owner) as session:
        file_id = session.execute(
            text("SELECT id FROM audio_files WHERE file_name = 'analyst-pending.wav'")
        ).scalar_one()
    assert _read(world.app, tokens["analyst"], file_id)[0].id == file_id
    with unit_of_work(world.owner) as session:
        session.execute(
            text("UPDATE audio_files SET deleted_at = now() WHERE id = :id"), {"id": file_id}
        )
    try:
        for acting in ("analyst", "admin", "manager"):
            [row] = _read(world.app, tokens[acting], file_id)
            assert row.id is None and row.who["user_id"] == str(world.users[acting])
    finally:
        with unit_of_work(world.owner) as session:
            session.execute(
                text("UPDATE audio_files SET deleted_at = NULL WHERE id = :id"), {"id": file_id}
            )


def test_the_credential_ends_with_the_statement(world: World, tokens: dict[str, str]) -> None:
    """Autocommit: the credential presented for the read does not outlive it on the pooled
    connection (the next request on that connection must not act as this caller)."""
    with world.app.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        [row] = conn.execute(
            READ, {"credential": tokens["manager"], "file_id": world.files["manager"]}
        )
        assert row.id == world.files["manager"]
        assert conn.execute(text("SELECT current_app_user_id()")).scalar_one() is None
        assert conn.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 0
