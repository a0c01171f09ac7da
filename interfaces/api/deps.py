"""Who is calling, and the database work done on their behalf.

A request presents a credential (``Authorization: Bearer <session token or API key>``; the raw
key without ``Bearer`` is accepted too, because the AssemblyAI SDK sends it that way). The API
never tells the database *which user* it acts for: it hands the database the credential
(:func:`db.access.acting_with`), and migration 005 derives the acting user from the credential's
hash, so row-level security applies as that user and a compromised API process still needs a
valid credential per user. :func:`caller` resolves the credential once per request (kind, user,
role, scope), enforces the idle timeout and the per-key rate limit, and :func:`unit` opens the
unit of work a handler reads and writes in.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session

from db import access
from interfaces.api.errors import ApiError
from interfaces.api.settings import get_api_settings
from pipeline.settings import get_settings

Scope = Literal["read", "write", "admin"]
# A key's scope includes the ones below it: an admin key can also write and read.
SCOPE_RANK: Final = {"read": 0, "write": 1, "admin": 2}
BEARER: Final = "bearer "


@lru_cache(maxsize=1)
def app_engine() -> Engine:
    """The process's engine as the application role (see :mod:`interfaces.api.settings`)."""
    api = get_api_settings()
    if api.database_url is not None:
        return create_engine(
            api.database_url.get_secret_value(),
            pool_pre_ping=True,
            pool_size=api.pool_size,
            max_overflow=api.pool_size,
        )
    engine = create_engine(
        get_settings().sqlalchemy_url(),
        pool_pre_ping=True,
        pool_size=api.pool_size,
        max_overflow=api.pool_size,
    )

    @event.listens_for(engine, "connect")
    def _as_app_role(dbapi_connection: Any, _record: Any) -> None:
        # Session-level and set before the pool hands the connection out: every transaction
        # of this engine runs as teleai_app, under its policies.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        dbapi_connection.execute(f"SET ROLE {access.APP_ROLE}")
        dbapi_connection.autocommit = autocommit

    return engine


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of one request."""

    user_id: uuid.UUID
    username: str
    role: str
    kind: Literal["session", "key"]
    credential_id: uuid.UUID
    scope: Scope
    credential: str = field(repr=False)

    def may(self, scope: Scope) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[scope]

    @property
    def is_staff(self) -> bool:
        """Roles that see every user's files under the policies of migration 002."""
        return self.role in {"admin", "manager", "analyst"}


def credential_from(header: str | None) -> str | None:
    """The credential in an ``Authorization`` header: ``Bearer <x>`` or a bare ``<x>``."""
    if header is None:
        return None
    value = header.strip()
    if value.lower().startswith(BEARER):
        value = value[len(BEARER) :].strip()
    if not value or len(value) > 512 or not value.isascii() or any(c.isspace() for c in value):
        return None
    return value


def client_address(request: Request) -> str | None:
    """The client's IP address (the first X-Forwarded-For hop only when configured to trust it)."""
    if get_api_settings().trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.client.host if request.client else None


UNAUTHENTICATED = ApiError(
    401,
    "missing or invalid credential: send 'Authorization: Bearer <session token or API key>'",
    headers={"WWW-Authenticate": "Bearer"},
)


def resolve(credential: str) -> Caller | None:
    """The live principal of ``credential`` (touching its last-use time), or None."""
    idle = dt.timedelta(minutes=get_api_settings().session_idle_minutes)
    with access.acting_with(app_engine(), credential) as session:
        row = session.execute(text("SELECT * FROM app_whoami()")).mappings().one_or_none()
        if row is None or row["user_id"] is None:
            return None
        if row["kind"] == "session" and row["last_used_at"] < row["now"] - idle:
            return None
        session.execute(text("SELECT app_touch_credential()"))
    return Caller(
        user_id=row["user_id"],
        username=row["username"],
        role=row["role"],
        kind=row["kind"],
        credential_id=row["credential_id"],
        scope=row["scope"],
        credential=credential,
    )


def caller(request: Request) -> Caller:
    """Dependency: the authenticated caller, else 401; 429 when its key is over its rate."""
    credential = credential_from(request.headers.get("authorization"))
    if credential is None:
        raise UNAUTHENTICATED
    found = resolve(credential)
    if found is None:
        raise UNAUTHENTICATED
    if found.kind == "key":
        from interfaces.api.limits import check_key_rate

        check_key_rate(found.credential_id)
    request.state.caller = found
    return found


CallerDep = Annotated[Caller, Depends(caller)]


def needs(scope: Scope) -> Any:
    """Dependency factory: the caller, refused with 403 unless its scope covers ``scope``."""

    def check(who: CallerDep) -> Caller:
        if not who.may(scope):
            raise ApiError(403, f"this credential's scope is '{who.scope}'; '{scope}' is needed")
        return who

    return Depends(check)


Reader = Annotated[Caller, needs("read")]
Writer = Annotated[Caller, needs("write")]
Admin = Annotated[Caller, needs("admin")]


@contextmanager
def unit(who: Caller) -> Iterator[Session]:
    """One unit of work as the caller: the database derives the user from the credential."""
    with access.acting_with(app_engine(), who.credential) as session:
        yield session
