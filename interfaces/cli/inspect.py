"""Reading results: export, full-text search, version history, daily analytics."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from db.transcripts import MAX_SEARCH_RESULTS
from interfaces.cli.common import app, check_services, die, jsonable, out, parse_id, shown, uow
from interfaces.cli.files import file_report
from pipeline.export import EXPORT_FORMATS, render
from pipeline.redact import clean


@app.command()
def export(
    file_id: Annotated[str, typer.Argument(help="Audio file id.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="txt, json, srt or vtt.")] = "txt",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
    redacted: Annotated[
        bool,
        typer.Option("--redacted", help="The redacted transcript (exit 2 if the job had none)."),
    ] = False,
) -> None:
    """Export the latest transcript (subtitles come from the stored segment timestamps)."""
    if fmt not in EXPORT_FORMATS:
        die(f"unknown format '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}")
    check_services()
    report = file_report(parse_id(file_id), redacted=redacted)
    if report is None:
        die(f"no audio file {file_id}")
    if redacted and report["transcription"] and not report["transcription"].get("redacted"):
        die(f"file {file_id} has no redacted transcript (submit it with --redact-pii)")
    if report["transcription"] is None:
        die(f"file {file_id} has no transcription yet (status: {report['status']})")
    text = render(fmt, report)
    if output is None:
        if sys.stdout.isatty():  # a terminal acts on escape sequences; a pipe or file gets bytes
            text = clean(text, keep_newlines=True)
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {shown(output)}")


@app.command()
def search(
    words: Annotated[str, typer.Argument(help='Web-search syntax: words, "a phrase", -not, or.')],
    limit: Annotated[int, typer.Option(min=1, max=MAX_SEARCH_RESULTS, help="Most results.")] = 20,
    user: Annotated[str | None, typer.Option(help="Only this owner's files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Full-text search over the latest transcriptions, with highlighted snippets."""
    from db.transcripts import search_transcripts
    from db.users import get_active_user

    check_services()
    with uow() as session:
        owner_id = None
        if user is not None:
            owner = get_active_user(session, user)
            if owner is None:
                die(f"no active user '{user}'")
            owner_id = owner.id
        hits = search_transcripts(session, words, user_id=owner_id, limit=limit)
    if as_json:
        rows = [{k: jsonable(v) for k, v in dataclasses.asdict(h).items()} for h in hits]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("file id", "file", "rank", "snippet", title=f"search: {shown(words)}")
    for hit in hits:
        snippet = re.sub(r"\*\*(.+?)\*\*", r"[bold yellow]\1[/]", shown(hit.snippet))
        table.add_row(str(hit.audio_file_id), shown(hit.file_name), f"{hit.rank:.3f}", snippet)
    if not hits:
        table.caption = "no matches"
    out.print(table)


@app.command()
def versions(file_id: Annotated[str, typer.Argument(help="Audio file id.")]) -> None:
    """Every transcription version of a file, newest last."""
    from db.transcripts import list_versions

    check_services()
    with uow() as session:
        rows = list_versions(session, parse_id(file_id))
        table = Table("version", "latest", "engine", "model", "language", "confidence", "created")
        for v in rows:
            table.add_row(
                str(v.version),
                "yes" if v.is_latest else "",
                shown(v.engine or ""),
                shown(v.model_name or ""),
                shown(v.language_code or ""),
                str(v.confidence_score),
                v.created_at.isoformat(timespec="seconds"),
            )
    if not rows:
        die(f"file {file_id} has no transcriptions")
    out.print(table)


@app.command()
def analytics(
    refresh: Annotated[bool, typer.Option(help="Refresh the view first.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The daily file_processing_analytics materialized view, by format and status."""
    from db.monitoring import daily_analytics, refresh_analytics

    check_services()
    with uow() as session:
        if refresh:
            refresh_analytics(session)
        rows = daily_analytics(session)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2, default=str))
        return
    table = Table(
        "day",
        "format",
        "status",
        "files",
        "avg size",
        "avg duration s",
        "avg processing s",
        title="file processing analytics (UTC days)",
    )
    for r in rows:
        table.add_row(
            str(r.day),
            r.file_format,
            r.status,
            str(r.file_count),
            f"{r.avg_file_size_bytes / 1024:.1f} KiB",
            "-" if r.avg_duration_seconds is None else f"{r.avg_duration_seconds:.1f}",
            "-" if r.avg_processing_seconds is None else f"{r.avg_processing_seconds:.1f}",
        )
    if not rows:
        table.caption = "empty: run with --refresh, or wait for the periodic refresh"
    out.print(table)
