"""Benchmark 3: real-time factor (audio seconds per wall second) per engine, model and length.

Engine rows are in-process runs of the pipeline's engine wrappers; the target row is the whole
pipeline (submit -> completed through a real worker, from the overhead benchmark's runs when it
ran in the same invocation). openai-whisper is not run on the 10-minute file: at its measured
speed that one file would take most of the run's time budget (the estimate is printed instead).
"""

from __future__ import annotations

import dataclasses

from bench.context import Context
from bench.engine_compare import default_config
from bench.engines import OPENAI
from bench.overhead import PipelineRun, pipeline_passes
from bench.results import Section, Table, Target

PIPELINE_TARGET = 8.0
MODELS = ("tiny.en", "base")


def _pipeline_runs(ctx: Context) -> dict[str, list[PipelineRun]]:
    runs = ctx.shared.get("pipeline_runs")
    if runs is None:
        runs = pipeline_passes(ctx, ctx.sizes.audio_files, repeats=1)["pipeline"]
        ctx.shared["pipeline_runs"] = runs
    return dict(runs)


def run(ctx: Context) -> Section:
    section = Section("rtf", "3. Real-time factor (× real time = audio s / wall s)")
    files = ctx.sizes.audio_files
    slow_files = tuple(f for f in files if ctx.file(f).seconds <= 60)
    if ctx.quick:
        slow_files = slow_files[:1]
    table = Table(
        f"In-process engine runs ({ctx.threads} threads)",
        ["engine", "model", *files],
    )
    data: dict[str, dict[str, float | None]] = {}
    for model in MODELS:
        fw = default_config(model)
        ow = dataclasses.replace(fw, engine=OPENAI, compute_type="float32")
        for config, chosen in ((fw, files), (ow, slow_files)):
            cells: list[float | None] = []
            for f in files:
                cells.append(ctx.run(config, f).rtf if f in chosen else None)
            ctx.release_engine()
            kind = "faster-whisper int8" if config.engine != OPENAI else "openai-whisper fp32"
            table.add(kind, model, *cells)
            data[f"{kind} {model}"] = dict(zip(files, cells, strict=True))
            skipped = [f for f in files if f not in chosen]
            if skipped and cells[files.index(chosen[-1])]:
                rtf = cells[files.index(chosen[-1])] or 0.0
                estimate = ", ".join(f"{f} ≈ {ctx.file(f).seconds / rtf:.0f} s" for f in skipped)
                section.notes.append(
                    f"{kind} {model} not run on {', '.join(skipped)} (scaled down to fit the "
                    f"run's time budget); at its {chosen[-1]} speed that would take {estimate}."
                )
    section.tables.append(table)

    pipeline = _pipeline_runs(ctx)
    whole = Table(
        "Whole pipeline, tiny.en int8 (submit -> completed, one worker process)",
        ["file", "audio s", "wall s", "× real time", "transcribe stage s", "analyze s"],
    )
    for f, runs in pipeline.items():
        best = sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]
        rtf = best.audio_seconds / best.wall
        whole.add(
            f,
            best.audio_seconds,
            best.wall,
            rtf,
            best.stage("transcribe_stage"),
            best.stage("analyze"),
        )
        data[f"pipeline tiny.en {f}"] = {"rtf": rtf, "wall": best.wall}
        met = rtf >= PIPELINE_TARGET
        section.targets.append(
            Target(
                f"tiny.en int8 whole pipeline, {f}",
                f"≥ {PIPELINE_TARGET:.0f}× real time on {ctx.threads} cores",
                f"{rtf:.1f}×",
                met,
                "" if met else _shortfall(best),
            )
        )
    section.tables.append(whole)
    section.data = data
    return section


def _shortfall(run: PipelineRun) -> str:
    needed = run.audio_seconds / PIPELINE_TARGET
    over = run.wall - needed
    parts = {
        "transcription": run.stage("transcribe"),
        "analyses": run.stage("analyze"),
        "queue/hand-over": run.queue,
        "decode": run.stage("decode"),
    }
    biggest = max(parts, key=lambda k: parts[k])
    return (
        f"{over:.1f} s over the {needed:.1f} s budget; largest part: {biggest} "
        f"{parts[biggest]:.1f} s"
    )
