"""Login sessions: hashed tokens, expiry, revocation, idle timeout, clean-up, monitoring."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import uuid

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db import auth_sessions, monitoring, users
from db.engine import libpq_url, unit_of_work
from db.models import User
from tests.db.factories import PASSWORD, make_user

HOUR = dt.timedelta(hours=1)


def _now(session: Session) -> dt.datetime:
    value = session.scalar(text("SELECT now()"))
    assert isinstance(value, dt.datetime)
    return value


def _age(session: Session, session_id: uuid.UUID, **columns: str) -> None:
    """Move a session's timestamps into the past (``column='2 hours'``) instead of sleeping."""
    assignments = ", ".join(f"{column} = now() - CAST(:{column} AS interval)" for column in columns)
    session.execute(
        text(f"UPDATE sessions SET {assignments} WHERE id = :id"),  # noqa: S608 - own columns
        {"id": session_id, **columns},
    )
    session.expire_all()


def test_token_is_random_and_only_its_hash_is_stored(session: Session) -> None:
    user = make_user(session)
    row, token = auth_sessions.create_session(
        session, user.id, ip_address="2001:db8::1", user_agent="pytest/8", ttl=HOUR
    )
    _, other_token = auth_sessions.create_session(
        session, user.id, ip_address=None, user_agent=None, ttl=HOUR
    )
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert token != other_token
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.token_hash
    assert row.ip_address == "2001:db8::1"
    assert not row.is_revoked
    assert row.expires_at - row.created_at == HOUR


