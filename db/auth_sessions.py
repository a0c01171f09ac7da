"""Login sessions: opaque bearer tokens of which only a SHA-256 hash is stored.

The raw token is 256 random bits, handed to the client once. Looking a token up by the hash of
what the client sent means a database dump or a timing side channel reveals nothing usable: the
comparison is over a hash the attacker cannot steer towards a valid token. All times come from
the database clock (``now()``), so application hosts with skewed clocks agree on expiry.

Expiry is enforced here, on the server: an absolute lifetime (``expires_at``, fixed at creation)
and an idle timeout (no use for :data:`DEFAULT_IDLE_TIMEOUT`). A login always issues a new
token (never reuses one from before authentication, which rules out session fixation);
:func:`rotate_session` swaps a live token for a new one, and a role change or deactivation
revokes all of a user's sessions (``db.users``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import secrets
import uuid

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from db import models

TOKEN_BYTES = 32
# OWASP Session Management: 15-30 minutes of inactivity for an ordinary application.
DEFAULT_IDLE_TIMEOUT = dt.timedelta(minutes=30)
# Longer user agents are cut: the column is for display, not for fingerprinting.
MAX_USER_AGENT_CHARS = 1024


def database_now(session: Session) -> dt.datetime:
    """The transaction's ``now()``: the clock every expiry check here compares against.

    Assigning this concrete value (rather than ``func.now()``) leaves ORM attributes loaded, so
    they can still be read after the caller's session has closed.
    """
    value = session.scalar(select(func.now()))
    if not isinstance(value, dt.datetime):
        raise TypeError(f"now() returned {value!r}")
    return value


def token_hash(token: str) -> str:
    """The stored form of a token: lower-case hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_session(
    session: Session,
    user_id: uuid.UUID,
    *,
    ip_address: str | None,
    user_agent: str | None,
    ttl: dt.timedelta,
) -> tuple[models.AuthSession, str]:
    """A new session valid for ``ttl`` and its raw token (returned only here, never stored)."""
    if ttl <= dt.timedelta(0):
        raise ValueError(f"session ttl must be positive, got {ttl}")
    if ip_address is not None:
        ip_address = str(ipaddress.ip_address(ip_address))
    if user_agent is not None:
        user_agent = user_agent.replace("\x00", "")[:MAX_USER_AGENT_CHARS]
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = models.AuthSession(
        user_id=user_id,
        token_hash=token_hash(token),
        ip_address=ip_address,
        user_agent=user_agent,
        expires_at=database_now(session) + ttl,
    )
    session.add(row)
    session.flush()
    return row, token


def verify_session(
    session: Session, token: str, *, idle_timeout: dt.timedelta | None = DEFAULT_IDLE_TIMEOUT
) -> models.AuthSession | None:
    """The live session for ``token``, else None; a hit counts as activity.

    Live means: not revoked, not expired, used within ``idle_timeout`` (``None`` turns the idle
    check off), and owned by an active, not soft-deleted user.
    """
    stmt = (
        select(models.AuthSession)
        .join(models.User, models.User.id == models.AuthSession.user_id)
        .where(
            models.AuthSession.token_hash == token_hash(token),
            models.AuthSession.is_revoked.is_(False),
            models.AuthSession.expires_at > func.now(),
            models.User.is_active,
            models.User.deleted_at.is_(None),
        )
    )
    if idle_timeout is not None:
        stmt = stmt.where(models.AuthSession.last_accessed_at > func.now() - idle_timeout)
    row = session.scalars(stmt).one_or_none()
    if row is None:
        return None
    now = database_now(session)
    row.last_accessed_at = now
    session.execute(
        update(models.User).where(models.User.id == row.user_id).values(last_activity_at=now)
    )
    session.flush()
    return row


def revoke_session(session: Session, session_id: uuid.UUID) -> bool:
    """Revoke one session; False when it does not exist or was already revoked."""
    stmt = (
        update(models.AuthSession)
        .where(models.AuthSession.id == session_id, models.AuthSession.is_revoked.is_(False))
        .values(is_revoked=True, revoked_at=database_now(session))
        .returning(models.AuthSession.id)
    )
    return session.execute(stmt).first() is not None


def rotate_session(
    session: Session,
    token: str,
    *,
    ttl: dt.timedelta,
    idle_timeout: dt.timedelta | None = DEFAULT_IDLE_TIMEOUT,
) -> tuple[models.AuthSession, str] | None:
    """Replace the live session of ``token`` by a new one (new token, same user and client).

    The old session is revoked in the same transaction. Of two concurrent rotations of one
    token only the first wins (the revoke is conditional on the row still being live); the
    other gets None, as does a dead or unknown token.

    The new session is created *before* the old one is revoked: for the application role the
    acting user is derived from the presented token (migration 005), so once it is revoked
    the insert would no longer be allowed. A lost race rolls the new row back (savepoint).
    """
    current = verify_session(session, token, idle_timeout=idle_timeout)
    if current is None:
        return None
    try:
        with session.begin_nested():
            created = create_session(
                session,
                current.user_id,
                ip_address=current.ip_address,
                user_agent=current.user_agent,
                ttl=ttl,
            )
            if not revoke_session(session, current.id):
                raise _LostRace
    except _LostRace:
        return None
    return created


class _LostRace(Exception):
    """Raised inside :func:`rotate_session` when another rotation revoked the token first."""


def revoke_all_sessions(session: Session, user_id: uuid.UUID) -> int:
    """Revoke every live session of a user (logout everywhere); returns how many."""
    stmt = (
        update(models.AuthSession)
        .where(models.AuthSession.user_id == user_id, models.AuthSession.is_revoked.is_(False))
        .values(is_revoked=True, revoked_at=database_now(session))
        .returning(models.AuthSession.id)
    )
    return len(session.execute(stmt).all())


def delete_expired_sessions(session: Session, *, older_than: dt.timedelta) -> int:
    """Delete sessions that expired, or were revoked, more than ``older_than`` ago.

    The grace period keeps recent dead sessions around for audit ("why was I logged out?").
    Runs the SECURITY DEFINER function ``purge_expired_sessions`` (migration 002), so a worker
    role that may not read sessions can still clean them up.
    """
    deleted = session.execute(
        text("SELECT purge_expired_sessions(:older_than)"), {"older_than": older_than}
    ).scalar_one()
    return int(deleted)
