"""Files: ingest, wait, show, re-transcribe."""

from __future__ import annotations

import glob
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from interfaces.cli.common import (
    EXIT_FILE_FAILED,
    EXIT_SERVICE,
    app,
    check_services,
    die,
    err,
    jsonable,
    out,
    parse_id,
    shown,
    uow,
)
from pipeline.options import JobOptions

if TYPE_CHECKING:
    from workers.submit import SubmitResult


def expand_paths(items: Iterable[str]) -> Iterator[Path]:
    """Files as given, folders recursively by supported extension, globs expanded; no repeats."""
    from pipeline.audio.formats import format_from_extension

    seen: set[Path] = set()
    for item in items:
        # glob.glob, not Path.glob: a user's pattern may be absolute or contain "..".
        # A path that exists is taken as it is: a file may be named "[take 2].wav".
        literal = not glob.has_magic(item) or Path(item).exists()
        matches = [Path(item)] if literal else [Path(m) for m in sorted(glob.glob(item))]  # noqa: PTH207
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


def resolve_owner(user: str | None) -> uuid.UUID:
    """The id of the account files are submitted for (``None``: the local operator); exit 2
    when the named user does not exist."""
    from db.users import get_or_create_operator

    try:
        with uow() as session:
            return get_or_create_operator(session, user).id
    except LookupError as error:
        die(str(error))


_SHOWN_STATUS = {"created": "pending", "duplicate": "duplicate", "refused": "rejected"}


def result_row(result: SubmitResult) -> dict[str, Any]:
    """One output row for a submitted file.

    ``status`` is ``pending`` (a new row), ``duplicate`` (same bytes from the same owner: the
    earlier row's id) or ``rejected`` (no row; ``error_message`` says why). ``queued`` is False
    when the broker was unreachable (the row is kept; the recovery sweep sends it).
    """
    return {
        "id": str(result.file_id) if result.file_id else None,
        "file_name": result.file_name,
        "status": _SHOWN_STATUS[result.outcome.value],
        "queued": result.queued,
        "error_message": result.reason,
    }


def submit_paths(
    paths: list[str], *, user: str | None, force: bool, options: JobOptions | None = None
) -> list[dict[str, Any]]:
    """Submit each file (folders recursively, globs expanded) for one owner, through
    :func:`workers.submit.submit_many` (a transaction and one broker connection per batch)."""
    from workers.submit import submit_many

    owner_id = resolve_owner(user)
    results = submit_many(expand_paths(paths), owner_id=owner_id, options=options, force=force)
    return [result_row(result) for result in results]


def job_options(**given: Any) -> JobOptions:
    """The per-job options from CLI flags (unset flags left out); exit 2 with every problem."""
    from pipeline.options import InvalidOptions, parse_options

    try:
        return parse_options({k: v for k, v in given.items() if v not in (None, [], ())})
    except InvalidOptions as error:
        die(error.message)


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
    engine: Annotated[
        str | None, typer.Option(help="faster-whisper or openai-whisper (default: setting).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Whisper model name or path.")] = None,
    language: Annotated[str | None, typer.Option(help="Fix the language (ISO code).")] = None,
    vocabulary: Annotated[
        list[str] | None,
        typer.Option(
            help="Terms the speakers use (product names, people): --vocabulary TERM [TERM ...]."
        ),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Initial prompt for the decoder.")] = None,
    speakers: Annotated[int | None, typer.Option(help="Exact number of speakers.")] = None,
    min_speakers: Annotated[int | None, typer.Option(help="At least N speakers.")] = None,
    max_speakers: Annotated[int | None, typer.Option(help="At most N speakers.")] = None,
    channels: Annotated[
        str | None, typer.Option(help="auto | split | mix: per-channel transcription.")
    ] = None,
    channel_labels: Annotated[
        str | None, typer.Option(help="Speaker label per channel, e.g. agent,customer.")
    ] = None,
    redact_pii: Annotated[
        bool, typer.Option("--redact-pii", help="Detect and redact personal data.")
    ] = False,
    pii_types: Annotated[
        str | None, typer.Option(help="With --redact-pii: types, e.g. card,phone,email.")
    ] = None,
    pii_substitution: Annotated[
        str | None,
        typer.Option(help="With --redact-pii: type ([PHONE]), mask (####) or hash."),
    ] = None,
    redact_audio: Annotated[
        bool,
        typer.Option("--redact-audio", help="With --redact-pii: also a redacted audio copy."),
    ] = False,
) -> None:
    """Submit audio files for ingest -> transcribe -> analyze."""
    options = job_options(
        engine=engine,
        model=model,
        language=language,
        vocabulary=vocabulary,
        prompt=prompt,
        speakers=speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        channels=channels,
        channel_labels=channel_labels,
        redact_pii=redact_pii or None,
        pii_types=pii_types,
        pii_substitution=pii_substitution,
        redact_audio=redact_audio or None,
    )
    check_services()
    rows = submit_paths(paths, user=user, force=force, options=options)
    if not rows:
        die("no audio files found in the given paths")
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
                row["id"] or "-",
                shown(row["file_name"]),
                row["status"],
                shown(row["error_message"] or ""),
            )
        out.print(table)
    # A duplicate is unqueued only when its earlier row still waits and the re-send failed.
    if any(not row["queued"] for row in rows if row["status"] in ("pending", "duplicate")):
        from workers.submit import BROKER_DOWN

        err.print(f"[bold red]error:[/] {BROKER_DOWN}")
        raise typer.Exit(EXIT_SERVICE)
    bad = {"failed", "rejected"} | ({"pending", "processing"} if wait else set())
    if any(row["status"] in bad for row in rows):
        raise typer.Exit(EXIT_FILE_FAILED)


