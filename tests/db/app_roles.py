"""Real LOGIN roles in ``teleai_app`` / ``teleai_worker`` for the row-level security tests.

Roles are cluster-wide, so each one gets a random name, is tagged with this process like the
test databases are (a run killed before its clean-up is cleaned up by the next one), and is
dropped when its test module ends.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlalchemy import Engine, create_engine, make_url

from db.access import create_login_role, drop_login_role
from tests.conftest import _OWNER_RE, _OWNER_TAG, PgAdmin, _process_alive

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
        match = _OWNER_RE.match(comment or "")
        if match is None or match["host"] != socket.gethostname():
            continue
        if not _process_alive(int(match["pid"])):
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
            sql.Identifier(role.name), sql.Literal(_OWNER_TAG)
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