def test_raw_token_is_not_in_a_database_dump(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        user = make_user(session)
        _, token = auth_sessions.create_session(
            session, user.id, ip_address="198.51.100.4", user_agent="dump-test", ttl=HOUR
        )
    dump = subprocess.run(
        ["pg_dump", "--data-only", "-d", libpq_url(engine.url.render_as_string(False))],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "dump-test" in dump  # the session row is in the dump...
    assert hashlib.sha256(token.encode()).hexdigest() in dump  # ...with its hash...
    assert token not in dump  # ...and never the token itself


def test_verify_touches_the_session_and_the_user(session: Session) -> None:
    user = make_user(session)
    row, token = auth_sessions.create_session(
        session, user.id, ip_address=None, user_agent=None, ttl=HOUR
    )
    _age(session, row.id, created_at="10 minutes", last_accessed_at="5 minutes")

    assert auth_sessions.verify_session(session, token) is row
    session.refresh(row)
    session.refresh(user)
    assert row.last_accessed_at == _now(session)
    assert user.last_activity_at == _now(session)
    assert auth_sessions.verify_session(session, token + "x") is None
    assert auth_sessions.verify_session(session, "") is None
    assert auth_sessions.verify_session(session, "\x00' OR 1=1 --") is None


def test_expired_sessions_do_not_verify(session: Session) -> None:
    user = make_user(session)
    row, token = auth_sessions.create_session(
        session, user.id, ip_address=None, user_agent=None, ttl=HOUR
    )
    _age(session, row.id, created_at="3 hours", expires_at="1 second")
    assert auth_sessions.verify_session(session, token) is None


def test_idle_timeout(session: Session) -> None:
    user = make_user(session)
    row, token = auth_sessions.create_session(
        session, user.id, ip_address=None, user_agent=None, ttl=dt.timedelta(days=1)
    )
    _age(session, row.id, created_at="3 hours", last_accessed_at="2 hours")
    assert auth_sessions.verify_session(session, token, idle_timeout=HOUR) is None
    assert auth_sessions.verify_session(session, token, idle_timeout=3 * HOUR) is row
    # That use reset the idle clock.
    assert auth_sessions.verify_session(session, token, idle_timeout=HOUR) is row


def test_revocation(session: Session) -> None:
    user = make_user(session)
    row, token = auth_sessions.create_session(
        session, user.id, ip_address=None, user_agent=None, ttl=HOUR
    )
    assert auth_sessions.revoke_session(session, row.id) is True
    assert auth_sessions.revoke_session(session, row.id) is False
    assert auth_sessions.revoke_session(session, uuid.uuid4()) is False
    session.refresh(row)
    assert row.is_revoked
    assert row.revoked_at is not None
    assert auth_sessions.verify_session(session, token) is None


def test_revoke_all_sessions_of_one_user(session: Session) -> None:
    user, bystander = make_user(session), make_user(session)
    tokens = [
        auth_sessions.create_session(session, user.id, ip_address=None, user_agent=None, ttl=HOUR)
        for _ in range(3)
    ]
    auth_sessions.revoke_session(session, tokens[0][0].id)
    _, kept = auth_sessions.create_session(
        session, bystander.id, ip_address=None, user_agent=None, ttl=HOUR
    )
    assert auth_sessions.revoke_all_sessions(session, user.id) == 2
    assert auth_sessions.revoke_all_sessions(session, user.id) == 0
    assert all(auth_sessions.verify_session(session, token) is None for _, token in tokens)
    assert auth_sessions.verify_session(session, kept) is not None


def test_delete_expired_sessions(session: Session) -> None:
    user = make_user(session)

    def new() -> uuid.UUID:
        row, _ = auth_sessions.create_session(
            session, user.id, ip_address=None, user_agent=None, ttl=HOUR
        )
        return row.id

    long_expired, recently_expired, long_revoked, live = new(), new(), new(), new()
    _age(session, long_expired, created_at="10 days", expires_at="3 days")
    _age(session, recently_expired, created_at="10 days", expires_at="1 hour")
    auth_sessions.revoke_session(session, long_revoked)
    _age(session, long_revoked, revoked_at="2 days")

    assert auth_sessions.delete_expired_sessions(session, older_than=dt.timedelta(days=1)) == 2
    remaining = set(
        session.scalars(text("SELECT id FROM sessions WHERE user_id = :u"), {"u": user.id})
    )
    assert remaining == {recently_expired, live}


def test_active_sessions_monitoring_lists_only_live_sessions(session: Session) -> None:
    user = make_user(session, "watcher")
    live, _ = auth_sessions.create_session(
        session, user.id, ip_address="203.0.113.9", user_agent=None, ttl=HOUR
    )
    revoked, _ = auth_sessions.create_session(
        session, user.id, ip_address="203.0.113.10", user_agent=None, ttl=HOUR
    )
    expired, _ = auth_sessions.create_session(
        session, user.id, ip_address="203.0.113.11", user_agent=None, ttl=HOUR
    )
    auth_sessions.revoke_session(session, revoked.id)
    _age(session, expired.id, created_at="2 hours", expires_at="1 minute")

    rows = monitoring.active_sessions(session)
    assert [(row.username, row.ip_address) for row in rows] == [("watcher", "203.0.113.9")]
    assert rows[0].created_at == live.created_at


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": dt.timedelta(0)}, "ttl must be positive"),
        ({"ttl": -HOUR}, "ttl must be positive"),
        ({"ip_address": "not-an-ip"}, "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_bad_arguments_are_refused(
    session: Session, kwargs: dict[str, object], message: str
) -> None:
    user = make_user(session)
    arguments: dict[str, object] = {"ip_address": None, "user_agent": None, "ttl": HOUR, **kwargs}
    with pytest.raises(ValueError, match=message):
        auth_sessions.create_session(session, user.id, **arguments)  # type: ignore[arg-type]


def test_user_agent_is_cleaned(session: Session) -> None:
    user = make_user(session)
    row, _ = auth_sessions.create_session(
        session, user.id, ip_address=None, user_agent="evil\x00agent" + "x" * 5000, ttl=HOUR
    )
    assert row.user_agent is not None
    assert row.user_agent.startswith("evilagent")
    assert len(row.user_agent) == auth_sessions.MAX_USER_AGENT_CHARS


def test_returned_rows_stay_readable_after_the_unit_of_work(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        user = make_user(session, "reader")
        created, token = auth_sessions.create_session(
            session, user.id, ip_address=None, user_agent=None, ttl=HOUR
        )
    with unit_of_work(engine) as session:
        verified = auth_sessions.verify_session(session, token)
        logged_in = users.authenticate(session, "reader", PASSWORD)
    # Detached now: every attribute the functions set must already be loaded.
    assert created.expires_at - created.created_at == HOUR
    assert verified is not None
    assert verified.last_accessed_at >= created.created_at
    assert logged_in is not None
    assert logged_in.last_login_at is not None
    with unit_of_work(engine) as session:
        users.soft_delete_user(session, user.id)
        gone = session.get(User, user.id)
    assert gone is not None
    assert gone.deleted_at is not None


def test_tokens_carry_at_least_256_random_bits() -> None:
    assert auth_sessions.TOKEN_BYTES * 8 >= 256


def test_idle_timeout_applies_by_default(session: Session) -> None:
    user = make_user(session)
    row, token = auth_sessions.create_session(
        session, user.id, ip_address=None, user_agent=None, ttl=dt.timedelta(days=1)
    )
    idle = auth_sessions.DEFAULT_IDLE_TIMEOUT
    assert dt.timedelta(minutes=5) <= idle <= dt.timedelta(minutes=30)
    _age(session, row.id, created_at="3 hours", last_accessed_at=f"{idle.seconds - 60} seconds")
    assert auth_sessions.verify_session(session, token) is row
    _age(session, row.id, last_accessed_at=f"{idle.seconds + 60} seconds")
    assert auth_sessions.verify_session(session, token) is None
    assert auth_sessions.verify_session(session, token, idle_timeout=None) is row


def test_rotation_issues_a_new_token_and_revokes_the_old(session: Session) -> None:
    user = make_user(session)
    old, token = auth_sessions.create_session(
        session, user.id, ip_address="198.51.100.7", user_agent="phone", ttl=HOUR
    )
    rotated = auth_sessions.rotate_session(session, token, ttl=2 * HOUR)
    assert rotated is not None
    new, new_token = rotated
    assert new_token != token
    assert new.id != old.id
    assert (new.user_id, new.ip_address, new.user_agent) == (user.id, "198.51.100.7", "phone")
    assert new.expires_at - new.created_at == 2 * HOUR
    session.refresh(old)
    assert old.is_revoked
    assert auth_sessions.verify_session(session, token) is None
    assert auth_sessions.verify_session(session, new_token) is new
    # The old token cannot be rotated again (a replayed rotation gets nothing).
    assert auth_sessions.rotate_session(session, token, ttl=HOUR) is None
    assert auth_sessions.rotate_session(session, "unknown", ttl=HOUR) is None


def test_every_login_issues_a_fresh_token(session: Session) -> None:
    make_user(session, "returning")
    tokens = set()
    for _ in range(2):
        logged_in = users.login(
            session, "returning", PASSWORD, ip_address=None, user_agent=None, ttl=HOUR
        )
        assert logged_in is not None
        user, row, token = logged_in
        assert row.user_id == user.id
        assert auth_sessions.verify_session(session, token) is row
        tokens.add(token)
    assert len(tokens) == 2
    assert (
        users.login(session, "returning", "wrong", ip_address=None, user_agent=None, ttl=HOUR)
        is None
    )