def wait_for(ids: list[str], *, timeout: float, live: bool) -> dict[str, dict[str, Any]]:
    """Poll the rows until each is terminal (or the timeout passes), showing progress."""
    from rich.live import Live

    from db.models import TERMINAL_STATUSES
    from pipeline import jobs

    deadline = time.monotonic() + timeout if timeout > 0 else None
    started = time.monotonic()
    wanted = [uuid.UUID(i) for i in ids]
    state: dict[str, dict[str, Any]] = {}

    def poll() -> None:
        with uow() as session:
            for file_id, st in jobs.states(session, wanted).items():
                state[str(file_id)] = {
                    "status": st.status,
                    "stage": st.stage,
                    "error_message": st.error_message,
                }

    def render() -> Table:
        table = Table("id", "stage", "status", "elapsed")
        for file_id in ids:
            row = state.get(file_id, {})
            table.add_row(
                file_id[:8],
                shown(row.get("stage", "?")),
                shown(row.get("status", "?")),
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
            if all(state.get(i, {}).get("status") in TERMINAL_STATUSES for i in ids):
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return {
        k: {"status": v["status"], "error_message": v["error_message"]} for k, v in state.items()
    }


# --- inspection -----------------------------------------------------------------------------


def file_report(file_id: uuid.UUID, *, redacted: bool = False) -> dict[str, Any] | None:
    """Everything about one file: columns, stage timings, latest transcription, its analyses.

    ``redacted``: the redacted form of a ``redact_pii`` job (docs/call-intelligence.md); a
    file without redaction is shown as it is. The CLI runs as the operator, who may read both.
    """
    from sqlalchemy import inspect as sa_inspect

    from db.analyses import analyses_for
    from db.models import AudioFile
    from db.redactions import redaction_of
    from db.transcripts import latest_transcription
    from pipeline.export import apply_redaction, normalise_segments, redaction_summary

    with uow() as session:
        row = session.get(AudioFile, file_id)
        if row is None:
            return None
        report: dict[str, Any] = {
            attr.key.rstrip("_"): jsonable(getattr(row, attr.key))
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
                "confidence_score": jsonable(version.confidence_score),
                "engine": version.engine,
                "engine_version": version.engine_version,
                "model": version.model_name,
                "word_count": version.word_count,
                "processing_time_seconds": jsonable(version.processing_time_seconds),
                # Call audio: speakers, channel plan, languages, guard (docs/call-audio.md).
                "speakers": (version.metadata_.get("speakers") or {}).get("labels", []),
                "channels": version.metadata_.get("channels"),
                "languages": version.metadata_.get("languages", {}),
                "metadata": version.metadata_,
                "segments": normalise_segments(version.segments, version.language_code),
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
            found = redaction_of(session, version.id)
            report["redaction"] = redaction_summary(found)
            if redacted and found is not None:
                report = apply_redaction(report, found)
    return report


@app.command()
def show(
    file_id: Annotated[str, typer.Argument(help="Audio file id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    versions: Annotated[
        bool, typer.Option("--versions", help="Also list every transcription version.")
    ] = False,
    redacted: Annotated[
        bool, typer.Option("--redacted", help="The redacted transcript (redact-pii jobs).")
    ] = False,
) -> None:
    """Status, metadata, stage timings, latest transcript and analyses of one file."""
    check_services()
    report = file_report(parse_id(file_id), redacted=redacted)
    if report is None:
        die(f"no audio file {file_id}")
    if versions:
        from db.transcripts import list_versions

        with uow() as session:
            report["versions"] = [
                {
                    "version": v.version,
                    "is_latest": v.is_latest,
                    "engine": v.engine,
                    "model": v.model_name,
                    "language_code": v.language_code,
                    "confidence_score": jsonable(v.confidence_score),
                    "created_at": jsonable(v.created_at),
                }
                for v in list_versions(session, parse_id(file_id))
            ]
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    print_report(report)
    for v in report.get("versions", []):
        latest = " (latest)" if v["is_latest"] else ""
        out.print(
            f"  v{v['version']}{latest}: {shown(v['engine'])} {shown(v['model'])}, "
            f"{shown(v['language_code'])}, confidence {v['confidence_score']}, {v['created_at']}"
        )


def print_report(report: dict[str, Any] | str) -> None:
    """Human-readable view of :func:`file_report` (or of the file with that id)."""
    if isinstance(report, str):
        found = file_report(parse_id(report))
        if found is None:
            die(f"no audio file {report}")
        report = found
    table = Table(show_header=False, box=None, title=f"[bold]{shown(report['file_name'])}")
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
        table.add_row(f"[bold]{key}", shown(report.get(key)))
    timings = report["stage_seconds"]
    table.add_row(
        "[bold]stage seconds", shown(", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    )
    out.print(table)
    if report["transcription"]:
        t = report["transcription"]
        about = (
            f"{t['language_code']}, confidence {t['confidence_score']}, {t['engine']} "
            f"{t['engine_version']}, model {t['model']}"
        )
        if t.get("redacted"):
            about += ", redacted"
        elif report.get("redaction"):
            about += ", unredacted (--redacted for the redacted form)"
        out.print(f"[bold]transcript v{t['version']}[/] ({shown(about)}):")
        out.print(f"  {shown(t['text'])}", highlight=False)
    for analysis in report["analyses"]:
        kind, model = shown(analysis["analysis_type"]), shown(analysis["model_name"])
        out.print(f"[bold]{kind}[/] ({model}):")
        line = _analysis_line(analysis["analysis_type"], analysis["result"])
        out.print(shown(line), highlight=False)


def _analysis_line(kind: str, result: dict[str, Any]) -> str:
    if kind == "sentiment":
        overall = result["overall"]
        count = len(result["segments"])
        return f"  {overall['label']} ({overall['score']:+.2f}) over {count} segments"
    if kind == "summary":
        return f"  ({result['note']})" if result.get("too_short") else f"  {result['summary']}"
    if kind == "keywords":
        return "  " + ", ".join(k["keyword"] for k in result["keywords"])
    if kind == "entities":
        return "  " + ", ".join(f"{e['text']} ({e['label']})" for e in result["entities"])
    if kind == "pii":
        counts = ", ".join(f"{n} {t}" for t, n in result["counts"].items()) or "none found"
        return f"  {counts}; redacted: {result['redacted_text']}"
    if kind == "chapters":
        return "\n".join(
            f"  {c['start']:7.1f}-{c['end']:7.1f}s  {c['headline']}: {c['summary']}"
            for c in result["chapters"]
        )
    if kind == "topics":
        labels = ", ".join(f"{t['label']} {t['score']:.2f}" for t in result["call"]["labels"])
        return f"  {labels or 'no topic above the threshold'}"
    if kind == "llm_summary":
        head = f"  [{result['source']}] {result['summary']}"
        if result.get("fallback_reason"):
            head += f"\n  (fallback: {result['fallback_reason']})"
        items = "".join(f"\n  - {item}" for item in result.get("action_items", []))
        return head + items
    if kind == "conversation":
        talk = ", ".join(
            f"{who} {s['talk_ratio']:.0%} ({s['words_per_minute']:.0f} wpm, "
            f"{s['sentiment']['label']})"
            for who, s in result["speakers"].items()
        )
        return (
            f"  {talk}; overlap {result['overlap_seconds']:.1f} s, "
            f"{result['interruptions']} interruption(s), {result['turns']} turns, "
            f"silence {result['silence_share']:.0%}"
        )
    return f"  {json.dumps(result)[:200]}"


def print_queue_stats() -> None:
    """The spec's processing-queue query as a table."""
    from db.monitoring import processing_queue

    with uow() as session:
        rows = processing_queue(session)
    table = Table("status", "count", "avg wait (s)", title="processing queue")
    for row in rows:
        table.add_row(shown(row.status), str(row.count), f"{row.avg_wait_seconds:.1f}")
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

    check_services()
    parsed = parse_id(file_id)
    try:
        with uow() as session:
            queued = request_retranscription(session, parsed, engine=engine, model=model)
    except LookupError as error:
        die(str(error))
    if not queued:
        die(f"file {file_id} is still being processed; try again when it is finished")
    transcribe.delay(str(parsed))
    out.print(f"queued re-transcription of {shown(file_id)}")
