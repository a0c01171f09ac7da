"""Benchmark 4: transcription throughput with 1, 2, … worker processes, and cold start.

A backlog of files is ingested first (an ingest-only worker), so the ``transcribe`` queue holds
the whole backlog; then a transcribe-only worker with N processes starts, the cores split among
them through ``TELEAI_WHISPER_CPU_THREADS`` (at least one thread each), and the clock runs from
its ``ready`` until every file has been handed to the (unconsumed) ``analyze`` queue. Cold start
is the time from launching a transcribe worker to its first finished file.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.results import Section, Table, Target, ratio
from bench.services import (
    Pipeline,
    at_stage,
    pipeline_services,
    running_worker,
    start_worker,
    stop_worker,
)

COLD_START_TARGET = 3.0


def cold_start(ctx: Context, pipe: Pipeline, path: Path, log_dir: Path) -> dict[str, float | None]:
    """Launch a transcribe worker with one file queued; seconds until that file is done."""
    file_id = pipe.submit(path)
    pipe.wait([file_id], at_stage("transcribe"), timeout=120)
    worker = start_worker(
        pipe.env(whisper_cpu_threads=ctx.threads),
        log_dir,
        queues="transcribe",
        concurrency=1,
        name="cold-start",
    )
    try:
        (row,) = pipe.wait([file_id], at_stage("analyze"), timeout=300, poll=0.02)
        done = time.monotonic()
    finally:
        stop_worker(worker)
    stages = row.metadata_.get("stage_seconds", {})
    return {
        "to_first_file": done - worker.started,
        "to_ready": worker.ready - worker.started,
        "to_warm": worker.warm - worker.started,
        "model_load_and_warmup": worker.warmup_seconds(),
        "file_transcribe_stage": stages.get("transcribe_stage"),
    }


def backlog(
    ctx: Context, pipe: Pipeline, path: Path, processes: int, log_dir: Path
) -> dict[str, Any]:
    """Queue ``scaling_files`` files, then drain them with a ``processes``-process worker."""
    count = ctx.sizes.scaling_files
    ids = [pipe.submit(path) for _ in range(count)]
    rows = pipe.wait(ids, at_stage("transcribe"), timeout=600, poll=0.2)
    pipe.purge()  # the ingest worker's transcribe messages: re-sent below once workers are warm
    audio = sum(float(r.duration_seconds or 0) for r in rows)
    threads = max(1, ctx.threads // processes)
    env = pipe.env(whisper_cpu_threads=threads)
    with running_worker(
        env, log_dir, queues="transcribe", concurrency=processes, name=f"scaling-{processes}"
    ):
        started = time.monotonic()
        for file_id in ids:
            pipe.send("transcribe", file_id)
        rows = pipe.wait(ids, at_stage("analyze"), timeout=1800, poll=0.2)
        seconds = time.monotonic() - started
    per_file = [float(r.metadata_["stage_seconds"]["transcribe"]) for r in rows]
    return {
        "processes": processes,
        "threads_each": threads,
        "files": count,
        "audio_seconds": audio,
        "seconds": seconds,
        "throughput": audio / seconds,
        "median_file_transcribe": statistics.median(per_file),
    }


def run(ctx: Context) -> Section:
    section = Section("scaling", "4. Scaling: transcribe processes on a backlog; cold start")
    path = ctx.file("10s").path
    log_dir = ctx.services.work_dir / "logs"
    with (
        pipeline_services(ctx.services, "scaling") as pipe,
        running_worker(pipe.env(), log_dir, queues="ingest", concurrency=1, name="scaling-ingest"),
    ):
        cold = cold_start(ctx, pipe, ctx.file("clip").path, log_dir)
        results = [backlog(ctx, pipe, path, n, log_dir) for n in ctx.sizes.scaling_processes]
    base = results[0]["throughput"]
    table = Table(
        f"{ctx.sizes.scaling_files} × 10 s files (tiny.en int8), {ctx.threads} cores",
        [
            "processes",
            "threads each",
            "wall s",
            "audio s / s",
            "vs 1 process",
            "per-process efficiency",
            "median engine s per file",
        ],
    )
    for r in results:
        speedup = ratio(r["throughput"], base)
        table.add(
            r["processes"],
            r["threads_each"],
            r["seconds"],
            r["throughput"],
            speedup,
            speedup / r["processes"],
            r["median_file_transcribe"],
        )
    section.tables.append(table)
    section.notes.append(_where_it_stops(results, ctx.threads))
    cold_table = Table(
        "Cold start (transcribe worker launched with one 5 s file queued; seconds from launch)",
        [
            "ready (Celery up)",
            "models loaded",
            "model load + warm-up (logged)",
            "first file done",
            "the file's transcribe stage",
        ],
    )
    cold_table.add(
        cold["to_ready"],
        cold["to_warm"],
        cold["model_load_and_warmup"],
        cold["to_first_file"],
        cold["file_transcribe_stage"],
    )
    section.tables.append(cold_table)
    first = float(cold["to_first_file"] or 0)
    load = cold["model_load_and_warmup"]
    section.targets.append(
        Target(
            "cold start: worker launch -> first finished file",
            f"< {COLD_START_TARGET:.0f} s",
            f"{first:.2f} s (model load + warm-up {load if load is None else round(load, 2)} s)",
            first < COLD_START_TARGET,
            "" if first < COLD_START_TARGET else _cold_cause(cold),
        )
    )
    section.data = {"backlog": results, "cold_start": cold}
    return section


def _where_it_stops(results: list[dict[str, Any]], cores: int) -> str:
    base = results[0]["throughput"]
    steps = [f"{r['processes']} -> {r['throughput'] / base:.2f}×" for r in results]
    best = max(results, key=lambda r: r["throughput"])
    return (
        f"Throughput vs 1 process: {', '.join(steps)}. Best at {best['processes']} processes; "
        f"with {cores} cores, processes beyond the core count only add contention "
        "(each process already runs at least one inference thread)."
    )


def _cold_cause(cold: dict[str, float | None]) -> str:
    warm = float(cold["to_warm"] or 0)
    load = float(cold["model_load_and_warmup"] or 0)
    return (
        f"{warm - load:.1f} s of it is Python/Celery start-up and imports before the model "
        f"loads ({load:.2f} s); then the file itself took {cold['file_transcribe_stage']} s"
    )
