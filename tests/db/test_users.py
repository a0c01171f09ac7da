"""Accounts: argon2id hashing, login, legacy bcrypt hashes, lookups, the operator account."""

from __future__ import annotations

import datetime as dt
import uuid

import bcrypt
import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import users
from db.auth_sessions import create_session, verify_session
from tests.databases import statements_sent
from tests.db.factories import PASSWORD, make_user


def _argon2_params(stored: str) -> dict[str, int]:
    # $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
    variant, version, params, _salt, _digest = stored.split("$")[1:]
    assert variant == "argon2id"
    assert version == "v=19"
    return {key: int(value) for key, value in (item.split("=") for item in params.split(","))}


def test_hash_is_argon2id_with_at_least_owasp_parameters() -> None:
    stored = users.hash_password("s3cret!")
    params = _argon2_params(stored)
    assert params["m"] >= 19456
    assert params["t"] >= 2
    assert params["p"] >= 1
    assert users.hash_password("s3cret!") != stored  # salted
    assert users.verify_password(stored, "s3cret!")
    assert not users.verify_password(stored, "s3cret")
    with pytest.raises(ValueError, match="empty"):
        users.hash_password("")


def test_authenticate_by_username_or_email(session: Session) -> None:
    user = make_user(session, "alice", full_name="Alice Example")
    assert user.email == "alice@example.org"
    assert user.role == "viewer"
    assert user.last_login_at is None

    assert users.authenticate(session, "alice", PASSWORD) is user
    assert users.authenticate(session, "Alice@Example.ORG", PASSWORD) is user
    session.refresh(user)
    assert user.last_login_at is not None


@pytest.mark.parametrize(
    "login", ["alice", "alice@example.org", "bob", "", "al\x00ice", "' OR 1=1 --"]
)
def test_wrong_password_or_unknown_login_fails(session: Session, login: str) -> None:
    make_user(session, "alice")
    assert users.authenticate(session, login, "wrong password") is None
    if login.startswith("alice"):
        assert users.authenticate(session, login, PASSWORD) is not None


def test_stale_argon2_parameters_are_upgraded_on_login(session: Session) -> None:
    user = make_user(session)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    user.password_hash = weak.hash(PASSWORD)
    session.flush()
    assert users.needs_rehash(user.password_hash)

    assert users.authenticate(session, user.username, PASSWORD) is user
    session.refresh(user)
    assert _argon2_params(user.password_hash) == {"m": 19456, "t": 2, "p": 1}
    assert not users.needs_rehash(user.password_hash)
    assert users.authenticate(session, user.username, PASSWORD) is user


@pytest.mark.parametrize("prefix", [b"2b", b"2a"])
def test_bcrypt_hash_from_elsewhere_verifies_and_becomes_argon2id(
    session: Session, prefix: bytes
) -> None:
    user = make_user(session)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4, prefix=prefix)).decode()
    assert legacy.startswith(f"${prefix.decode()}$")
    user.password_hash = legacy
    session.flush()

    assert users.authenticate(session, user.username, "not it") is None
    session.refresh(user)
    assert user.password_hash == legacy  # a failed login changes nothing

    assert users.authenticate(session, user.username, PASSWORD) is user
    session.refresh(user)
    assert user.password_hash.startswith("$argon2id$")
    assert users.authenticate(session, user.username, PASSWORD) is user


def test_bcrypt_long_password_verifies_as_bcrypt_did() -> None:
    # bcrypt hashed only the first 72 bytes; bcrypt>=5 refuses longer input instead.
    long_password = "x" * 100
    legacy = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    assert users.verify_password(legacy, long_password)
    assert not users.verify_password(legacy, "y" * 100)


@pytest.mark.parametrize("junk", ["", "plain-text-password", "$argon2id$broken", "$2b$04$short"])
def test_unusable_stored_hashes_never_verify(junk: str) -> None:
    assert not users.verify_password(junk, junk)
    assert users.needs_rehash(junk)


