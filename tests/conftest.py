"""Shared fixtures: real PostgreSQL databases, made cheap by cloning one migrated template.

Once per run a template database ``teleai_test_tpl_<run>`` is migrated with the real runner.
Tests that commit, use several connections or run other processes get their own clone of it
(``database_url`` / ``engine``; ``CREATE DATABASE … TEMPLATE`` takes a few tens of ms); tests that
only need one unit of work use ``session``, a transaction rolled back at the end. Every database
made here is dropped when its test ends, whatever the outcome, and a run killed before it could
clean up is cleaned up by the next run (each database records the pid that made it).

PostgreSQL not answering at ``TELEAI_TEST_ADMIN_URL`` fails the tests that need it, loudly.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import queue
import re
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.orm import Session

from db import engine as db_engine
from db.engine import libpq_url
from db.migrate import upgrade
from tests.storage_server import s3_server  # noqa: F401  (the real S3 server fixture)

# The run fails if a process a test started outlives it (and such processes are killed).
pytest_plugins = ("tests.processes",)

ADMIN_URL = os.environ.get(
    "TELEAI_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DB_PREFIX = "teleai_test_"
RUN_ID = secrets.token_hex(4)
_OWNER_TAG = f"teleai-pytest host={socket.gethostname()} pid={os.getpid()}"
_OWNER_RE = re.compile(r"^teleai-pytest host=(?P<host>\S+) pid=(?P<pid>\d+)$")


def _url_for(database: str) -> str:
    """ADMIN_URL pointed at another database (SQLAlchemy form)."""
    return make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def _shown_url() -> str:
    return make_url(ADMIN_URL).render_as_string(hide_password=True)


class PgAdmin:
    """Creates and drops this run's databases over one autocommit connection."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None
        self.created: set[str] = set()
        self._names = itertools.count(1)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._dropper: threading.Thread | None = None

    def connect(self) -> None:
        try:
            self._conn = psycopg.connect(libpq_url(ADMIN_URL), autocommit=True, connect_timeout=5)
            return
        except psycopg.OperationalError as err:
            reason = str(err).strip()
        pytest.fail(
            f"PostgreSQL is not answering at {_shown_url()} (TELEAI_TEST_ADMIN_URL): {reason}\n"
            "The database tests need a real PostgreSQL 15; start it, or point "
            "TELEAI_TEST_ADMIN_URL at one (a superuser, or a role with CREATEDB).",
            pytrace=False,
        )

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self.connect()
        assert self._conn is not None
        return self._conn

    def new_name(self, kind: str) -> str:
        return f"{DB_PREFIX}{kind}_{RUN_ID}_{next(self._names)}"

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
                sql.Identifier(name), sql.Literal(_OWNER_TAG)
            )
        )
        return _url_for(name)

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
        with psycopg.connect(libpq_url(ADMIN_URL), autocommit=True) as conn:
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
        """Drop test databases left by runs on this host whose process is gone (kill -9)."""
        rows = self.conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname LIKE %s",
            (DB_PREFIX.replace("_", r"\_") + "%",),
        ).fetchall()
        for name, comment in rows:
            match = _OWNER_RE.match(comment or "")
            if match is None or match["host"] != socket.gethostname():
                continue
            if not _process_alive(int(match["pid"])):
                with contextlib.suppress(psycopg.Error):
                    self.drop(name)

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()


def _drop(conn: psycopg.Connection, name: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if exists.fetchone() is not None:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(ident))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_admin = PgAdmin()


@atexit.register
def _drop_leftovers() -> None:
    # Session teardown normally drops everything; this covers an interrupted run.
    if _admin.created:
        with contextlib.suppress(BaseException):  # pytest.fail raises a BaseException
            _admin.drop_all()
    _admin.close()


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[PgAdmin]:
    """The connection that creates and drops test databases (fails loudly if PostgreSQL is down)."""
    _admin.connect()
    _admin.reap_orphans()
    try:
        yield _admin
    finally:
        _admin.drop_all()


