"""The main job in one command (`make demo`): database, workers, sample audio, results, shutdown.

It picks PostgreSQL and Redis (the configured or local ones, else embedded ones under
``TELEAI_DEMO_DIR``, default ``var/demo``: see :mod:`interfaces.embedded`), creates the database
when missing, applies migrations, prints a schema summary, starts a real Celery worker, speaks a
few sentences with espeak-ng (or uses the sample the project ships), ingests them with live
progress, prints transcripts, analyses and the queue stats, and stops the worker, then the
embedded servers, also on Ctrl-C. Exits 1 when a file did not complete.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy import make_url

from db.engine import dispose_all, libpq_url
from interfaces.embedded import demo_services
from interfaces.speech import ESPEAK_RATE, ESPEAK_VOICE, ESPEAK_WPM, convert, espeak_wav
from pipeline.settings import get_settings
from workers.process import WorkerStartError, start_worker, stop_worker

console = Console()

SENTENCES = {
    "complaint": (
        "I am very angry about the terrible service. The delivery was late again and nobody "
        "answered my emails. We will meet your manager in Berlin on Friday. I want a full refund."
    ),
    "praise": (
        "Thank you for the wonderful support last week. The new dashboard is fast and easy to "
        "use, and our team in Paris loves it. Let us schedule the next review for Monday."
    ),
}
SAMPLE = Path(__file__).parent / "samples" / "welcome.ogg"


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist (needs CREATEDB)."""
    target = make_url(url)
    if not target.database:
        raise SystemExit("TELEAI_DATABASE_URL names no database")
    admin = libpq_url(target.set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database)))
            console.print(f"created database [bold]{target.database}[/]")


def schema_summary(url: str) -> Table:
    """Tables with row counts and sizes, plus views and index counts."""
    table = Table("object", "kind", "rows", "size", title="schema")
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT c.relname, CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' "
            "WHEN 'm' THEN 'materialized view' END, c.reltuples::bigint, "
            "pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm') ORDER BY 2, 1"
        ).fetchall()
        indexes = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"
        ).fetchone()
    for name, kind, estimate, size in rows:
        table.add_row(name, kind, "-" if estimate < 0 else str(estimate), size)
    table.caption = f"{indexes[0] if indexes else 0} indexes"
    return table


def make_samples(directory: Path) -> list[Path]:
    """Speak the demo sentences into MP3 and OGG (WAV without ffmpeg), or fall back to the
    shipped sample when espeak-ng is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    if not shutil.which("espeak-ng"):
        console.print(
            f"espeak-ng not found: using the sample shipped with the project ({SAMPLE.name})"
        )
        return [SAMPLE]
    formats = ("mp3", "ogg")
    if not shutil.which("ffmpeg"):
        console.print("ffmpeg not found: ingesting the WAV files espeak-ng writes")
        formats = ("wav", "wav")
    paths = []
    for (name, text), fmt in zip(SENTENCES.items(), formats, strict=True):
        path = espeak_wav(
            text, directory / f"{name}.wav", voice=ESPEAK_VOICE, words_per_minute=ESPEAK_WPM
        )
        if fmt != "wav":  # at espeak's own rate and channel count
            path = convert(
                path, fmt, path.with_suffix(f".{fmt}"), sample_rate=ESPEAK_RATE, channels=1
            )
        paths.append(path)
    return paths


def _exit_on_termination() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the servers the demo started are stopped too."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def run(work: Path, *, storage_default: bool) -> bool:
    """The demo proper, against the services in ``TELEAI_*``. True when every file completed."""
    from db import migrate
    from db.engine import get_engine, unit_of_work
    from db.users import get_or_create_operator
    from interfaces.cli import files as cli
    from workers.submit import submit

    if storage_default:
        os.environ.setdefault("TELEAI_STORAGE_DIR", str(work / "storage"))
        get_settings.cache_clear()
    settings = get_settings()
    url = settings.sqlalchemy_url()
    ensure_database(url)
    applied = migrate.upgrade(url)
    console.print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
    console.print(schema_summary(url))
    samples = make_samples(work / "audio")
    console.print(f"starting a worker (log: {work / 'worker.log'})")
    try:
        worker = start_worker(work / "worker.log")
    except WorkerStartError as error:
        raise SystemExit(f"{error}; see {work / 'worker.log'}") from error
    console.print(f"worker ready (pid {worker.pid})")
    try:
        with unit_of_work(get_engine(url)) as session:
            owner_id = get_or_create_operator(session, None).id
        results = [submit(path, owner_id=owner_id, force=True) for path in samples]
        ids = [str(r.file_id) for r in results if r.file_id is not None and r.queued]
        states = cli.wait_for(ids, timeout=600, live=True)
        for file_id in ids:
            cli.print_report(file_id)
        cli.print_queue_stats()
        return bool(ids) and all(states.get(i, {}).get("status") == "completed" for i in ids)
    finally:
        console.print("stopping the worker")
        stop_worker(worker)
        dispose_all()  # close this process's pooled sessions before the database stops


def main() -> None:
    work = Path(os.environ.get("TELEAI_DEMO_DIR", "var/demo")).absolute()
    _exit_on_termination()

    def announce(line: str) -> None:
        console.print(line, highlight=False)

    try:
        with demo_services(work, announce=announce) as services:
            ok = run(work, storage_default=services.embedded_database)
    except KeyboardInterrupt:
        console.print("interrupted; everything the demo started is stopped")
        raise SystemExit(130) from None
    if not ok:
        console.print("[bold red]not every file completed[/]")
        raise SystemExit(1)
    console.print("[bold green]demo completed[/]")


if __name__ == "__main__":
    main()
