"""Acting as an application user under row-level security, and the login roles that do it.

Migration 002 isolates tenants with policies that read the acting user from the
transaction-local setting ``app.current_user_id``. The application connects as a login role in
``teleai_app`` and names the user at the start of every transaction (:func:`act_as`, or
:func:`acting_as` for a whole unit of work). The setting is transaction-local on purpose: a
pooled connection handed to the next request carries no identity, so it sees nothing until
that request names its own user.

Before anyone is authenticated there is no user to act as; :func:`login_user_id` and
:func:`token_user_id` are the two narrow look-ups (SECURITY DEFINER functions in 002) that say
which user a login name or a session token belongs to, so the rest of a login or request can
run under the policies as that user.

Superusers and BYPASSRLS roles (the schema owner, the operator CLI, tests) ignore all of this.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from db.auth_sessions import token_hash
from db.engine import unit_of_work

APP_ROLE: Final = "teleai_app"
WORKER_ROLE: Final = "teleai_worker"
GROUP_ROLES: Final = frozenset({APP_ROLE, WORKER_ROLE})
USER_SETTING: Final = "app.current_user_id"


def act_as(session: Session | Connection, user_id: uuid.UUID) -> None:
    """Make ``user_id`` the acting user until the current transaction ends."""
    session.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": USER_SETTING, "value": str(user_id)},
    )


def current_user_id(session: Session | Connection) -> uuid.UUID | None:
    """The acting user of the current transaction, if one was named."""
    value = session.execute(text("SELECT current_app_user_id()")).scalar_one()
    return value if isinstance(value, uuid.UUID) else None


@contextmanager
def acting_as(engine: Engine, user_id: uuid.UUID) -> Iterator[Session]:
    """One unit of work (commit on success, rollback on error) as ``user_id``."""
    with unit_of_work(engine) as session:
        act_as(session, user_id)
        yield session


def login_user_id(session: Session | Connection, login: str) -> uuid.UUID | None:
    """The active user a login name (username, or email when it has an ``@``) belongs to."""
    if not login or "\x00" in login:
        return None
    value = session.execute(text("SELECT app_login_user_id(:login)"), {"login": login})
    found = value.scalar_one()
    return found if isinstance(found, uuid.UUID) else None


def token_user_id(session: Session | Connection, token: str) -> uuid.UUID | None:
    """The user of a live (unrevoked, unexpired) session token; only its hash is sent."""
    value = session.execute(
        text("SELECT app_session_user_id(:hash)"), {"hash": token_hash(token)}
    ).scalar_one()
    return value if isinstance(value, uuid.UUID) else None


def create_login_role(
    admin_conn: psycopg.Connection, name: str, password: str, member_of: str = APP_ROLE
) -> None:
    """Create a LOGIN role that inherits ``member_of`` (``teleai_app`` or ``teleai_worker``).

    ``admin_conn`` needs CREATEROLE. The password is SCRAM-hashed by libpq on this side, so
    the plain text never reaches the server (nor its statement log).
    """
    if member_of not in GROUP_ROLES:
        raise ValueError(f"member_of must be one of {sorted(GROUP_ROLES)}, not {member_of!r}")
    if not password:
        raise ValueError("password must not be empty")
    verifier = admin_conn.pgconn.encrypt_password(
        password.encode(), name.encode(), b"scram-sha-256"
    ).decode()
    admin_conn.execute(
        sql.SQL(
            "CREATE ROLE {name} LOGIN PASSWORD {verifier} NOSUPERUSER NOBYPASSRLS NOCREATEDB "
            "NOCREATEROLE NOREPLICATION INHERIT IN ROLE {group}"
        ).format(
            name=sql.Identifier(name),
            verifier=sql.Literal(verifier),
            group=sql.Identifier(member_of),
        )
    )


def drop_login_role(admin_conn: psycopg.Connection, name: str) -> None:
    """Drop a login role made by :func:`create_login_role` (it must have no sessions left)."""
    admin_conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
