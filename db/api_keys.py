"""API keys for programs: random bearer secrets of which only a SHA-256 hash is stored.

A key is ``tk_`` followed by 256 random bits (URL-safe base64), shown to its owner once, at
creation. The database looks a presented key up by its hash (migration 005,
``app_credential()``), so the same rule as for session tokens holds: a dump of the table reveals
nothing usable. ``key_prefix`` (the first 11 characters) lets lists tell keys apart. A key has one
scope, and each scope includes the ones below it (read < write < admin); what a key may reach is
still bounded by its user's role, since the policies of 002 apply to it as to that user.
Revocation is final (a trigger of 005 refuses to undo it).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.auth_sessions import database_now, token_hash
from db.models import ApiKey, KeyScope

KEY_PREFIX = "tk_"
SHOWN_PREFIX_CHARS = 11
MAX_NAME_CHARS = 100


def new_key() -> str:
    """A fresh random key (not stored anywhere)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session,
    user_id: uuid.UUID,
    *,
    name: str,
    scope: str = KeyScope.READ.value,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key row for ``user_id`` and the key itself (returned only here)."""
    value = KeyScope(scope).value
    label = name.replace("\x00", "").strip()[:MAX_NAME_CHARS]
    if not label:
        raise ValueError("an API key needs a name")
    key = new_key()
    row = ApiKey(
        user_id=user_id,
        name=label,
        key_prefix=key[:SHOWN_PREFIX_CHARS],
        key_hash=token_hash(key),
        scope=value,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, key


def list_keys(
    session: Session, user_id: uuid.UUID | None = None, *, include_revoked: bool = False
) -> list[ApiKey]:
    """Keys the session may see (under RLS: its own, or all for an admin), newest first."""
    stmt = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(stmt))


def get_key(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def revoke_key(session: Session, key_id: uuid.UUID) -> bool:
    """Revoke one key; False when it is not visible to the session or was already revoked."""
    stmt = (
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=database_now(session))
        .returning(ApiKey.id)
    )
    return session.execute(stmt).first() is not None
