"""Shared pieces of the ``teleai`` command: the Typer apps, consoles, exit codes, helpers.

Rich reads ``[...]`` in printed strings as markup, so user-controlled text (file names, user
names, e-mails, search terms, tags, error messages that quote them) goes through :func:`shown`
before it is printed or put in a table: markup escaped, control characters made visible.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session

from pipeline.redact import clean, redact
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


@app.callback()
def _configure_logging() -> None:
    # Log lines (a warning from workers.submit, say) go to stderr, redacted, so stdout stays
    # the command's output: `teleai ingest --json | jq` must get JSON only.
    from pipeline.logs import configure_logging

    try:
        settings = get_settings()
    except ValueError:  # invalid settings: the command itself reports them
        configure_logging()
        return
    configure_logging(settings.log_level, json=settings.log_json)


# Piped output (scripts, logs, CI) gets wide tables instead of wrapped 80-column ones.
_PIPE_WIDTH = None if sys.stdout.isatty() else 200
out = Console(width=_PIPE_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

EXIT_FILE_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3


def shown(value: object) -> str:
    """``value`` as text that Rich prints literally: no markup, no terminal control sequences."""
    return escape(clean(str(value)))


def die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr (``message`` is shown literally, secrets taken out), then exit."""
    err.print(f"[bold red]error:[/] {shown(redact(message))}", highlight=False)
    raise typer.Exit(code)


def db_url() -> str:
    return get_settings().sqlalchemy_url()


@contextlib.contextmanager
def uow() -> Iterator[Session]:
    """One unit of work against ``TELEAI_DATABASE_URL``: commits at the end, rolls back on error."""
    from db.engine import get_engine, unit_of_work

    with unit_of_work(get_engine(db_url())) as session:
        yield session


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
