"""The ``teleai`` command: migrations, workers, ingest, inspection.

Errors print one clear line on stderr and exit with a documented code (README "Exit codes"):
0 ok, 1 a file failed, 2 usage or input error, 3 a service (PostgreSQL/Redis) unavailable.
"""

from __future__ import annotations

import glob
import json
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from pipeline.settings import get_settings

app = typer.Typer(help="TeleAI Pro: audio in, transcripts and analyses out.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations and maintenance.", no_args_is_help=True)
models_app = typer.Typer(help="Model files: resolve, assemble and convert.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")

out = Console()
err = Console(stderr=True)

EXIT_FILE_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
TERMINAL = {"completed", "failed"}


def _die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _db_url() -> str:
    return get_settings().sqlalchemy_url()


def _uow() -> Any:
    from db.engine import get_engine, unit_of_work

    engine = get_engine(_db_url())
    return lambda: unit_of_work(engine)


def _check_services() -> None:
    """Fail with one line (exit 3) when PostgreSQL does not answer."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from db.engine import get_engine

    try:
        with get_engine(_db_url()).connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as error:
        _die(f"PostgreSQL is not reachable ({error.orig}); check TELEAI_DATABASE_URL", EXIT_SERVICE)


# --- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    target: Annotated[str | None, typer.Option(help="Stop at this version (e.g. 001).")] = None,
) -> None:
    """Apply pending migrations (transactional, recorded with checksums, advisory-locked)."""
    from db import migrate

    _check_services()
    applied = migrate.upgrade(_db_url(), target)
    out.print(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@db_app.command("downgrade")
def db_downgrade(
    target: Annotated[str, typer.Option(help="Roll back to this version (000 = empty).")] = "000",
) -> None:
    """Roll back migrations newer than TARGET, newest first."""
    from db import migrate

    _check_services()
    rolled = migrate.downgrade(_db_url(), target)
    out.print(f"rolled back: {', '.join(rolled)}" if rolled else "nothing to roll back")


@db_app.command("stamp")
def db_stamp(
    version: Annotated[str, typer.Argument(help="Mark migrations up to VERSION as applied.")],
) -> None:
    """Record migrations applied by hand with psql (runs no SQL)."""
    from db import migrate

    _check_services()
    stamped = migrate.stamp(_db_url(), version)
    out.print(f"stamped: {', '.join(stamped)}" if stamped else "nothing to stamp")


@db_app.command("status")
def db_status() -> None:
    """List known migrations and whether each is applied."""
    from db import migrate

    _check_services()
    table = Table("version", "name", "applied")
    for version, name, done in migrate.status(_db_url()):
        table.add_row(version, name, "yes" if done else "no")
    out.print(table)


# --- workers --------------------------------------------------------------------------------


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues.")
    ] = "ingest,transcribe,analyze",
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


def expand_paths(items: Iterable[str]) -> Iterator[Path]:
    """Files as given, folders recursively by supported extension, globs expanded; no repeats."""
    from pipeline.audio.formats import format_from_extension

    seen: set[Path] = set()
    for item in items:
        # glob.glob, not Path.glob: a user's pattern may be absolute or contain "..".
        pattern_hits = sorted(glob.glob(item))  # noqa: PTH207
        matches = [Path(m) for m in pattern_hits] if glob.has_magic(item) else [Path(item)]
        for match in matches:
            candidates = (
                sorted(p for p in match.rglob("*") if p.is_file() and format_from_extension(p))
                if match.is_dir()
                else [match]
            )
            for path in candidates:
                key = path.absolute()
                if key not in seen:
                    seen.add(key)
                    yield path


def submit_paths(paths: list[str], *, user: str | None, force: bool) -> list[dict[str, Any]]:
    """Record each file (copied into managed storage) and enqueue it after the commit."""
    from db.users import get_or_create_operator
    from pipeline.errors import PipelineError
    from pipeline.runner import submit_file
    from workers.tasks import ingest as ingest_task

    settings = get_settings()
    uow = _uow()
    try:
        with uow() as session:
            owner_id = get_or_create_operator(session, user).id
    except LookupError as error:
        _die(str(error).strip("'\""))
    rows: list[dict[str, Any]] = []
    for path in expand_paths(paths):
        row: dict[str, Any] = {"id": None, "file_name": path.name, "error_message": None}
        rows.append(row)
        try:
            if path.is_symlink() or not path.is_file():
                raise FileNotFoundError(f"{path}: not a regular file")
            with uow() as session:
                submitted = submit_file(
                    session, path, user_id=owner_id, settings=settings, force=force
                )
        except (PipelineError, OSError) as error:
            message = error.message if isinstance(error, PipelineError) else str(error)
            row.update(status="rejected", error_message=message)
            continue
        row["id"] = str(submitted.file_id)
        if submitted.duplicate_of is not None:
            row["status"] = "duplicate"
            continue
        ingest_task.delay(row["id"])  # after commit: the row exists before the message
        row["status"] = "pending"
    return rows


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or globs.")],
    user: Annotated[
        str | None, typer.Option(help="Owner (username or email); default: local operator.")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Block until every file is completed or failed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    force: Annotated[bool, typer.Option(help="Process duplicate content again.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after N seconds.")] = 0.0,
) -> None:
    """Enqueue audio files for ingest -> transcribe -> analyze."""
    _check_services()
    rows = submit_paths(paths, user=user, force=force)
    if not rows:
        _die("no audio files found in the given paths")
    if wait:
        ids = [r["id"] for r in rows if r["status"] == "pending"]
        final = wait_for(ids, timeout=timeout, live=not as_json)
        for row in rows:
            if row["id"] in final and row["status"] == "pending":
                row.update(final[row["id"]])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table("id", "file", "status", "error")
        for row in rows:
            table.add_row(
                row["id"] or "-", row["file_name"], row["status"], row["error_message"] or ""
            )
        out.print(table)
    bad = {"failed", "rejected"} | ({"pending", "processing"} if wait else set())
    if any(row["status"] in bad for row in rows):
        raise typer.Exit(EXIT_FILE_FAILED)


def wait_for(ids: list[str], *, timeout: float, live: bool) -> dict[str, dict[str, Any]]:
    """Poll the rows until each is terminal (or the timeout passes), showing progress."""
    from rich.live import Live

    from db.models import AudioFile

    uow = _uow()
    deadline = time.monotonic() + timeout if timeout > 0 else None
    started = time.monotonic()
    state: dict[str, dict[str, Any]] = {}

    def poll() -> None:
        with uow() as session:
            for row in session.query(AudioFile).filter(
                AudioFile.id.in_([uuid.UUID(i) for i in ids])
            ):
                state[str(row.id)] = {
                    "status": row.status,
                    "stage": row.stage,
                    "error_message": row.error_message,
                }

    def render() -> Table:
        table = Table("id", "stage", "status", "elapsed")
        for file_id in ids:
            row = state.get(file_id, {})
            table.add_row(
                file_id[:8],
                row.get("stage", "?"),
                row.get("status", "?"),
                f"{time.monotonic() - started:5.1f}s",
            )
        return table

    with Live(
        render(), console=err, transient=True, auto_refresh=False, redirect_stdout=False
    ) as view:
        while True:
            poll()
            if live:
                view.update(render(), refresh=True)
            if all(state.get(i, {}).get("status") in TERMINAL for i in ids):
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return {
        k: {"status": v["status"], "error_message": v["error_message"]} for k, v in state.items()
    }


# --- inspection -----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def file_report(file_id: uuid.UUID) -> dict[str, Any] | None:
    """Everything about one file: columns, stage timings, latest transcription, its analyses."""
    from sqlalchemy import inspect as sa_inspect

    from db.analyses import analyses_for
    from db.models import AudioFile
    from db.transcripts import latest_transcription

    with _uow()() as session:
        row = session.get(AudioFile, file_id)
        if row is None:
            return None
        report: dict[str, Any] = {
            attr.key.rstrip("_"): _jsonable(getattr(row, attr.key))
            for attr in sa_inspect(AudioFile).column_attrs
        }
        report["stage_seconds"] = row.metadata_.get("stage_seconds", {})
        version = latest_transcription(session, file_id)
        report["transcription"] = None
        report["analyses"] = []
        if version is not None:
            report["transcription"] = {
                "id": str(version.id),
                "version": version.version,
                "text": version.transcription_text,
                "language_code": version.language_code,
                "confidence_score": _jsonable(version.confidence_score),
                "engine": version.engine,
                "engine_version": version.engine_version,
                "model": version.model_name,
                "word_count": version.word_count,
                "processing_time_seconds": _jsonable(version.processing_time_seconds),
                "segments": version.segments,
            }
            report["analyses"] = [
                {
                    "analysis_type": a.analysis_type,
                    "result": a.result,
                    "model_name": a.model_name,
                    "parameters": a.parameters,
                }
                for a in analyses_for(session, version.id)
            ]
    return report


def _parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        _die(f"'{value}' is not a file id (a UUID)")


@app.command()
def show(
    file_id: Annotated[str, typer.Argument(help="Audio file id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Status, metadata, stage timings, latest transcript and analyses of one file."""
    _check_services()
    report = file_report(_parse_id(file_id))
    if report is None:
        _die(f"no audio file {file_id}")
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    print_report(report)


