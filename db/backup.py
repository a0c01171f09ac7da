"""Backup and restore with the spec's commands: ``pg_dump -F c`` and ``pg_restore -c``.

The connection comes from the SQLAlchemy URL (``TELEAI_DATABASE_URL``) and reaches the tools as
libpq environment variables (PGHOST, PGUSER, PGPASSWORD, …), never as arguments: a password on
a command line is readable by every local user through ``ps`` and ``/proc``.

A backup is written to a temporary file next to the target and renamed when ``pg_dump``
succeeded, so a failed run never leaves a truncated file that looks like a backup. The dump holds
password hashes and every transcript, so that file is created owner-only (0600) before pg_dump
writes into it, whatever the umask; an older file at the target is replaced, not rewritten.
A restore runs in one transaction (``--single-transaction``): it applies completely or not at
all.
Roles are cluster-wide and not in the dump: restoring into another cluster needs the
``teleai_app``/``teleai_worker`` roles first (``teleai db upgrade`` on an empty database there
creates them, or the DO block at the top of migration 002).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from db.engine import libpq_url

# Custom-format archives start with these bytes (pg_backup_archiver.c).
ARCHIVE_MAGIC = b"PGDMP"
BACKUP_MODE = 0o600

# libpq connection keywords and their environment variables ("Environment Variables" in the
# libpq manual). A URL keyword outside this table is refused rather than silently dropped.
LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


class BackupError(RuntimeError):
    """A backup or restore could not be made; the message says why (tool output included)."""


def libpq_env(database_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that points libpq tools at ``database_url`` (``base``: os.environ)."""
    env = dict(os.environ if base is None else base)
    for keyword, value in conninfo_to_dict(libpq_url(database_url)).items():
        if value is None:
            continue
        variable = LIBPQ_ENV.get(keyword)
        if variable is None:
            raise BackupError(f"connection option {keyword!r} has no libpq environment variable")
        env[variable] = str(value)
    return env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found on PATH; install the PostgreSQL client tools")
    return path


def backup_command(path: Path) -> list[str]:
    """The spec's ``pg_dump -F c`` writing to ``path`` (connection via the environment)."""
    return [_tool("pg_dump"), "-F", "c", "-f", str(path)]


def restore_command(path: Path, database: str) -> list[str]:
    """The spec's ``pg_restore -c``, with ``--if-exists`` so a fresh database restores cleanly.

    ``-d`` is required for pg_restore to connect at all (without it, it prints SQL); only the
    database name is given there (quoted as a conninfo, so no name is mistaken for one), the
    rest of the connection comes from the environment.
    """
    return [
        _tool("pg_restore"),
        "-c",
        "--if-exists",
        "--single-transaction",
        "-d",
        make_conninfo(dbname=database),
        str(path),
    ]


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit status {result.returncode}"
        raise BackupError(f"{what} failed: {detail}")


def backup(database_url: str, path: Path) -> int:
    """Write a custom-format dump of the database to ``path``; returns its size in bytes."""
    path = Path(path)
    if path.is_dir():
        raise BackupError(f"{path} is a directory; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # left by a killed run; O_EXCL below must create a fresh file
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, BACKUP_MODE)
    except OSError as error:
        raise BackupError(f"cannot write {path}: {error.strerror}") from error
    try:
        os.fchmod(fd, BACKUP_MODE)  # the umask may have taken bits away, never added: be exact
    finally:
        os.close(fd)
    try:
        # pg_dump opens the existing file for writing (truncating it), so it keeps this mode.
        _run(backup_command(partial), libpq_env(database_url), "pg_dump")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path.stat().st_size


def restore(database_url: str, path: Path) -> None:
    """Restore a dump made by :func:`backup` over the database (its objects are replaced)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(ARCHIVE_MAGIC))
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from error
    if magic != ARCHIVE_MAGIC:
        raise BackupError(f"{path} is not a pg_dump custom-format archive")
    env = libpq_env(database_url)
    database = env.get("PGDATABASE")
    if not database:
        raise BackupError("the database URL names no database")
    _run(restore_command(path, database), env, "pg_restore")
