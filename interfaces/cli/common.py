"""Shared pieces of the ``teleai`` command: the Typer apps, consoles, exit codes, helpers."""

from __future__ import annotations

import sys
import uuid
from decimal import Decimal
from typing import Any, NoReturn

import typer
from rich.console import Console

from pipeline.settings import get_settings

app = typer.Typer(
    help="TeleAI Pro: audio in, transcripts and analyses out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database migrations and maintenance.", no_args_is_help=True)
models_app = typer.Typer(help="Model files: resolve, assemble and convert.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")

# Piped output (scripts, logs, CI) gets wide tables instead of wrapped 80-column ones.
_PIPE_WIDTH = None if sys.stdout.isatty() else 200
out = Console(width=_PIPE_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

EXIT_FILE_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
TERMINAL = {"completed", "failed"}


def die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def db_url() -> str:
    return get_settings().sqlalchemy_url()


def uow() -> Any:
    from db.engine import get_engine, unit_of_work

    engine = get_engine(db_url())
    return lambda: unit_of_work(engine)


def check_services() -> None:
    """Fail with one line (exit 3) when PostgreSQL does not answer."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from db.engine import get_engine

    try:
        with get_engine(db_url()).connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as error:
        die(f"PostgreSQL is not reachable ({error.orig}); check TELEAI_DATABASE_URL", EXIT_SERVICE)


# --- db -------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        die(f"'{value}' is not a file id (a UUID)")