@pytest.fixture(scope="session")
def template_database(pg_admin: PgAdmin) -> Iterator[str]:
    """Name of this run's migrated template database."""
    name = f"{DB_PREFIX}tpl_{RUN_ID}"
    url = pg_admin.create(name)
    try:
        upgrade(url)
        pg_admin.seal_template(name)
        yield name
    finally:
        pg_admin.drop(name)


@dataclass
class DatabaseFactory:
    """Makes databases for one test and drops them all when it ends."""

    admin: PgAdmin
    template: str
    names: list[str] = field(default_factory=list)

    def migrated(self) -> str:
        """URL of a fresh clone of the migrated template."""
        name = self.admin.new_name("db")
        self.names.append(name)
        return self.admin.create(name, template=self.template)

    def empty(self) -> str:
        """URL of a fresh database with nothing in it (copied from template0)."""
        name = self.admin.new_name("empty")
        self.names.append(name)
        return self.admin.create(name)

    def adopt(self, kind: str) -> tuple[str, str]:
        """A fresh name the test creates itself (e.g. with psql), dropped with the others.

        Returns (name, SQLAlchemy URL).
        """
        name = self.admin.new_name(kind)
        self.names.append(name)
        self.admin.created.add(name)
        return name, _url_for(name)

    def drop_all(self) -> None:
        # Engines cached by db.engine.get_engine for these URLs would hold dead connections.
        db_engine.dispose_all()
        for name in self.names:
            self.admin.drop_later(name)
        self.names.clear()


@pytest.fixture
def database_factory(pg_admin: PgAdmin, template_database: str) -> Iterator[DatabaseFactory]:
    """For tests that need more than one database."""
    factory = DatabaseFactory(pg_admin, template_database)
    try:
        yield factory
    finally:
        factory.drop_all()


@pytest.fixture
def database_url(database_factory: DatabaseFactory) -> str:
    """SQLAlchemy URL of a migrated database of this test's own (dropped after it)."""
    return database_factory.migrated()


@pytest.fixture
def empty_database_url(database_factory: DatabaseFactory) -> str:
    """SQLAlchemy URL of an empty database of this test's own (for migration tests)."""
    return database_factory.empty()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's own migrated database."""
    eng = create_engine(database_url, pool_size=5, max_overflow=5)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def uow(engine: Engine) -> Callable[[], AbstractContextManager[Session]]:
    """Units of work (one committed transaction each) on the test's own database."""
    return lambda: db_engine.unit_of_work(engine)


@pytest.fixture
def owner(uow: Callable[[], AbstractContextManager[Session]]) -> uuid.UUID:
    """An ordinary account that test files are submitted for."""
    from db.users import create_user

    with uow() as session:
        return create_user(
            session, email="owner@example.com", username="owner", password="pw-1234567"
        ).id


@pytest.fixture(scope="session")
def shared_engine(pg_admin: PgAdmin, template_database: str) -> Iterator[Engine]:
    """An engine on one migrated database shared by all ``session`` tests of the run."""
    name = pg_admin.new_name("shared")
    eng = create_engine(pg_admin.create(name, template=template_database), pool_size=2)
    try:
        yield eng
    finally:
        eng.dispose()
        pg_admin.drop(name)


@pytest.fixture
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    """An ORM session inside a transaction that is rolled back when the test ends.

    It runs on the shared database, or on the test's own one when the test also uses
    ``engine``/``database_url`` (so both see the same rows). Code under test may flush, and may
    commit: commits release a savepoint, never the outer transaction.
    """
    if {"engine", "database_url"} & set(request.fixturenames):
        bind: Engine = request.getfixturevalue("engine")
    else:
        bind = request.getfixturevalue("shared_engine")
    connection: Connection = bind.connect()
    outer = connection.begin()
    orm = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield orm
    finally:
        orm.close()
        outer.rollback()
        connection.close()