def print_report(report: dict[str, Any] | str) -> None:
    """Human-readable view of :func:`file_report` (or of the file with that id)."""
    if isinstance(report, str):
        found = file_report(_parse_id(report))
        if found is None:
            _die(f"no audio file {report}")
        report = found
    table = Table(show_header=False, box=None, title=f"[bold]{report['file_name']}")
    for key in (
        "id",
        "status",
        "stage",
        "error_message",
        "file_format",
        "codec",
        "duration_seconds",
        "sample_rate",
        "channels",
        "bitrate",
    ):
        table.add_row(f"[bold]{key}", str(report.get(key)))
    timings = report["stage_seconds"]
    table.add_row("[bold]stage seconds", ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    out.print(table)
    if report["transcription"]:
        t = report["transcription"]
        out.print(
            f"[bold]transcript v{t['version']}[/] ({t['language_code']}, confidence "
            f"{t['confidence_score']}, {t['engine']} {t['engine_version']}, model {t['model']}):"
        )
        out.print(f"  {t['text']}", highlight=False)
    for analysis in report["analyses"]:
        out.print(f"[bold]{analysis['analysis_type']}[/] ({analysis['model_name']}):")
        out.print(_analysis_line(analysis["analysis_type"], analysis["result"]), highlight=False)


def _analysis_line(kind: str, result: dict[str, Any]) -> str:
    if kind == "sentiment":
        overall = result["overall"]
        count = len(result["segments"])
        return f"  {overall['label']} ({overall['score']:+.2f}) over {count} segments"
    if kind == "summary":
        return f"  {result['summary']}"
    if kind == "keywords":
        return "  " + ", ".join(k["keyword"] for k in result["keywords"])
    if kind == "entities":
        return "  " + ", ".join(f"{e['text']} ({e['label']})" for e in result["entities"])
    return f"  {json.dumps(result)[:200]}"


def print_queue_stats() -> None:
    """The spec's processing-queue query as a table."""
    from db.monitoring import processing_queue

    with _uow()() as session:
        rows = processing_queue(session)
    table = Table("status", "count", "avg wait (s)", title="processing queue")
    for row in rows:
        table.add_row(row.status, str(row.count), f"{row.avg_wait_seconds:.1f}")
    if not rows:
        table.caption = "nothing pending or processing"
    out.print(table)


@app.command()
def retranscribe(
    file_id: Annotated[str, typer.Argument(help="Audio file id.")],
    engine: Annotated[str | None, typer.Option(help="faster-whisper or openai-whisper.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name or path.")] = None,
) -> None:
    """Add a new transcription version of a finished file (history is kept)."""
    from pipeline.runner import request_retranscription
    from workers.tasks import transcribe

    _check_services()
    parsed = _parse_id(file_id)
    try:
        with _uow()() as session:
            queued = request_retranscription(session, parsed, engine=engine, model=model)
    except LookupError as error:
        _die(str(error))
    if not queued:
        _die(f"file {file_id} is still being processed; try again when it is finished")
    transcribe.delay(str(parsed))
    out.print(f"queued re-transcription of {file_id}")


@app.command()
def demo() -> None:
    """Set up the database, start a worker, process sample speech and show the results."""
    from pipeline.demo import main as run_demo

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


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
