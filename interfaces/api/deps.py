"""Who is calling, and the database work done on their behalf.

A request presents a credential (``Authorization: Bearer <session token or API key>``; the raw
key without ``Bearer`` is accepted too, because the AssemblyAI SDK sends it that way). The API
never tells the database *which user* it acts for: it hands the database the credential
(:func:`db.access.acting_with`), and migration 005 derives the acting user from the credential's
hash, so row-level security applies as that user and a compromised API process still needs a
valid credential per user.

:func:`caller` opens the request's transaction, resolves the credential in it (kind, user, role,
scope; the database refuses idle, expired and revoked ones), enforces the per-key rate limit,
and hands the handler a :class:`Caller` whose ``session`` is that transaction: reads need no
second round of BEGIN and credential. It commits after the handler returned and *before* the
response is sent (``Depends(scope="function")``), so a failed commit is the client's error,
never a lie.
:func:`unit` is that same transaction while the request lasts (one connection per request);
handlers that must commit before doing something else call ``who.session.commit()``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session

from db import access
from db.engine import unit_of_work
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
    # No pre-ping (a round trip per request): a connection broken by a database restart fails
    # its request with 503 (errors.py) and is dropped from the pool; recycling bounds its age.
    options: dict[str, Any] = {
        "pool_size": api.pool_size,
        "max_overflow": api.pool_size,
        "pool_recycle": 1800,
    }
    if api.database_url is not None:
        return create_engine(api.database_url.get_secret_value(), **options)
    engine = create_engine(get_settings().sqlalchemy_url(), **options)

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
    # The request's transaction, acting with ``credential`` (open while the handler runs).
    session: Session = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

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


TOUCH_INTERVAL = dt.timedelta(minutes=1)


def _resolve_in(session: Session, credential: str) -> Caller | None:
    """The live principal of ``credential`` in the session's transaction (touching its last use
    at most once a minute), or None.

    Whether the credential is live (not revoked, not expired, a session not idle past the
    timeout it was opened with) and its scope are the database's answer (migration 009): the
    scope checks of :func:`needs` only give the clearer 403; the policies refuse a write by a
    read-only credential whatever this process does.
    """
    # app_authenticate = act_with(credential) + app_whoami(), one round trip (migration 005).
    row = (
        session.execute(text("SELECT * FROM app_authenticate(:c)"), {"c": credential})
        .mappings()
        .one_or_none()
    )
    if row is None or row["user_id"] is None:
        # Unknown, revoked, expired or (sessions) idle past their timeout: the database's
        # answer (migrations 005 and 009), not a check made here.
        return None
    last_used = row["last_used_at"]
    if last_used is None or last_used < row["now"] - TOUCH_INTERVAL:
        session.execute(text("SELECT app_touch_credential()"))
    return Caller(
        user_id=row["user_id"],
        username=row["username"],
        role=row["role"],
        kind=row["kind"],
        credential_id=row["credential_id"],
        scope=row["scope"],
        credential=credential,
        session=session,
    )


def resolve(credential: str) -> Caller | None:
    """The live principal of ``credential`` in a unit of work of its own (long streams)."""
    with unit_of_work(app_engine()) as session:
        found = _resolve_in(session, credential)
    if found is None:
        return None
    return Caller(**{**found.__dict__, "session": None})


def _streams_a_body(request: Request) -> bool:
    """A request whose body is an upload (anything but a small JSON or empty body)."""
    if request.method not in {"POST", "PUT", "PATCH"}:
        return False
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type not in {"", "application/json"}


def caller(request: Request) -> Iterator[Caller]:
    """Dependency: the authenticated caller in the request's transaction, else 401; 429 when its
    key is over its rate. Commits after the handler, before the response."""
    credential = credential_from(request.headers.get("authorization"))
    if credential is None:
        raise UNAUTHENTICATED
    session = Session(app_engine(), expire_on_commit=False)
    try:
        found = _resolve_in(session, credential)
        if found is None:
            raise UNAUTHENTICATED
        if found.kind == "key":
            from interfaces.api.limits import check_key_rate

            check_key_rate(found.credential_id)
        request.state.caller = found

        @event.listens_for(session, "after_begin")
        def _present_again(_session: Session, _transaction: Any, connection: Any) -> None:
            # A later transaction of this session (after a commit) acts with the same
            # credential; without it the session would silently act as nobody.
            access.act_with(connection, credential)

        if _streams_a_body(request):
            # An upload may take minutes to arrive: no connection (nor open transaction) is
            # held while it does; unit() then opens a transaction of its own.
            session.commit()
        yield found
        if session.in_transaction():
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


CallerDep = Annotated[Caller, Depends(caller, scope="function")]


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
    """A unit of work as the caller.

    Inside a request this is the request's own transaction (a savepoint of it: an error in the
    block undoes the block), committed before the response: a second connection per request
    would deadlock the pool under load (every connection held by a request waiting for
    another). Outside one (a stream polling after its request ended, ``resolve()``) it is a
    transaction of its own, committed when the block ends. A handler that must have its change
    committed before it goes on (sending a task message about the row) calls
    ``who.session.commit()``.
    """
    if who.session is not None and who.session.in_transaction():
        with who.session.begin_nested():
            yield who.session
        return
    with access.acting_with(app_engine(), who.credential) as session:
        yield session


def recording(who: Caller) -> Callable[[], AbstractContextManager[Session]]:
    """The transactions :func:`workers.submit.submit` records an upload in, as the caller.

    Since migration 009 the application role inserts files itself, under a policy that makes
    the acting user (derived from the credential) the owner: an upload needs its owner's
    credential. Each transaction is the request's own session, committed when the block ends
    (submit sends the ingest message only after the row is committed), so a request holds one
    connection; outside a request (no open session) a unit of work of its own.
    """

    @contextmanager
    def transaction() -> Iterator[Session]:
        if who.session is None:
            with access.acting_with(app_engine(), who.credential) as session:
                yield session
            return
        try:
            yield who.session
            who.session.commit()
        except BaseException:
            who.session.rollback()
            raise

    return transaction
