"""Benchmark 5: files per second through submission and the ingest stage alone.

Many small, distinct WAV files (distinct bytes: the same bytes from the same owner would be
reported as duplicates) are submitted by a separate process (:mod:`bench.submitter`) with the
workers' environment, while an ingest-only worker (one process per core) validates and
probes them. Nobody consumes ``transcribe``, so the clock, started at the first submission,
stops when every row is queued there. Three rows, each on a fresh database and a fresh
worker, the same files: the one-file path (``submit`` per file, one transaction and one
message each) as the same-run baseline; ``submit_many`` with one ingest message per file
(a transaction per 200 files, their messages over one connection after its commit); then
``submit_many`` as ``teleai ingest FOLDER`` runs it, several files to an ingest message
(``teleai.ingest_batch``: one delivery, one claim and one hand-over statement per batch).

Progress is polled with one ``count(*)`` every 50 ms, not by reading every row: the poll
shares the two cores with what is measured.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.context import Context
from bench.corpus import write_tone_wavs
from bench.results import Section, Table, Target
from bench.services import REPO, Pipeline, pipeline_services, running_worker
from db.engine import unit_of_work
from db.models import AudioFile

TARGET_FILES_PER_SECOND = 100.0
MODES = ("single", "many-unbatched", "many")


def _counts(pipe: Pipeline) -> tuple[int, int]:
    """(rows queued for transcription, failed rows)."""
    with unit_of_work(pipe.engine) as session:
        done, failed = session.execute(
            select(
                func.count().filter(AudioFile.stage == "transcribe"),
                func.count().filter(AudioFile.status == "failed"),
            )
        ).one()
    return int(done), int(failed)


def _one_row(ctx: Context, mode: str, folder: Path, count: int) -> dict[str, Any]:
    with (
        pipeline_services(ctx.services, f"ingest_{mode}") as pipe,
        running_worker(
            pipe.env(),
            ctx.services.work_dir / "logs",
            queues="ingest",
            concurrency=ctx.threads,
            name=f"ingest-bench-{mode}",
        ),
    ):
        log = ctx.services.work_dir / "logs" / f"submitter-{mode}.log"
        with log.open("w") as sink:  # a file, not a pipe: a full pipe would stall the child
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.submitter", mode, str(folder)],
                env=pipe.env(),
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 1200
        finished_at = float("nan")
        while True:
            done, failed = _counts(pipe)
            if failed:
                raise RuntimeError(f"{failed} file(s) failed at ingest")
            if done >= count:
                finished_at = time.time()
                break
            if time.monotonic() > deadline:
                child.kill()
                raise TimeoutError(f"{count - done} of {count} files not at transcribe in time")
            if child.poll() not in (None, 0):
                break  # reported below with its stderr
            time.sleep(0.05)
        child.wait(timeout=120)
        out = log.read_text(errors="replace")
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            raise RuntimeError(f"submitter failed: {out[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
        with unit_of_work(pipe.engine) as session:
            stage = [
                float(m["stage_seconds"]["ingest"])
                for m in session.scalars(select(AudioFile.metadata_))
            ]
    total = finished_at - float(result["started_at"])
    return {
        "mode": mode,
        "files": count,
        "submit_seconds": float(result["seconds"]),
        "total_seconds": total,
        "rate": count / total,
        "stage_seconds": stage,
        "outcomes": {k: v for k, v in result.items() if k not in ("started_at", "seconds")},
    }


def run(ctx: Context) -> Section:
    section = Section("ingest", "5. Ingest throughput (submit + ingest stage, no transcription)")
    count = ctx.sizes.ingest_files
    folder = ctx.services.work_dir / "tones"
    write_tone_wavs(folder, count)
    rows = [_one_row(ctx, mode, folder, count) for mode in MODES]
    table = Table(
        f"{count} distinct 0.5 s WAV files, ingest worker with {ctx.threads} processes; "
        "fresh database and worker per row",
        [
            "submit path",
            "submit s",
            "submit files/s",
            "submit + ingest s",
            "files/s",
            "median ingest stage ms",
            "p95 ingest stage ms",
        ],
    )
    for row in rows:
        stage = row["stage_seconds"]
        p95 = statistics.quantiles(stage, n=20)[-1] if len(stage) >= 20 else max(stage)
        table.add(
            {
                "single": "submit() per file",
                "many-unbatched": "submit_many(), one ingest message per file",
                "many": "submit_many(), batched ingest messages (teleai ingest)",
            }[row["mode"]],
            row["submit_seconds"],
            count / row["submit_seconds"],
            row["total_seconds"],
            row["rate"],
            1000 * statistics.median(stage),
            1000 * p95,
        )
    section.tables.append(table)
    single, unbatched, many = rows
    rate = many["rate"]
    met = rate >= TARGET_FILES_PER_SECOND
    section.targets.append(
        Target(
            "ingest throughput (teleai ingest of a folder)",
            f"≥ {TARGET_FILES_PER_SECOND:.0f} files/s",
            f"{rate:.0f} files/s ({rate / unbatched['rate']:.2f}× one message per file, "
            f"{unbatched['rate']:.0f} files/s, and {rate / single['rate']:.2f}× the one-file "
            f"path's {single['rate']:.0f} files/s in the same run)",
            met,
            ""
            if met
            else f"batched submission alone runs at {count / many['submit_seconds']:.0f} files/s "
            "and shares the cores with the worker",
        )
    )
    section.notes.append(
        "Submission runs in its own process (as the CLI would) on the same cores as the "
        "worker. Per ingest message the worker makes one claim statement and one fenced "
        "hand-over statement, whatever the number of files in it."
    )
    section.data = {"rows": rows}
    return section
