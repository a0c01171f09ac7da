"""Benchmark 1: what the pipeline costs on top of the bare faster-whisper call.

(a) *bare*: in this process, ``faster_whisper.decode_audio`` plus ``WhisperModel.transcribe``
with the pipeline's decoding options, segments consumed. (b) *pipeline*: the same file through
a real Celery worker (one process, all three queues, the same number of threads): submit ->
ingest -> transcribe -> analyze -> completed, on a fresh database. Runs alternate a/b/a/b so
drifting machine load hits both alike. The worker's own ``metadata.stage_seconds`` give the
per-stage breakdown; whatever the wall time holds beyond submit and the stages is queue latency
plus claim/hand-over transactions.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.engines import default_decoding
from bench.results import Section, Table, Target, ratio
from bench.services import Pipeline, completed, pipeline_services, running_worker
from bench.wer import word_error_rate
from db.engine import unit_of_work
from db.transcripts import latest_transcription
from pipeline.transcription.faster import (
    CONDITION_ON_PREVIOUS_TEXT,
    LOG_PROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
)
from pipeline.transcription.model_files import resolve_ct2_model
from workers.process import ALL_QUEUES

TRANSCRIPTION_TARGET = 1.10
ANALYSIS_SHARE_TARGET = 0.15
ANALYSES = ("sentiment", "summary", "keywords", "entities")


@dataclass(frozen=True)
class BareRun:
    decode: float
    transcribe: float
    text: str

    @property
    def total(self) -> float:
        return self.decode + self.transcribe


@dataclass(frozen=True)
class PipelineRun:
    file_id: uuid.UUID
    audio_seconds: float
    submit: float
    wall: float  # submit start -> processing_completed_at
    stages: dict[str, float]
    text: str

    def stage(self, name: str) -> float:
        return float(self.stages.get(name, 0.0))

    @property
    def analyses(self) -> float:
        return self.stage("analyze")

    @property
    def in_stages(self) -> float:
        """Seconds inside the stages (work and their result writes)."""
        names = ("ingest", "transcribe_stage", "transcribe_db_write", "analyze", "analyze_db_write")
        return sum(self.stage(n) for n in names)

    @property
    def queue(self) -> float:
        return max(0.0, self.wall - self.submit - self.in_stages)


class BareWhisper:
    """The reference: faster-whisper as a library user would call it, nothing around it."""

    def __init__(self, model: str, threads: int, cache_dir: Path) -> None:
        from faster_whisper import WhisperModel

        path, _ = resolve_ct2_model(model, cache_dir, hub_downloads=False)
        self.beam_size, self.vad = default_decoding()
        self.model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads)

    def run(self, path: Path) -> BareRun:
        from faster_whisper import decode_audio

        t0 = time.perf_counter()
        audio = decode_audio(str(path))
        t1 = time.perf_counter()
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            beam_size=self.beam_size,
            vad_filter=self.vad,
            word_timestamps=True,
            condition_on_previous_text=CONDITION_ON_PREVIOUS_TEXT,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            log_prob_threshold=LOG_PROB_THRESHOLD,
        )
        text = " ".join(t for t in (s.text.strip() for s in segments) if t)
        return BareRun(t1 - t0, time.perf_counter() - t1, text)


def run_through_pipeline(pipe: Pipeline, path: Path, *, timeout: float = 1800) -> PipelineRun:
    """Submit one file and wait until it is completed; timings from the row."""
    started = time.time()
    t0 = time.perf_counter()
    file_id = pipe.submit(path)
    submit = time.perf_counter() - t0
    # Slow polling: the row's own timestamps give the wall time, and frequent queries would
    # steal CPU from the 2-thread engine (a descheduled thread stalls both).
    (row,) = pipe.wait([file_id], completed, timeout=timeout, poll=0.5)
    assert row.processing_completed_at is not None
    with unit_of_work(pipe.engine) as session:
        version = latest_transcription(session, file_id)
        text = version.transcription_text if version is not None else ""
    return PipelineRun(
        file_id=file_id,
        audio_seconds=float(row.duration_seconds or 0),
        submit=submit,
        wall=row.processing_completed_at.timestamp() - started,
        stages={k: float(v) for k, v in row.metadata_.get("stage_seconds", {}).items()},
        text=text,
    )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pipeline_passes(ctx: Context, files: tuple[str, ...], repeats: int) -> dict[str, Any]:
    """Alternate bare and pipeline runs of each file; returns both lists per file."""
    bare_runs: dict[str, list[BareRun]] = {f: [] for f in files}
    pipe_runs: dict[str, list[PipelineRun]] = {f: [] for f in files}
    with pipeline_services(ctx.services, "overhead") as pipe:
        env = pipe.env(whisper_cpu_threads=ctx.threads)
        logs = ctx.services.work_dir / "logs"
        with running_worker(env, logs, queues=ALL_QUEUES, concurrency=1, name="overhead") as worker:
            bare = BareWhisper("tiny.en", ctx.threads, ctx.model_cache_dir)
            clip = ctx.file("clip").path
            bare.run(clip)  # first calls pay one-off allocations on both sides
            run_through_pipeline(pipe, clip)
            for rep in range(repeats):
                for name in files:
                    if rep and ctx.file(name).seconds > 60:
                        continue  # the long file runs once
                    path = ctx.file(name).path
                    bare_runs[name].append(bare.run(path))
                    pipe_runs[name].append(run_through_pipeline(pipe, path))
            worker_log_tail = worker.log()[-2000:]
    return {"bare": bare_runs, "pipeline": pipe_runs, "log_tail": worker_log_tail}


def _median_run(runs: list[PipelineRun]) -> PipelineRun:
    """The run with the median wall time (its stages are a consistent set)."""
    ordered = sorted(runs, key=lambda r: r.wall)
    return ordered[(len(ordered) - 1) // 2]


def run(ctx: Context) -> Section:
    section = Section("overhead", "1. Pipeline overhead (bare faster-whisper vs real worker)")
    files = ctx.sizes.audio_files
    passes = pipeline_passes(ctx, files, ctx.sizes.pipeline_repeats)
    ctx.shared["pipeline_runs"] = passes["pipeline"]
    ratios = Table(
        "Transcription path and full chain vs bare call (median of runs; seconds)",
        [
            "file",
            "audio s",
            "bare decode+transcribe",
            "pipeline decode+load+transcribe",
            "transcription ratio",
            "bare transcribe",
            "pipeline transcribe",
            "engine-call ratio",
            "full chain wall",
            "full chain / bare",
            "analyses / transcription",
            "WER bare",
            "WER pipeline",
        ],
    )
    stages = Table(
        "Per-stage breakdown of the median pipeline run (seconds)",
        [
            "file",
            "submit",
            "validate",
            "probe",
            "decode",
            "model load",
            "transcribe",
            "DB writes",
            *ANALYSES,
            "queue + hand-over",
            "total wall",
        ],
    )
    data: dict[str, Any] = {}
    for name in files:
        bare = passes["bare"][name]
        runs = passes["pipeline"][name]
        bare_total = _median([b.total for b in bare])
        bare_engine = _median([b.transcribe for b in bare])
        stage_path = _median([r.stage("transcribe_stage") for r in runs])
        engine_call = _median([r.stage("transcribe") for r in runs])
        wall = _median([r.wall for r in runs])
        analyses_share = _median([ratio(r.analyses, r.stage("transcribe")) for r in runs])
        reference = ctx.file(name).reference
        wer_bare = word_error_rate(reference, bare[-1].text)
        wer_pipeline = word_error_rate(reference, runs[-1].text)
        ratios.add(
            name,
            runs[0].audio_seconds,
            bare_total,
            stage_path,
            ratio(stage_path, bare_total),
            bare_engine,
            engine_call,
            ratio(engine_call, bare_engine),
            wall,
            ratio(wall, bare_total),
            analyses_share,
            wer_bare,
            wer_pipeline,
        )
        mid = _median_run(runs)
        stages.add(
            name,
            mid.submit,
            mid.stage("validate"),
            mid.stage("probe"),
            mid.stage("decode"),
            mid.stage("model_load"),
            mid.stage("transcribe"),
            mid.stage("transcribe_db_write") + mid.stage("analyze_db_write"),
            *(mid.stage(f"analysis_{a}") for a in ANALYSES),
            mid.queue,
            mid.wall,
        )
        transcription_ratio = ratio(stage_path, bare_total)
        section.targets.append(
            Target(
                f"transcription path, {name}",
                f"≤ {TRANSCRIPTION_TARGET:.2f}× bare",
                f"{transcription_ratio:.3f}×",
                transcription_ratio <= TRANSCRIPTION_TARGET,
                "" if transcription_ratio <= TRANSCRIPTION_TARGET else _path_cause(mid, bare),
            )
        )
        if name == "60s":
            section.targets.append(
                Target(
                    "analyses share of transcription, 60s",
                    f"≤ {ANALYSIS_SHARE_TARGET:.0%}",
                    f"{analyses_share:.1%}",
                    analyses_share <= ANALYSIS_SHARE_TARGET,
                    "" if analyses_share <= ANALYSIS_SHARE_TARGET else _analysis_cause(mid),
                )
            )
        data[name] = {
            "bare": [vars(b) for b in bare],
            "pipeline": [{**vars(r), "file_id": str(r.file_id)} for r in runs],
            "wer_bare": wer_bare,
            "wer_pipeline": wer_pipeline,
        }
    section.tables += [ratios, stages]
    section.data = data
    section.notes += [
        f"One worker process (concurrency 1, queues ingest,transcribe,analyze), "
        f"TELEAI_WHISPER_CPU_THREADS={ctx.threads}; bare call in the benchmark process with "
        f"cpu_threads={ctx.threads}, same model (tiny.en int8) and decoding options.",
        "transcription ratio = worker's decode + model lookup + engine call "
        "(stage_seconds.transcribe_stage) / bare decode + transcribe. engine-call ratio compares "
        "only the engine calls. full chain = submit start -> processing_completed_at.",
        "queue + hand-over = wall - submit - time inside the stages: broker latency, the claim "
        "and hand-over transactions and task start-up.",
    ]
    return section


def _path_cause(run: PipelineRun, bare: list[BareRun]) -> str:
    decode_extra = run.stage("decode") - _median([b.decode for b in bare])
    engine_extra = run.stage("transcribe") - _median([b.transcribe for b in bare])
    return (
        f"extra decode {decode_extra:+.2f} s, extra engine time {engine_extra:+.2f} s, "
        f"model lookup {run.stage('model_load'):.3f} s"
    )


def _analysis_cause(run: PipelineRun) -> str:
    slowest = max(ANALYSES, key=lambda a: run.stage(f"analysis_{a}"))
    return f"slowest analysis: {slowest} ({run.stage(f'analysis_{slowest}'):.2f} s)"
