"""One SQLAlchemy engine per process, and the unit-of-work session that callers open.

Celery forks its pool children after the parent may have connected; a pooled connection shared
across a fork corrupts both sides, so :func:`reset_after_fork` drops the inherited pool without
closing the parent's sockets (SQLAlchemy "Using Connection Pools with Multiprocessing").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session

_engines: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """The process's engine for ``url``, created on first use."""
    engine = _engines.get(url)
    if engine is None:
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        _engines[url] = engine
    return engine


def reset_after_fork() -> None:
    """Forget pooled connections inherited from a parent process (call in the child)."""
    for engine in _engines.values():
        engine.dispose(close=False)


def dispose_all() -> None:
    """Close every pooled connection of this process (shutdown, tests)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: commits when the block ends, rolls back if it raises."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq URL (for psycopg, psql and pg_dump)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
