"""``teleai db backup FILE`` / ``teleai db restore FILE``: the spec's pg_dump / pg_restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interfaces.cli.common import (
    EXIT_FILE_FAILED,
    EXIT_USAGE,
    check_services,
    db_app,
    db_url,
    die,
    out,
)


@db_app.command("backup")
def db_backup(
    file: Annotated[Path, typer.Argument(help="Archive to write (pg_dump custom format).")],
) -> None:
    """Dump the database to FILE with `pg_dump -F c` (connection from TELEAI_DATABASE_URL)."""
    from db.backup import BackupError, backup

    check_services()
    try:
        size = backup(db_url(), file)
    except BackupError as error:
        die(str(error), EXIT_FILE_FAILED)
    out.print(f"backup written: {file} ({size:,} bytes)")


@db_app.command("restore")
def db_restore(
    file: Annotated[Path, typer.Argument(help="Archive made by `teleai db backup`.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before replacing the database.")
    ] = False,
) -> None:
    """Restore FILE over the database with `pg_restore -c --if-exists`, in one transaction."""
    from db.backup import ARCHIVE_MAGIC, BackupError, restore

    if not file.is_file():
        die(f"{file} does not exist or is not a file", EXIT_USAGE)
    with file.open("rb") as handle:
        if handle.read(len(ARCHIVE_MAGIC)) != ARCHIVE_MAGIC:
            die(f"{file} is not a pg_dump custom-format archive", EXIT_USAGE)
    if not yes and not typer.confirm(
        "Every object in the backup replaces its current version in the database. Continue?"
    ):
        die("restore cancelled", EXIT_USAGE)
    check_services()
    try:
        restore(db_url(), file)
    except BackupError as error:
        die(str(error), EXIT_FILE_FAILED)
    out.print(f"restored from {file}")
