"""Apply and roll back the numbered plain-SQL migrations in ``db/migrations``.

Each file runs inside one transaction together with its bookkeeping row, so a migration is
either fully applied and recorded or not at all. A session-level advisory lock serialises
concurrent runners (two containers starting at once), and a checksum per applied file catches
an already-applied migration that was edited afterwards.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from db.engine import libpq_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant shared by every TeleAI process: "teleai migrations".
ADVISORY_LOCK_KEY = 0x7E1EA1_0001
_FILE_RE = re.compile(r"^(?P<version>\d{3})_(?P<name>\w+)_(?P<direction>up|down)\.sql$")

BOOKKEEPING_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    varchar(10)  PRIMARY KEY,
    name       varchar(200) NOT NULL,
    checksum   char(64)     NOT NULL,
    applied_at timestamptz  NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """Raised when migrations cannot be applied as asked (edited file, missing down file)."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: Path
    down: Path | None

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations in version order, pairing each up file with its down file."""
    ups: dict[str, tuple[str, Path]] = {}
    downs: dict[str, Path] = {}
    for path in directory.glob("*.sql"):
        match = _FILE_RE.match(path.name)
        if match is None:
            continue
        if match["direction"] == "up":
            ups[match["version"]] = (match["name"], path)
        else:
            downs[match["version"]] = path
    return [
        Migration(version, name, up, downs.get(version))
        for version, (name, up) in sorted(ups.items())
    ]


def applied(conn: psycopg.Connection) -> dict[str, str]:
    """version -> checksum of what is recorded as applied."""
    conn.execute(BOOKKEEPING_SQL)
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {version: checksum for version, checksum in rows}


def upgrade(
    database_url: str, target: str | None = None, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Apply pending migrations up to ``target`` (all by default); returns the versions applied."""
    done: list[str] = []
    with _locked_connection(database_url) as conn:
        recorded = applied(conn)
        for migration in discover(directory):
            if target is not None and migration.version > target:
                break
            if migration.version in recorded:
                if recorded[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.up.name} was edited after it was applied; "
                        "add a new numbered migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.up.read_text())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            done.append(migration.version)
    return done


def downgrade(
    database_url: str, target: str = "000", directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Roll back applied migrations newer than ``target`` (all by default), newest first."""
    done: list[str] = []
    with _locked_connection(database_url) as conn:
        recorded = applied(conn)
        for migration in reversed(discover(directory)):
            if migration.version <= target or migration.version not in recorded:
                continue
            if migration.down is None:
                raise MigrationError(f"migration {migration.version} has no down file")
            with conn.transaction():
                conn.execute(migration.down.read_text())
                conn.execute(
                    "DELETE FROM schema_migrations WHERE version = %s", (migration.version,)
                )
            done.append(migration.version)
        if target == "000":
            conn.execute("DROP TABLE IF EXISTS schema_migrations")
    return done


def status(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[tuple[str, str, bool]]:
    """(version, name, applied?) for every known migration."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        # Read-only: no bookkeeping table is created outside the migration lock.
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        recorded: set[str] = set()
        if exists and exists[0] is not None:
            rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
            recorded = {version for (version,) in rows}
    return [(m.version, m.name, m.version in recorded) for m in discover(directory)]


def stamp(database_url: str, version: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Record migrations up to ``version`` as applied without running them.

    For a database migrated by hand with ``psql -f …_up.sql`` (the spec's guide): the runner
    would otherwise try to create what already exists.
    """
    done: list[str] = []
    with _locked_connection(database_url) as conn:
        recorded = applied(conn)
        for migration in discover(directory):
            if migration.version > version or migration.version in recorded:
                continue
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            done.append(migration.version)
    return done


@contextmanager
def _locked_connection(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection holding the migration advisory lock while open."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
