"""Fresh PostgreSQL databases for the tests and the benchmarks: the one implementation.

:class:`PgAdmin` creates and drops databases over one autocommit connection of an admin role
(a superuser, or a role with CREATEDB). Every database it makes carries a comment naming the
host and process that made it, so a run killed before its clean-up is cleaned up by the next
one (:meth:`PgAdmin.reap_orphans`). :func:`fresh_database` is "a new database migrated with the
project's runner, dropped when the block ends" for the benchmarks and any test that wants one
outside the fixtures; ``tests/conftest.py`` builds its fixtures (a migrated template per run,
clones of it per test) on the same class. :func:`rolled_back` and :func:`rolled_back_session`
are the "nothing a test writes stays" transactions the fixtures hand out; :func:`statements_sent`
shows the SQL a call really sends (index tests EXPLAIN it, the database benchmark times it).
Nothing here imports pytest: the benchmarks run without it, and :class:`PostgresUnavailable`
says what to start when the server is down.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine, event, make_url
from sqlalchemy.orm import Session

from db import engine as db_engine
from db.engine import libpq_url
from db.migrate import upgrade
from interfaces.embedded import process_alive

ADMIN_URL = os.environ.get(
    "TELEAI_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DB_PREFIX = "teleai_test_"
RUN_ID = secrets.token_hex(4)
OWNER_TAG = f"teleai-pytest host={socket.gethostname()} pid={os.getpid()}"
OWNER_RE = re.compile(r"^teleai-pytest host=(?P<host>\S+) pid=(?P<pid>\d+)$")


class PostgresUnavailable(RuntimeError):
    """The admin connection could not be made; the message says where and what to do."""


def url_for(database: str, admin_url: str = ADMIN_URL) -> str:
    """``admin_url`` pointed at another database (SQLAlchemy form)."""
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


def orphaned(comment: str | None) -> bool:
    """Whether an object's :data:`OWNER_TAG` comment names a process of this host that is gone
    (objects of other hosts, or without the tag, are never touched)."""
    match = OWNER_RE.match(comment or "")
    if match is None or match["host"] != socket.gethostname():
        return False
    return not process_alive(int(match["pid"]))


def _drop(conn: psycopg.Connection, name: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if exists.fetchone() is not None:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(ident))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


class PgAdmin:
    """Creates and drops one run's databases (named ``<prefix><kind>_<run>_<n>``)."""

    def __init__(self, admin_url: str = ADMIN_URL, prefix: str = DB_PREFIX) -> None:
        self.admin_url = admin_url
        self.prefix = prefix
        self._conn: psycopg.Connection | None = None
        self.created: set[str] = set()
        self._names = itertools.count(1)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._dropper: threading.Thread | None = None

    def connect(self) -> None:
        try:
            self._conn = psycopg.connect(
                libpq_url(self.admin_url), autocommit=True, connect_timeout=5
            )
        except psycopg.OperationalError as err:
            shown = make_url(self.admin_url).render_as_string(hide_password=True)
            raise PostgresUnavailable(
                f"PostgreSQL is not answering at {shown} (TELEAI_TEST_ADMIN_URL, or "
                f"TELEAI_BENCH_ADMIN_URL for the benchmarks): {str(err).strip()}\n"
                "The database tests need a real PostgreSQL 15; start it, or point "
                "TELEAI_TEST_ADMIN_URL at one (a superuser, or a role with CREATEDB)."
            ) from err

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self.connect()
        assert self._conn is not None
        return self._conn

    def url_for(self, name: str) -> str:
        return url_for(name, self.admin_url)

    def new_name(self, kind: str) -> str:
        return f"{self.prefix}{kind}_{RUN_ID}_{next(self._names)}"

    def create(self, name: str, template: str = "template0") -> str:
        """Create ``name`` as a copy of ``template``; returns its SQLAlchemy URL."""
        self.conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
        self.created.add(name)
        self.conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(OWNER_TAG)
            )
        )
        return self.url_for(name)

    def seal_template(self, name: str) -> None:
        """No connections to a template: a stray one would make every clone fail."""
        self.conn.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(name)
            )
        )

    def drop(self, name: str) -> None:
        """Drop ``name`` now, disconnecting whoever is still on it."""
        _drop(self.conn, name)
        self.created.discard(name)

    def drop_later(self, name: str) -> None:
        """Drop ``name`` on a background connection, so the next test need not wait for it."""
        if self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_queued, name="drop-db", daemon=True)
            self._dropper.start()
        self._queue.put(name)

    def _drop_queued(self) -> None:
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            while True:
                name = self._queue.get()
                try:
                    if name is None:
                        return
                    with contextlib.suppress(psycopg.Error):  # drop_all retries it
                        _drop(conn, name)
                        self.created.discard(name)
                finally:
                    self._queue.task_done()

    def drop_all(self) -> None:
        """Wait for queued drops, then drop whatever this run still owns."""
        if self._dropper is not None:
            self._queue.put(None)
            self._dropper.join(timeout=120)
            self._dropper = None
        for name in sorted(self.created):
            with contextlib.suppress(psycopg.Error):
                self.drop(name)

    def reap_orphans(self) -> None:
        """Drop databases of this prefix left by runs on this host whose process is gone."""
        rows = self.conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname LIKE %s",
            (self.prefix.replace("_", r"\_") + "%",),
        ).fetchall()
        for name, comment in rows:
            if orphaned(comment):
                with contextlib.suppress(psycopg.Error):
                    self.drop(name)

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()


@contextlib.contextmanager
def fresh_database(admin: PgAdmin, kind: str) -> Iterator[str]:
    """A new database migrated with the project's runner; yields its SQLAlchemy URL and drops
    it when the block ends (engines cached for it are disposed first)."""
    name = admin.new_name(kind)
    url = admin.create(name)
    try:
        upgrade(url)
        yield url
    finally:
        db_engine.dispose_all()
        admin.drop(name)


@contextlib.contextmanager
def rolled_back(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back when the block ends, whatever the
    block wrote (and however it ended)."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


@contextlib.contextmanager
def rolled_back_session(engine: Engine, *, expire_on_commit: bool = True) -> Iterator[Session]:
    """An ORM session in a :func:`rolled_back` transaction. Code under test may flush and may
    commit: a commit releases a savepoint, never the outer transaction."""
    with rolled_back(engine) as conn:
        session = Session(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=expire_on_commit
        )
        try:
            yield session
        finally:
            session.close()


@contextlib.contextmanager
def statements_sent(bind: Connection | Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (with their parameters) sent on ``bind`` while the block runs, in order:
    the SQL a data-access function really produces, to EXPLAIN or to time as sent."""
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(bind, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(bind, "before_cursor_execute", listener)