def test_soft_deleted_and_deactivated_users_vanish_from_lookups(session: Session) -> None:
    gone = make_user(session, "gone")
    idle = make_user(session, "idle")
    login, token = create_session(
        session, idle.id, ip_address=None, user_agent=None, ttl=dt.timedelta(hours=1)
    )
    assert users.get_active_user(session, "gone@example.org") is gone

    users.soft_delete_user(session, gone.id)
    users.deactivate_user(session, idle.id)
    for who in ("gone", "idle"):
        assert users.get_active_user(session, f"{who}@example.org") is None
        assert users.get_active_user(session, who) is None
        assert users.authenticate(session, who, PASSWORD) is None
        assert users.authenticate(session, f"{who}@example.org", PASSWORD) is None
    assert verify_session(session, token) is None  # deactivation logged them out
    session.refresh(login)
    assert login.is_revoked

    listed = {user.username for user in users.list_users(session)}
    assert "gone" not in listed
    assert "idle" in listed  # deactivated accounts stay visible to admins
    assert "gone" in {u.username for u in users.list_users(session, include_deleted=True)}

    users.reactivate_user(session, idle.id)
    assert users.authenticate(session, "idle", PASSWORD) is idle


def test_active_email_lookup_can_use_the_partial_index(session: Session) -> None:
    make_user(session, "indexed")
    connection = session.connection()
    with statements_sent(connection) as captured:
        assert users.get_active_user(session, "indexed@example.org") is not None
    statement, params = captured[-1]
    assert "is_active" in statement
    assert "deleted_at IS NULL" in statement
    # Without the full unique index the planner must prove the partial index's predicate from
    # the query; this rolls back with the test.
    connection.exec_driver_sql("ALTER TABLE users DROP CONSTRAINT uq_users_email")
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, params))
    assert "idx_users_email_active" in plan


def test_emails_are_unique_whatever_their_case(session: Session) -> None:
    make_user(session, "casey")
    with pytest.raises(IntegrityError) as caught, session.begin_nested():
        users.create_user(session, email="CASEY@example.org", username="casey2", password=PASSWORD)
    assert caught.value.orig is not None
    assert caught.value.orig.diag.constraint_name == "uq_users_email"  # type: ignore[attr-defined]


def test_operator_account(session: Session) -> None:
    operator = users.get_or_create_operator(session, None)
    assert (operator.username, operator.role, operator.email) == (
        "operator",
        "admin",
        "operator@localhost",
    )
    assert operator.is_operator
    assert users.authenticate(session, "operator", operator.password_hash) is None  # no login
    assert users.get_or_create_operator(session, None).id == operator.id
    count = session.scalar(text("SELECT count(*) FROM users WHERE username = 'operator'"))
    assert count == 1

    named = make_user(session, "named")
    assert users.get_or_create_operator(session, "named") is named
    assert users.get_or_create_operator(session, "named@example.org") is named
    with pytest.raises(LookupError, match="no active user 'nobody'"):
        users.get_or_create_operator(session, "nobody")

    users.deactivate_user(session, operator.id)
    with pytest.raises(LookupError, match="operator"):
        users.get_or_create_operator(session, None)


def test_set_role_and_unknown_ids(session: Session) -> None:
    user = make_user(session)
    users.set_role(session, user.id, "analyst")
    session.refresh(user)
    assert user.role == "analyst"
    with pytest.raises(ValueError, match="superuser"):
        users.set_role(session, user.id, "superuser")
    with pytest.raises(LookupError, match="no user"):
        users.set_role(session, uuid.UUID(int=0), "admin")
    with pytest.raises(LookupError, match="no user"):
        users.soft_delete_user(session, uuid.uuid4())
    with pytest.raises(ValueError, match="root"):
        users.create_user(
            session, email="r@example.org", username="rooty", password="x", role="root"
        )


def test_a_role_change_ends_the_users_sessions(session: Session) -> None:
    user, bystander = make_user(session, role="viewer"), make_user(session)
    _, token = create_session(
        session, user.id, ip_address=None, user_agent=None, ttl=dt.timedelta(hours=1)
    )
    _, kept = create_session(
        session, bystander.id, ip_address=None, user_agent=None, ttl=dt.timedelta(hours=1)
    )
    users.set_role(session, user.id, "viewer")  # no change: the session lives on
    assert verify_session(session, token) is not None

    users.set_role(session, user.id, "admin")
    assert verify_session(session, token) is None
    assert verify_session(session, kept) is not None
