"""Operations: migrations, workers, models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from interfaces.cli.common import (
    app,
    check_services,
    db_app,
    db_url,
    die,
    models_app,
    out,
    shown,
)
from pipeline.settings import get_settings
from workers.process import ALL_QUEUES


@db_app.command("upgrade")
def db_upgrade(
    target: Annotated[str | None, typer.Option(help="Stop at this version (e.g. 001).")] = None,
    login_role: Annotated[
        list[str] | None,
        typer.Option(
            help="After migrating, create or update a login role: NAME:GROUP:VARIABLE, where "
            "GROUP is teleai_app, teleai_worker or teleai_intake and VARIABLE names the "
            "environment variable holding its password (or VARIABLE_FILE, a file with it, "
            "e.g. a Docker secret). Repeat for each service login.",
        ),
    ] = None,
) -> None:
    """Apply pending migrations (transactional, recorded with checksums, advisory-locked)."""
    from db import migrate

    specs = [parse_login_role(spec) for spec in login_role or []]
    check_services()
    applied = migrate.upgrade(db_url(), target)
    out.print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    if specs:
        ensure_login_roles(specs)


def parse_login_role(spec: str) -> tuple[str, str, str]:
    """``NAME:GROUP:VARIABLE`` -> (name, group, password); exit 2 when any part is missing."""
    import os

    from db.access import GROUP_ROLES

    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        die(f"--login-role {spec!r}: expected NAME:GROUP:VARIABLE")
    name, group, variable = parts
    if group not in GROUP_ROLES:
        die(f"--login-role {name}: GROUP must be one of {', '.join(sorted(GROUP_ROLES))}")
    password = os.environ.get(variable, "")
    secret_file = os.environ.get(f"{variable}_FILE")
    if not password and secret_file:
        try:
            password = Path(secret_file).read_text().strip()
        except OSError as error:
            die(f"--login-role {name}: cannot read {variable}_FILE: {error.strerror}")
    if not password:
        die(f"--login-role {name}: set {variable} (or {variable}_FILE) to its password")
    return name, group, password


def ensure_login_roles(specs: list[tuple[str, str, str]]) -> None:
    """Create or update each login role as the owner (the passwords never reach a log)."""
    import psycopg

    from db.access import ensure_login_role
    from db.engine import libpq_url

    with psycopg.connect(libpq_url(db_url()), autocommit=True) as conn:
        for name, group, password in specs:
            try:
                created = ensure_login_role(conn, name, password, group)
            except (ValueError, psycopg.Error) as error:
                die(f"login role {name}: {error}")
            out.print(f"login role {shown(name)} in {group}: {'created' if created else 'updated'}")


@db_app.command("downgrade")
def db_downgrade(
    target: Annotated[str, typer.Option(help="Roll back to this version (000 = empty).")] = "000",
) -> None:
    """Roll back migrations newer than TARGET, newest first."""
    from db import migrate

    check_services()
    rolled = migrate.downgrade(db_url(), target)
    out.print(f"rolled back: {', '.join(rolled)}" if rolled else "nothing to roll back")


@db_app.command("stamp")
def db_stamp(
    version: Annotated[str, typer.Argument(help="Mark migrations up to VERSION as applied.")],
) -> None:
    """Record migrations applied by hand with psql (runs no SQL)."""
    from db import migrate

    check_services()
    stamped = migrate.stamp(db_url(), version)
    out.print(f"stamped: {', '.join(stamped)}" if stamped else "nothing to stamp")


@db_app.command("status")
def db_status() -> None:
    """List known migrations and whether each is applied."""
    from db import migrate

    check_services()
    table = Table("version", "name", "applied")
    for version, name, done in migrate.status(db_url()):
        table.add_row(version, name, "yes" if done else "no")
    out.print(table)


# --- workers --------------------------------------------------------------------------------


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = ALL_QUEUES,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    beat: Annotated[
        bool,
        typer.Option(
            help="Also embed celery beat (not needed: the workers run the periodic jobs)."
        ),
    ] = False,
) -> None:
    """Start a Celery worker on QUEUES (same as `celery -A workers.app worker -Q …`, without
    the `celery` command's imports: see workers/launch.py)."""
    from workers.launch import run

    argv = [f"--queues={queues}", f"--concurrency={concurrency}", f"--loglevel={loglevel}"]
    if beat:
        argv.append("--beat")
    raise typer.Exit(run(argv))


# --- ingest ---------------------------------------------------------------------------------


@app.command()
def demo() -> None:
    """Set up the database, start a worker, process sample speech and show the results."""
    from interfaces.demo import main as run_demo

    run_demo()


@models_app.command("convert")
def models_convert(
    model: Annotated[str, typer.Argument(help="'tiny.en', 'base' or a CTranslate2 model dir.")],
    output: Annotated[Path | None, typer.Option(help="Checkpoint file to write.")] = None,
) -> None:
    """Convert a CTranslate2 Whisper model into an openai-whisper checkpoint (.pt)."""
    from pipeline.transcription.convert import convert_ct2_to_openai, ensure_openai_checkpoint
    from pipeline.transcription.model_files import resolve_ct2_model

    settings = get_settings()
    if output is None:
        path = ensure_openai_checkpoint(model, settings.model_cache_dir, settings.hub_downloads)
    else:
        source, _origin = resolve_ct2_model(model, settings.model_cache_dir, settings.hub_downloads)
        path = convert_ct2_to_openai(Path(source), output)
    out.print(f"openai-whisper checkpoint: {path}")
