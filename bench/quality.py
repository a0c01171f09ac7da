"""Benchmark 8: transcription quality (WER, normalised by :mod:`bench.wer`).

Per engine and model on the corpus (the same in-process runs the speed tables use), and through
the re-transcription path: one file through a real worker (version 1, the default engine), then
``request_retranscription`` + the ``transcribe`` message exactly as ``teleai retranscribe`` does,
once with openai-whisper and once with the base model. Every version must stay, exactly one must
be the latest, and each must get its own analyses.
"""

from __future__ import annotations

import dataclasses
import math

from bench.context import Context
from bench.engine_compare import default_config
from bench.engines import OPENAI, EngineConfig
from bench.overhead import run_through_pipeline
from bench.results import Section, Table, Target
from bench.services import Pipeline, completed, pipeline_services, running_worker
from bench.wer import word_error_rate
from db.analyses import analyses_for
from db.engine import unit_of_work
from db.transcripts import list_versions
from pipeline.runner import request_retranscription
from workers.process import ALL_QUEUES

MODELS = ("tiny.en", "base")
RETRANSCRIPTIONS = ((OPENAI, None), (None, "base"))


def _configs() -> list[EngineConfig]:
    configs = []
    for model in MODELS:
        fw = default_config(model)
        configs += [fw, dataclasses.replace(fw, engine=OPENAI, compute_type="float32")]
    return configs


def corpus_table(ctx: Context) -> tuple[Table, dict[str, dict[str, float | None]]]:
    files = ctx.sizes.audio_files
    table = Table("WER per engine and model (in-process runs)", ["configuration", *files, "pooled"])
    data: dict[str, dict[str, float | None]] = {}
    for config in _configs():
        cells: list[float | None] = []
        errors = words = 0.0
        for f in files:
            slow = config.engine == OPENAI and (
                ctx.file(f).seconds > 60 or (ctx.quick and f != files[0])
            )
            found = ctx.known_run(config, f)
            if found is None and slow:
                cells.append(None)  # not run (see the real-time factor notes)
                continue
            result = found or ctx.run(config, f)
            cells.append(result.wer)
            errors += result.wer * ctx.file(f).words
            words += ctx.file(f).words
        ctx.release_engine()
        table.add(config.label, *cells, errors / words if words else math.nan)
        data[config.label] = dict(zip(files, cells, strict=True))
    return table, data


def retranscription(ctx: Context, pipe: Pipeline, file: str) -> tuple[Table, list[str]]:
    """v1 through the pipeline, then one new version per entry of RETRANSCRIPTIONS."""
    path = ctx.file(file).path
    reference = ctx.file(file).reference
    first = run_through_pipeline(pipe, path)
    for engine, model in RETRANSCRIPTIONS:
        with unit_of_work(pipe.engine) as session:
            queued = request_retranscription(session, first.file_id, engine=engine, model=model)
        if not queued:
            raise RuntimeError("re-transcription was refused for a completed file")
        pipe.send("transcribe", first.file_id)
        pipe.wait([first.file_id], completed, timeout=1800)
    table = Table(
        f"Re-transcription path ({file}): versions of one file through the worker",
        ["version", "engine", "model", "is latest", "WER", "analyses", "words"],
    )
    problems = []
    with unit_of_work(pipe.engine) as session:
        versions = list_versions(session, first.file_id)
        for v in versions:
            count = len(analyses_for(session, v.id))
            table.add(
                v.version,
                v.engine,
                v.model_name,
                v.is_latest,
                word_error_rate(reference, v.transcription_text),
                count,
                v.word_count,
            )
            if count < 4:
                problems.append(f"version {v.version} has {count} analyses, expected 4")
    if [v.version for v in versions] != [1, 2, 3]:
        problems.append(f"versions {[v.version for v in versions]}, expected [1, 2, 3]")
    if [v.is_latest for v in versions] != [False, False, True]:
        problems.append("exactly the newest version should be the latest one")
    return table, problems


def run(ctx: Context) -> Section:
    section = Section("quality", "8. Quality (WER)")
    table, data = corpus_table(ctx)
    section.tables.append(table)
    file = "10s" if ctx.quick else "60s"
    with pipeline_services(ctx.services, "quality") as pipe:
        env = pipe.env(whisper_cpu_threads=ctx.threads)
        with running_worker(
            env,
            ctx.services.work_dir / "logs",
            queues=ALL_QUEUES,
            concurrency=1,
            name="quality",
        ):
            versions, problems = retranscription(ctx, pipe, file)
    section.tables.append(versions)
    section.targets.append(
        Target(
            "re-transcription keeps history",
            "3 versions, newest latest, 4 analyses each",
            "ok" if not problems else "; ".join(problems),
            not problems,
        )
    )
    section.notes.append(
        "WER = (substitutions + deletions + insertions) / reference words after "
        "bench.wer.normalize_text (case, punctuation, apostrophes). The corpus is "
        "espeak-ng speech: easy for Whisper, so absolute WER is low; differences are what count."
    )
    section.data = {"corpus": data}
    return section
