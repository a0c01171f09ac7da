"""User accounts: password hashing, login, the local operator account and admin actions.

Passwords are hashed with argon2id at (at least) the OWASP minimum parameters. Hashes written by
another system with bcrypt still verify and are replaced by argon2id on the next good login, so
old accounts migrate without a password reset. Emails are stored and looked up lower-cased so the
unique constraint and the login lookup agree on what "the same address" is.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from functools import lru_cache

import bcrypt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, defer
from sqlalchemy.sql.base import ExecutableOption

from db import models
from db.auth_sessions import create_session, database_now, revoke_all_sessions
from db.models import Role, User

# OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1 (the minimum it recommends).
ARGON2_MEMORY_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

OPERATOR_USERNAME = "operator"
OPERATOR_EMAIL = "operator@localhost"

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# bcrypt only ever hashed the first 72 bytes; legacy hashes were made from that prefix.
_BCRYPT_MAX_BYTES = 72

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string) of ``password`` with a fresh random salt."""
    if not password:
        raise ValueError("password must not be empty")
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches an argon2 or bcrypt ``stored_hash``; never raises on junk."""
    if stored_hash.startswith("$argon2"):
        try:
            return _hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False
    if stored_hash.startswith(_BCRYPT_PREFIXES):
        candidate = password.encode("utf-8")[:_BCRYPT_MAX_BYTES]
        try:
            return bcrypt.checkpw(candidate, stored_hash.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return False
    return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash is not argon2id with this module's parameters."""
    if not stored_hash.startswith("$argon2id$"):
        return True
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    # Verified against when the login names nobody, so "no such user" and "wrong password"
    # take the same time and the response time does not reveal which accounts exist.
    return hash_password(secrets.token_urlsafe(32))


def _normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(
    session: Session,
    *,
    email: str,
    username: str,
    password: str,
    role: str = "viewer",
    full_name: str | None = None,
) -> User:
    """Insert an active user with a hashed password; constraint violations surface at flush."""
    user = User(
        email=_normalise_email(email),
        username=username,
        password_hash=hash_password(password),
        role=Role(role).value,
        full_name=full_name,
    )
    session.add(user)
    session.flush()
    return user


def get_active_user(
    session: Session, login: str, *, options: Sequence[ExecutableOption] = ()
) -> User | None:
    """The active, not soft-deleted user whose email (if ``login`` has an ``@``) or username it is.

    Usernames cannot contain ``@`` (ck_users_username_format), so the ``@`` decides the column
    and the email path is exactly the predicate of the partial index idx_users_email_active.
    """
    if not login or "\x00" in login:
        return None
    by_email = "@" in login
    matches = User.email == _normalise_email(login) if by_email else User.username == login
    stmt = select(User).where(matches, User.is_active, User.deleted_at.is_(None)).options(*options)
    return session.scalars(stmt).one_or_none()


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The user when ``login``/``password`` are right, else None; upgrades stale hashes.

    Only active, not soft-deleted accounts can log in. A good login records last_login_at and,
    when the stored hash is bcrypt or argon2 with weaker parameters, stores a fresh argon2id hash.
    """
    user = get_active_user(session, login)
    if user is None:
        verify_password(_decoy_hash(), password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = database_now(session)
    session.flush()
    return user


def login(
    session: Session,
    login_name: str,
    password: str,
    *,
    ip_address: str | None,
    user_agent: str | None,
    ttl: dt.timedelta,
) -> tuple[User, models.AuthSession, str] | None:
    """Authenticate and open a new session: (user, session row, raw token), or None.

    Every login issues a fresh token; a token the client held before is never promoted to an
    authenticated one (no session fixation).
    """
    user = authenticate(session, login_name, password)
    if user is None:
        return None
    row, token = create_session(
        session, user.id, ip_address=ip_address, user_agent=user_agent, ttl=ttl
    )
    return user, row, token


def get_or_create_operator(session: Session, login: str | None) -> User:
    """The account that local commands act as.

    ``None`` means the built-in operator admin: the one row with ``is_operator`` (migration
    004), which only the schema owner can set, found or created by the database function
    ``operator_user_id()``. It is never looked up by name: a user who renames themselves to
    ``operator`` (a reserved name since 004 anyway) does not become it. It has no usable password
    (it acts locally; it never logs in). A given username or email must name an active user,
    else :class:`LookupError`.
    """
    # The password hash is not read: intake (the drop folder) may not read it (migration 009),
    # and nobody acting locally needs it (it loads on first access for those who may).
    secretless = [defer(User.password_hash)]
    if login is not None:
        user = get_active_user(session, login, options=secretless)
        if user is None:
            raise LookupError(f"no active user '{login}'")
        return user
    operator_id = session.execute(text("SELECT operator_user_id()")).scalar_one()
    user = session.get(User, operator_id, options=secretless)
    if user is None:  # the function always returns a row's id; a broken schema would not
        raise LookupError("the operator account could not be found or created")
    if not user.is_active or user.deleted_at is not None:
        raise LookupError(
            f"no active operator account ('{user.username}' was deactivated or deleted)"
        )
    return user


def _get_user(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"no user with id {user_id}")
    return user


def soft_delete_user(session: Session, user_id: uuid.UUID) -> None:
    """Mark the user deleted (rows are kept for their files) and end all their sessions."""
    user = _get_user(session, user_id)
    if user.deleted_at is None:
        user.deleted_at = database_now(session)
    revoke_all_sessions(session, user.id)
    session.flush()


def deactivate_user(session: Session, user_id: uuid.UUID) -> None:
    """Block the user from logging in (reversible with :func:`reactivate_user`)."""
    user = _get_user(session, user_id)
    user.is_active = False
    revoke_all_sessions(session, user.id)
    session.flush()


def reactivate_user(session: Session, user_id: uuid.UUID) -> None:
    """Undo :func:`deactivate_user` (a soft-deleted user stays deleted)."""
    _get_user(session, user_id).is_active = True
    session.flush()


def set_role(session: Session, user_id: uuid.UUID, role: str) -> None:
    """Change a user's role and end their sessions; an unknown role raises before any SQL.

    A token issued under the old role must not keep working under the new one (nor a demoted
    admin keep an admin session), so a real change logs the user out everywhere.
    """
    value = Role(role).value
    user = _get_user(session, user_id)
    if user.role != value:
        user.role = value
        revoke_all_sessions(session, user.id)
    session.flush()


def list_users(session: Session, *, include_deleted: bool = False) -> list[User]:
    """Users by username; soft-deleted ones only when asked."""
    stmt = select(User).order_by(User.username)
    if not include_deleted:
        stmt = stmt.where(User.deleted_at.is_(None))
    return list(session.scalars(stmt))
