"""Operations: migrations, workers, models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from interfaces.cli.common import app, check_services, db_app, db_url, models_app, out
from pipeline.settings import get_settings
from workers.process import ALL_QUEUES


@db_app.command("upgrade")
def db_upgrade(
    target: Annotated[str | None, typer.Option(help="Stop at this version (e.g. 001).")] = None,
) -> None:
    """Apply pending migrations (transactional, recorded with checksums, advisory-locked)."""
    from db import migrate

    check_services()
    applied = migrate.upgrade(db_url(), target)
    out.print(f"applied: {', '.join(applied)}" if applied else "database is up to date")


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
        bool, typer.Option(help="Also run the periodic jobs (one per cluster).")
    ] = False,
) -> None:
    """Start a Celery worker on QUEUES (same as `celery -A workers.app worker -Q …`)."""
    from workers.app import app as celery_app

    argv = [
        "worker",
        f"--queues={queues}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
    ]
    if beat:
        argv.append("--beat")
    celery_app.worker_main(argv)


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
