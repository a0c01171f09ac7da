"""Benchmark 4b (``--only coldstart``): the scaling benchmark's cold-start row alone, repeated.

Cold start is the time from launching a transcribe worker (one process) with one 5-s file
queued to that file done (handed to ``analyze``), measured as :func:`bench.scaling.cold_start`
does it. One launch is at the mercy of the machine's other jobs, so it runs ``REPEATS`` times
on one database and the median is the figure; every launch's numbers are kept.
"""

from __future__ import annotations

import statistics

from bench.context import Context
from bench.results import Section, Table, Target
from bench.scaling import COLD_START_TARGET, cold_start
from bench.services import pipeline_services, running_worker

REPEATS = 5


def run(ctx: Context) -> Section:
    section = Section("coldstart", "4b. Cold start: worker launch to the first file done")
    log_dir = ctx.services.work_dir / "logs"
    clip = ctx.file("clip").path
    runs = []
    with (
        pipeline_services(ctx.services, "coldstart") as pipe,
        running_worker(pipe.env(), log_dir, queues="ingest", concurrency=1, name="cold-ingest"),
    ):
        for _ in range(1 if ctx.quick else REPEATS):
            # A message the last launch left unacknowledged (its worker is stopped as soon as
            # the file is done) would be the next launch's first delivery: drop it.
            pipe.purge()
            runs.append(cold_start(ctx, pipe, clip, log_dir))
    table = Table(
        "Cold start (transcribe worker launched with one 5 s file queued; seconds from launch)",
        ["run", "ready (Celery up)", "models loaded", "model load + warm-up (logged)",
         "first file done", "the file's transcribe stage"],
    )  # fmt: skip
    for index, cold in enumerate(runs, 1):
        table.add(
            index,
            cold["to_ready"],
            cold["to_warm"],
            cold["model_load_and_warmup"],
            cold["to_first_file"],
            cold["file_transcribe_stage"],
        )
    section.tables.append(table)
    firsts = [float(c["to_first_file"] or 0) for c in runs]
    median = statistics.median(firsts)
    section.targets.append(
        Target(
            "cold start: worker launch -> first finished file (median)",
            f"< {COLD_START_TARGET:.0f} s",
            f"{median:.2f} s (runs: {', '.join(f'{f:.2f}' for f in firsts)})",
            median < COLD_START_TARGET,
        )
    )
    section.data = {"runs": runs}
    return section
