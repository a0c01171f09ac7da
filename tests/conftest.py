"""Shared fixtures: real PostgreSQL databases, made cheap by cloning one migrated template.

Once per run a template database ``teleai_test_tpl_<run>_1`` is migrated with the real runner.
Tests that commit, use several connections or run other processes get their own clone of it
(``database_url`` / ``engine``; ``CREATE DATABASE … TEMPLATE`` takes a few tens of ms); tests that
only need one unit of work use ``session``, a transaction rolled back at the end. Every database
made here is dropped when its test ends, whatever the outcome, and a run killed before it could
clean up is cleaned up by the next run (each database records the pid that made it).

PostgreSQL not answering at ``TELEAI_TEST_ADMIN_URL`` fails the tests that need it, loudly.
The databases themselves are made by :mod:`tests.databases` (the benchmarks use it too).
"""

from __future__ import annotations

import atexit
import contextlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session

from db import engine as db_engine
from tests.databases import (
    ADMIN_URL,
    PgAdmin,
    PostgresUnavailable,
    fresh_database,
    rolled_back_session,
)
from tests.storage_server import s3_server  # noqa: F401  (the real S3 server fixture)

# The run fails if a process a test started outlives it (and such processes are killed).
pytest_plugins = ("tests.processes",)

__all__ = ["ADMIN_URL", "DatabaseFactory", "PgAdmin"]  # imported from here by many test modules


class _LoudPgAdmin(PgAdmin):
    """A :class:`PgAdmin` whose unreachable server fails the test that needs it, loudly."""

    def connect(self) -> None:
        try:
            super().connect()
        except PostgresUnavailable as err:
            pytest.fail(str(err), pytrace=False)


_admin = _LoudPgAdmin()


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
    """Name of this run's migrated template database (sealed: clones only, no connections)."""
    with fresh_database(pg_admin, "tpl") as url:
        name = make_url(url).database
        assert name is not None
        pg_admin.seal_template(name)
        yield name


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
        return name, self.admin.url_for(name)

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
    with rolled_back_session(bind, expire_on_commit=False) as orm:
        yield orm
