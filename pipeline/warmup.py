"""Load a worker process's models before its first task, so task timings measure the task.

Called from ``worker_process_init`` for the queues the worker consumes: a transcription
worker loads Whisper, an analysis worker loads the embedding, spaCy and sentiment models, an
ingest worker loads nothing. Each model is then cached for the life of the process.

A transcription worker's warm-up is on its cold-start path (worker launch to the first file
done, bench ``coldstart``), and most of it is CTranslate2 building the Whisper model, which
releases the GIL: so while it builds, a thread warms the diarizer, imports what the first task
imports and runs ``alongside`` (the worker opens its database connection there). The warm-up
still ends before the process takes a task, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from pipeline.settings import Settings

log = structlog.get_logger(__name__)

SIDE_WAIT_SECONDS = 15.0  # how long the warm-up waits for its side thread after Whisper loaded
WARM_UP_TEXT = "Good morning. We will meet the team in Berlin on Friday to review the plan."


class _Beside(threading.Thread):
    """Runs ``work`` in a thread; :meth:`result` waits and re-raises what it raised."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(name="teleai-warm-up", daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as error:  # handed to the warming thread, which raises it
            self.error = error

    def result(self, timeout: float) -> None:
        """Wait up to ``timeout`` s, then re-raise the work's error; work still running past it
        (a database host that does not answer: a TCP connect can hang for minutes) carries on
        beside the first task, with a warning, rather than holding the worker back."""
        self.join(timeout)
        if self.is_alive():
            log.warning("warm_up_side_work_still_running", waited_seconds=timeout)
        elif self.error is not None:
            raise self.error


def _first_task_imports() -> None:
    """What the first transcription task would otherwise import (the stage's lazy imports)."""
    import numpy.ma  # noqa: F401  # numpy.median imports it on first use (word timestamps)

    import pipeline.preferences
    import pipeline.transcription.call  # noqa: F401


def warm_up(
    queues: set[str], settings: Settings, *, alongside: Callable[[], object] | None = None
) -> dict[str, float]:
    """Load (and run once) the models the given queues need; returns seconds per part (parts
    may overlap: ``total`` is the wall time). ``alongside`` runs while Whisper loads (a
    transcription worker only)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if "transcribe" in queues:
        import numpy as np

        from pipeline.transcription import get_transcriber

        def beside() -> None:
            if settings.diarization:
                from pipeline.transcription.diarize import warm_up_encoder

                diarizer_started = time.perf_counter()
                warm_up_encoder()  # the numpy voice encoder and the VAD, before a task
                seconds["diarizer"] = time.perf_counter() - diarizer_started
            _first_task_imports()
            if alongside is not None:
                alongside()

        side = _Beside(beside)
        side.start()
        # Whisper in this thread: a CTranslate2 model built in another thread decoded 5-10x
        # slower afterwards (measured), and building it is what releases the GIL.
        transcriber_started = time.perf_counter()
        # One second of silence: loads the model and runs the VAD path, decodes nothing.
        get_transcriber(settings).transcribe(np.zeros(16000, dtype=np.float32), language="en")
        seconds["transcriber"] = time.perf_counter() - transcriber_started
        side.result(timeout=SIDE_WAIT_SECONDS)
    if "analyze" in queues:
        from pipeline.analysis import AnalysisInput, analyze

        analyzers_started = time.perf_counter()
        analyze(AnalysisInput(text=WARM_UP_TEXT, segments=(), language="en"), settings)
        seconds["analyzers"] = time.perf_counter() - analyzers_started
    if seconds:
        seconds["total"] = time.perf_counter() - started
        log.info("models_warmed_up", **{k: round(v, 2) for k, v in seconds.items()})
    return seconds
