"""Run the selected benchmarks, print each as it finishes, and write the results files.

A benchmark that fails is reported as failed in its section (with the error) and the run goes
on: one broken piece should not cost the numbers of the others.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from sqlalchemy import make_url

from bench import machine
from bench.context import Context, Sizes
from bench.engines import default_decoding
from bench.results import RunReport, Section, print_section, results_stem, write_report
from bench.services import BROKER_DB, RESULT_DB, STALL_SECONDS, ServiceConfig
from db.engine import libpq_url
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
VAR_DIR = REPO / "var" / "bench"

# name -> (module, one-line description); run in this order (later ones reuse earlier runs).
BENCHMARKS: dict[str, tuple[str, str]] = {
    "overhead": ("bench.overhead", "bare faster-whisper vs the full chain through a worker"),
    "engines": ("bench.engine_compare", "faster-whisper int8/fp32 vs openai-whisper, beam, VAD"),
    "rtf": ("bench.realtime", "real-time factor per engine, model and file length"),
    "quality": ("bench.quality", "WER per engine/model and of the re-transcription path"),
    "pii": ("bench.pii", "PII recall/precision: espeak-ng sentences through Whisper base"),
    "callaudio": ("bench.callaudio", "DER, WER per language, vocabulary hits, split vs mixed"),
    "scaling": ("bench.scaling", "1 vs N transcribe processes on a backlog; cold start"),
    "coldstart": ("bench.coldstart", "cold start alone: worker launch -> first file done, median"),
    "ingest": ("bench.ingest", "files/s through submit + ingest alone"),
    "memory": ("bench.memory", "worker RSS after load and after many tasks; peak"),
    "longfile": ("bench.longfile", "peak RSS by file length, windowed WER, batched threshold"),
    "longfile4h": ("bench.fourhours", "peak RSS on a four-hour file (hours; only on request)"),
    "db": ("bench.database", "queries and plans on a database filled to scale"),
    "api": ("bench.api", "HTTP API: status reads at scale, 200 uploads at once, a 500 MB upload"),
}


@dataclass(frozen=True)
class Options:
    quick: bool = False
    only: tuple[str, ...] = ()
    results_dir: Path = RESULTS_DIR
    max_load: float | None = None
    max_wait_minutes: float = 40.0
    db_scale: float | None = None
    keep_db: str | None = None
    threads: int | None = None
    work_dir: Path = VAR_DIR


# Run only when named in ``--only``: hours of both cores (the four-hour file), or a row that a
# full run measures already (the cold start, repeated).
ON_REQUEST = frozenset({"longfile4h", "coldstart"})


def selected(only: tuple[str, ...]) -> list[str]:
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in only or (not only and name not in ON_REQUEST)]


def _runner(name: str) -> Callable[[Context], Section]:
    module = importlib.import_module(BENCHMARKS[name][0])
    runner: Callable[[Context], Section] = module.run
    return runner


def run_one(name: str, ctx: Context) -> Section:
    from bench.services import stall_events

    stalls_before = len(stall_events)
    load_start = machine.load_average()
    started = time.perf_counter()
    try:
        section = _runner(name)(ctx)
    except Exception as error:
        section = Section(name, f"{name} (failed)")
        section.error = f"{type(error).__name__}: {error}"
        section.notes.append("traceback: " + " | ".join(traceback.format_exc().splitlines()[-6:]))
    section.seconds = time.perf_counter() - started
    section.load_start, section.load_end = load_start, machine.load_average()
    lost = stall_events[stalls_before:]
    if lost:
        section.notes.append(
            f"{len(lost)} message(s) were lost (Redis flushed or restarted by someone else) and "
            f"re-sent after {STALL_SECONDS:.0f} s without progress; the runs they touch are "
            f"slower than they should be: {'; '.join(lost[:5])}"
        )
    return section


def _program() -> str:
    """How the run was started, for the results: ``python -m bench`` or ``teleai bench``."""
    name = Path(sys.argv[0]).name
    return "python -m bench" if name == "__main__.py" else f"{name} bench"


def _stop_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C, so workers are stopped and databases dropped."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _settings(options: Options, ctx: Context, names: list[str]) -> dict[str, object]:
    beam, vad = default_decoding()
    admin = make_url(ctx.services.admin_url).render_as_string(hide_password=True)
    return {
        "mode": "quick" if options.quick else "full",
        "benchmarks": names,
        "threads (cpu_threads of every engine/worker)": ctx.threads,
        "pipeline defaults (beam, VAD)": f"beam {beam}, VAD {'on' if vad else 'off'}",
        "sizes": dataclasses.asdict(ctx.sizes) | {"db_scale": ctx.db_scale},
        "PostgreSQL (admin)": admin,
        "Redis": f"{ctx.services.redis_base} db {BROKER_DB} (broker), {RESULT_DB} (results)",
        "corpus": str(ctx.corpus_dir),
        "model cache": str(ctx.model_cache_dir),
    }


def run_benchmarks(options: Options, console: Console) -> tuple[RunReport, Path, Path]:
    """The whole run; returns the report and the Markdown and JSON paths written."""
    names = selected(options.only)
    _stop_on_sigterm()
    notes: list[str] = []
    if options.max_load is not None:
        console.print(f"waiting for the 1-min load average to drop below {options.max_load} …")
        notes.append(machine.wait_for_quiet(options.max_load, options.max_wait_minutes))
        console.print(notes[-1])
    started = dt.datetime.now().astimezone()
    services = ServiceConfig.from_env(options.work_dir / "run")
    threads = options.threads or machine.usable_cores()
    ctx = Context(
        quick=options.quick,
        threads=threads,
        services=services,
        corpus_dir=options.work_dir / "corpus",
        model_cache_dir=Settings().model_cache_dir,
        sizes=Sizes.for_mode(options.quick),
        db_scale_override=options.db_scale,
        keep_db=options.keep_db,
    )
    info = machine.describe(libpq_url(services.admin_url), services.broker_url)
    info["load average at start (1/5/15 min)"] = machine.load_average()
    sections = []
    for name in names:
        console.print(f"[bold]running {name}[/]: {BENCHMARKS[name][1]}")
        section = run_one(name, ctx)
        print_section(console, section)
        sections.append(section)
    info["load average at end (1/5/15 min)"] = machine.load_average()
    report = RunReport(
        started_at=started.isoformat(timespec="seconds"),
        finished_at=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=" ".join([_program(), *sys.argv[1:]]),
        machine=info,
        settings=_settings(options, ctx, names),
        sections=sections,
        notes=notes,
    )
    host = socket.gethostname().split(".")[0]
    stem = results_stem(
        started.date().isoformat(), host, quick=options.quick, only=list(options.only)
    )
    markdown, as_json = write_report(report, options.results_dir, stem)
    console.print(f"results: {markdown} and {as_json}")
    return report, markdown, as_json
