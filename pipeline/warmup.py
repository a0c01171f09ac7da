"""Load a worker process's models before its first task, so task timings measure the task.

Called from ``worker_process_init`` for the queues the worker consumes: a transcription
worker loads Whisper, an analysis worker loads the embedding, spaCy and sentiment models, an
ingest worker loads nothing. Each model is then cached for the life of the process.
"""

from __future__ import annotations

import time

import structlog

from pipeline.settings import Settings

log = structlog.get_logger(__name__)

WARM_UP_TEXT = "Good morning. We will meet the team in Berlin on Friday to review the plan."


def warm_up(queues: set[str], settings: Settings) -> dict[str, float]:
    """Load (and run once) the models the given queues need; returns seconds per part."""
    seconds: dict[str, float] = {}
    if "transcribe" in queues:
        import numpy as np

        from pipeline.transcription import get_transcriber

        started = time.perf_counter()
        # One second of silence: loads the model and runs the VAD path, decodes nothing.
        get_transcriber(settings).transcribe(np.zeros(16000, dtype=np.float32), language="en")
        seconds["transcriber"] = time.perf_counter() - started
        if settings.diarization:
            from pipeline.transcription.diarize import warm_up_encoder

            started = time.perf_counter()
            warm_up_encoder()  # the numpy voice encoder and the VAD, before a task
            seconds["diarizer"] = time.perf_counter() - started
    if "analyze" in queues:
        from pipeline.analysis import AnalysisInput, analyze

        started = time.perf_counter()
        analyze(AnalysisInput(text=WARM_UP_TEXT, segments=(), language="en"), settings)
        seconds["analyzers"] = time.perf_counter() - started
    if seconds:
        log.info("models_warmed_up", **{k: round(v, 2) for k, v in seconds.items()})
    return seconds
