"""Benchmark 5: files per second through submission and the ingest stage alone.

Many small, distinct WAV files (distinct bytes: the same bytes from the same owner would be
reported as duplicates) are submitted exactly as ``teleai ingest`` does, one transaction per
file and the ``ingest`` message after the commit, while an ingest-only worker (one process per
core) validates and probes them. Nobody consumes ``transcribe``, so the clock stops when every
row is queued there.
"""

from __future__ import annotations

import statistics
import time

from bench.context import Context
from bench.corpus import write_tone_wavs
from bench.results import Section, Table, Target
from bench.services import at_stage, pipeline_services, running_worker

TARGET_FILES_PER_SECOND = 50.0


def run(ctx: Context) -> Section:
    section = Section("ingest", "5. Ingest throughput (submit + ingest stage, no transcription)")
    count = ctx.sizes.ingest_files
    files = write_tone_wavs(ctx.services.work_dir / "tones", count)
    with (
        pipeline_services(ctx.services, "ingest") as pipe,
        running_worker(
            pipe.env(),
            ctx.services.work_dir / "logs",
            queues="ingest",
            concurrency=ctx.threads,
            name="ingest-bench",
        ),
    ):
        started = time.perf_counter()
        ids = [pipe.submit(path, force=False) for path in files]
        submitted = time.perf_counter() - started
        rows = pipe.wait(ids, at_stage("transcribe"), timeout=1200, poll=0.1)
        total = time.perf_counter() - started
    stage = [float(r.metadata_["stage_seconds"]["ingest"]) for r in rows]
    rate = count / total
    table = Table(
        f"{count} distinct 0.5 s WAV files, ingest worker with {ctx.threads} processes",
        [
            "files",
            "submit s",
            "submit files/s",
            "submit + ingest s",
            "files/s",
            "median ingest stage ms",
            "p95 ingest stage ms",
        ],
    )
    p95 = statistics.quantiles(stage, n=20)[-1] if len(stage) >= 20 else max(stage)
    table.add(
        count,
        submitted,
        count / submitted,
        total,
        rate,
        1000 * statistics.median(stage),
        1000 * p95,
    )
    section.tables.append(table)
    met = rate >= TARGET_FILES_PER_SECOND
    section.targets.append(
        Target(
            "ingest throughput",
            f"≥ {TARGET_FILES_PER_SECOND:.0f} files/s",
            f"{rate:.0f} files/s",
            met,
            ""
            if met
            else f"submission alone runs at {count / submitted:.0f} files/s "
            "(copy + SHA-256 + one transaction per file) and shares the cores with the worker",
        )
    )
    section.notes.append(
        "Submission runs in this process (as the CLI would) on the same cores as the worker; "
        "the worker's claim, validate, probe and hand-over are three short transactions per file."
    )
    section.data = {
        "files": count,
        "submit_seconds": submitted,
        "total_seconds": total,
        "stage_seconds": stage,
    }
    return section
