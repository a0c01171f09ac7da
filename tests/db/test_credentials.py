"""Migration 005: the acting user comes from the presented credential, for a real app login role.

The app role cannot name a user any more (a forged ``app.current_user_id`` reaches nothing), cannot
look users up without a credential, and logs in only with the password (the database compares the
proof); a session token or API key acts as its user until it is revoked or expires. Also: API key
rules (revocation is final, no plaintext anywhere), the usage trigger, and 005 up/down/up.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from db import access, api_keys
from db.auth_sessions import create_session
from db.engine import unit_of_work
from db.migrate import downgrade, upgrade
from db.models import ApiKey, AudioFile, UsageDaily
from tests.conftest import DatabaseFactory, PgAdmin
from tests.db.app_roles import login_role
from tests.db.factories import PASSWORD, make_file, make_user
from tests.db.test_rls import full_snapshot


@dataclass(frozen=True)
class World:
    owner: Engine
    app: Engine
    admin: uuid.UUID
    viewer: uuid.UUID


@pytest.fixture(scope="module")
def world(pg_admin: PgAdmin, template_database: str) -> Iterator[World]:
    factory = DatabaseFactory(pg_admin, template_database)
    url = factory.migrated()
    owner = create_engine(url)
    with unit_of_work(owner) as session:
        admin = make_user(session, "boss", role="admin").id
        viewer_user = make_user(session, "vera", role="viewer")
        make_file(session, viewer_user, "vera.mp3")
        viewer = viewer_user.id
    with login_role(pg_admin, "cred", access.APP_ROLE) as role:
        app = role.engine(url)
        try:
            yield World(owner, app, admin, viewer)
        finally:
            app.dispose()
            owner.dispose()
    factory.drop_all()


def token_for(world: World, user_id: uuid.UUID, ttl: dt.timedelta = dt.timedelta(hours=1)) -> str:
    with unit_of_work(world.owner) as session:
        _, token = create_session(session, user_id, ip_address=None, user_agent=None, ttl=ttl)
    return token


def files_seen(world: World, credential: str | None, *, forged: uuid.UUID | None = None) -> int:
    with unit_of_work(world.app) as session:
        if credential is not None:
            access.act_with(session, credential)
        if forged is not None:
            session.execute(
                text("SELECT set_config('app.current_user_id', :id, true)"), {"id": str(forged)}
            )
        return int(session.execute(text("SELECT count(*) FROM audio_files")).scalar_one())


def test_a_forged_user_id_reaches_nothing(world: World) -> None:
    assert files_seen(world, None, forged=world.admin) == 0
    assert files_seen(world, "not-a-credential", forged=world.admin) == 0
    assert files_seen(world, token_for(world, world.admin)) == 1
    # A viewer's credential plus a forged admin id is still the viewer.
    viewer = token_for(world, world.viewer)
    with unit_of_work(world.app) as session:
        access.act_with(session, viewer)
        session.execute(
            text("SELECT set_config('app.current_user_id', :id, true)"), {"id": str(world.admin)}
        )
        assert access.current_user_id(session) == world.viewer
        assert session.execute(text("SELECT current_app_role()")).scalar_one() == "viewer"


def test_the_stored_hash_is_not_a_credential(world: World) -> None:
    token = token_for(world, world.admin)
    from db.auth_sessions import token_hash

    assert files_seen(world, token_hash(token)) == 0


@pytest.mark.parametrize(
    "function",
    ["app_login_user_id('boss')", "app_session_user_id(repeat('0', 64))", "value FROM app_secret"],
)
def test_lookups_without_a_credential_are_not_executable(world: World, function: str) -> None:
    with pytest.raises(DBAPIError) as caught, unit_of_work(world.app) as session:
        session.execute(text(f"SELECT {function}"))
    assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)


def test_expired_revoked_and_deactivated_credentials_act_as_nobody(world: World) -> None:
    with unit_of_work(world.owner) as session:
        user = make_user(session, role="admin")
    expired = token_for(world, user.id, ttl=dt.timedelta(seconds=1))
    revoked, live = token_for(world, user.id), token_for(world, user.id)
    with unit_of_work(world.owner) as session:
        session.execute(
            text("UPDATE sessions SET created_at = now() - interval '1 day', expires_at = "
                 "now() - interval '1 minute' WHERE user_id = :u AND expires_at < now() + "
                 "interval '1 minute'"),
            {"u": user.id},
        )  # fmt: skip
        from db.auth_sessions import token_hash

        session.execute(
            text("UPDATE sessions SET is_revoked = true, revoked_at = now() WHERE token_hash = :h"),
            {"h": token_hash(revoked)},
        )
    assert [files_seen(world, t) for t in (expired, revoked, live)] == [0, 0, 1]
    with unit_of_work(world.owner) as session:
        session.execute(text("UPDATE users SET is_active = false WHERE id = :u"), {"u": user.id})
    assert files_seen(world, live) == 0


def test_api_keys_act_as_their_user_until_revoked_for_good(world: World) -> None:
    with unit_of_work(world.owner) as session:
        row, key = api_keys.create_key(session, world.admin, name="robot", scope="read")
        key_id = row.id
    assert key.startswith("tk_") and files_seen(world, key) == 1
    with unit_of_work(world.app) as session:
        access.act_with(session, key)
        [who] = session.execute(text("SELECT kind, scope, username FROM app_whoami()")).all()
        assert tuple(who) == ("key", "read", "boss")
        stored = session.get(ApiKey, key_id)
        assert stored is not None and key not in {stored.key_hash, stored.key_prefix}
        # A read key writes nothing, not even its own revocation (migration 009).
        assert not api_keys.revoke_key(session, key_id)
    with unit_of_work(world.app) as session:
        access.act_with(session, token_for(world, world.admin))
        assert api_keys.revoke_key(session, key_id)
    assert files_seen(world, key) == 0
    with pytest.raises(DBAPIError, match="revocation is final"), unit_of_work(world.owner) as s:
        s.execute(text("UPDATE api_keys SET revoked_at = NULL WHERE id = :id"), {"id": key_id})


def test_login_needs_the_password_and_reveals_no_account(world: World) -> None:
    with unit_of_work(world.app) as session:
        salt = dict(session.execute(text("SELECT * FROM app_password_salt('boss')")).one()._mapping)
        decoy = session.execute(text("SELECT * FROM app_password_salt('nobody')")).one()
        again = session.execute(text("SELECT * FROM app_password_salt('nobody')")).one()
        assert salt["prefix"].startswith("$argon2id$") and salt["digest_chars"] == 43
        assert decoy.prefix.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert tuple(decoy) == tuple(again) and len(decoy.prefix) == len(salt["prefix"])
        guessed = session.execute(
            text("SELECT app_open_session('boss', :proof, repeat('x', 43), NULL, NULL, "
                 "interval '1 hour')"),
            {"proof": salt["prefix"] + "$" + "A" * 43},
        ).scalar_one()  # fmt: skip
        assert guessed is None
        assert access.open_session(
            session, "boss", PASSWORD, ip_address="192.0.2.7", user_agent="t", ttl_seconds=60
        ) is not None  # fmt: skip
    with unit_of_work(world.owner) as session:
        stored = session.execute(
            text("SELECT password_hash FROM users WHERE id = :u"), {"u": world.admin}
        ).scalar_one()
    assert stored.startswith(salt["prefix"] + "$")  # the prefix is the stored hash minus digest


def test_usage_is_counted_by_the_trigger(world: World) -> None:
    with unit_of_work(world.owner) as session:
        user = make_user(session, role="analyst")
        row = make_file(session, user, "a.mp3")
        session.flush()
        file_id = row.id
    with unit_of_work(world.owner) as session:
        session.execute(
            text("UPDATE audio_files SET duration_seconds = 12.5 WHERE id = :id"), {"id": file_id}
        )
        session.execute(
            text("UPDATE audio_files SET status = 'completed', stage = 'analyze' WHERE id = :id"),
            {"id": file_id},
        )
    with unit_of_work(world.owner) as session:
        [usage] = session.query(UsageDaily).filter(UsageDaily.user_id == user.id).all()
        assert (usage.files_submitted, usage.files_processed) == (1, 1)
        assert usage.audio_seconds_submitted == usage.audio_seconds_processed == Decimal("12.5")
        assert session.get(AudioFile, file_id) is not None


def test_005_up_down_up_restores_004_exactly(empty_database_url: str) -> None:
    upgrade(empty_database_url, target="004")
    after_004 = full_snapshot(empty_database_url)
    assert upgrade(empty_database_url, target="005") == ["005"]
    assert full_snapshot(empty_database_url) != after_004
    assert downgrade(empty_database_url, target="004") == ["005"]
    assert full_snapshot(empty_database_url) == after_004
    assert upgrade(empty_database_url, target="005") == ["005"]
