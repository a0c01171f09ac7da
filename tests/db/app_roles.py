"""Real LOGIN roles in ``teleai_app`` / ``teleai_worker`` for the row-level security tests.

Roles are cluster-wide, so each one gets a random name, is tagged with this process like the
test databases are (a run killed before its clean-up is cleaned up by the next one), and is
dropped when its test module ends.

Since migration 005 the app role cannot name the user it acts as; it presents a credential.
:func:`act_as` and :func:`acting_as` give the tests the old convenience (act as this user id)
the honest way: the superuser mints a session for the user (without audit rows, so audit tests
count only what they do) and the app role presents its token.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.orm import Session

from db.access import act_with, create_login_role, drop_login_role
from db.auth_sessions import token_hash
from db.engine import libpq_url, unit_of_work
from tests.databases import OWNER_TAG, PgAdmin, orphaned, url_for

ROLE_PREFIX = "teleai_test_"


@dataclass(frozen=True)
class LoginRole:
    name: str
    password: str

    def url(self, database_url: str) -> str:
        """``database_url`` (a superuser's) with this role as the user, over TCP."""
        return (
            make_url(database_url)
            .set(username=self.name, password=self.password, host="127.0.0.1")
            .render_as_string(hide_password=False)
        )

    def engine(self, database_url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
        return create_engine(self.url(database_url), pool_size=pool_size, max_overflow=max_overflow)


def reap_orphan_roles(admin: psycopg.Connection) -> None:
    """Drop login roles left by dead test processes on this host."""
    rows = admin.execute(
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname LIKE %s",
        (ROLE_PREFIX.replace("_", r"\_") + "%",),
    ).fetchall()
    for name, comment in rows:
        if orphaned(comment):
            with contextlib.suppress(psycopg.Error):
                drop_login_role(admin, name)


@contextlib.contextmanager
def login_role(pg_admin: PgAdmin, kind: str, member_of: str) -> Iterator[LoginRole]:
    """A fresh LOGIN role in ``member_of``, dropped afterwards (close its engines first)."""
    reap_orphan_roles(pg_admin.conn)
    role = LoginRole(f"{ROLE_PREFIX}{kind}_{secrets.token_hex(4)}", secrets.token_urlsafe(18))
    create_login_role(pg_admin.conn, role.name, role.password, member_of=member_of)
    pg_admin.conn.execute(
        sql.SQL("COMMENT ON ROLE {} IS {}").format(
            sql.Identifier(role.name), sql.Literal(OWNER_TAG)
        )
    )
    try:
        yield role
    finally:
        pg_admin.conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            (role.name,),
        )
        drop_login_role(pg_admin.conn, role.name)


def mint_token(database: str, user_id: uuid.UUID) -> str:
    """A live session token for ``user_id`` in ``database``, made by the superuser.

    Triggers are off for the insert (``session_replication_role = replica``): no audit row,
    and no foreign key check, so an id that names nobody gets a token that acts as nobody.
    """
    token = secrets.token_urlsafe(32)
    with psycopg.connect(libpq_url(url_for(database))) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "INSERT INTO sessions (user_id, token_hash, expires_at) "
            "VALUES (%s, %s, now() + interval '1 day')",
            (user_id, token_hash(token)),
        )
    return token


def _database_of(bind: Session | Connection | Engine) -> str:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    url = engine.engine.url if isinstance(engine, Connection) else engine.url
    assert url.database is not None
    return url.database


def act_as(bind: Session | Connection, user_id: uuid.UUID) -> None:
    """Act as ``user_id`` until the transaction ends, by presenting a minted credential."""
    act_with(bind, mint_token(_database_of(bind), user_id))


@contextlib.contextmanager
def acting_as(engine: Engine, user_id: uuid.UUID) -> Iterator[Session]:
    """One unit of work as ``user_id`` (see :func:`act_as`)."""
    token = mint_token(_database_of(engine), user_id)
    with unit_of_work(engine) as session:
        act_with(session, token)
        yield session
