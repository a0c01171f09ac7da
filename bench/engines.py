"""In-process engine runs: one engine configuration on one decoded corpus file, timed.

The pipeline's own engine wrappers (:mod:`pipeline.transcription`) are used, so a number here
is what a worker's ``transcribe`` step costs without the queue around it. Audio is decoded once
per file, outside the timings (decoding is measured separately in the overhead benchmark).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.wer import word_error_rate
from pipeline.settings import Settings
from pipeline.transcription.base import Audio
from pipeline.transcription.faster import (
    CONDITION_ON_PREVIOUS_TEXT,
    LOG_PROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
)

FASTER = "faster-whisper"
OPENAI = "openai-whisper"


def default_decoding() -> tuple[int, bool]:
    """The pipeline's default (beam size, VAD) from the settings model, so the benchmark follows
    a change of defaults instead of restating them."""
    fields = Settings.model_fields
    return int(fields["whisper_beam_size"].default), bool(fields["whisper_vad_filter"].default)


@dataclass(frozen=True)
class EngineConfig:
    """One way of running Whisper; ``batched`` = faster-whisper's BatchedInferencePipeline."""

    engine: str = FASTER
    model: str = "tiny.en"
    compute_type: str = "int8"  # faster-whisper only; openai-whisper runs float32 on CPU
    beam_size: int = 1
    vad: bool = True
    batched: bool = False
    batch_size: int = 8

    @property
    def label(self) -> str:
        kind = f"fw-{self.compute_type}" if self.engine == FASTER else "openai-whisper fp32"
        parts = [self.model, kind, f"beam {self.beam_size}", "VAD" if self.vad else "no VAD"]
        if self.batched:
            parts.append(f"batched x{self.batch_size}")
        return ", ".join(parts)


@dataclass(frozen=True)
class EngineRun:
    """Timings (median over repeats) and output of one configuration on one file."""

    config: EngineConfig
    file: str
    audio_seconds: float
    seconds: float
    cpu_seconds: float
    repeats: int
    all_seconds: tuple[float, ...]
    text: str
    wer: float
    load_seconds: float

    @property
    def rtf(self) -> float:
        """Real-time factor as "times real time": audio seconds per wall second."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["config"] = {"label": self.config.label, **dataclasses.asdict(self.config)}
        data["rtf"] = self.rtf
        return data


class LoadedEngine:
    """A loaded model for one configuration; ``transcribe`` returns the text."""

    def __init__(self, config: EngineConfig, *, threads: int, cache_dir: Path) -> None:
        started = time.perf_counter()
        self.config = config
        if config.engine == FASTER:
            from pipeline.transcription.faster import FasterWhisperTranscriber

            self._wrapper: Any = FasterWhisperTranscriber(
                config.model,
                cache_dir=cache_dir,
                compute_type=config.compute_type,
                cpu_threads=threads,
                beam_size=config.beam_size,
                vad_filter=config.vad,
            )
        elif config.engine == OPENAI:
            from pipeline.transcription.openai import OpenAIWhisperTranscriber

            self._wrapper = OpenAIWhisperTranscriber(
                config.model,
                cache_dir=cache_dir,
                cpu_threads=threads,
                beam_size=config.beam_size,
                vad_filter=config.vad,
            )
        else:
            raise ValueError(f"unknown engine {config.engine!r}")
        self._batched: Any = None
        if config.batched:
            from faster_whisper import BatchedInferencePipeline

            self._batched = BatchedInferencePipeline(model=self._wrapper._model)
        self.load_seconds = time.perf_counter() - started

    def transcribe(self, audio: Audio) -> str:
        if self._batched is None:
            return str(self._wrapper.transcribe(audio, language="en").text)
        segments, _ = self._batched.transcribe(
            audio,
            language="en",
            batch_size=self.config.batch_size,
            beam_size=self.config.beam_size,
            vad_filter=True,
            word_timestamps=True,
            condition_on_previous_text=CONDITION_ON_PREVIOUS_TEXT,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            log_prob_threshold=LOG_PROB_THRESHOLD,
        )
        return " ".join(t for t in (s.text.strip() for s in segments) if t)


def measure(
    engine: LoadedEngine,
    audio: Audio,
    *,
    file: str,
    reference: str,
    repeats: int,
) -> EngineRun:
    """Run ``repeats`` times; the median wall time counts, the last text is scored."""
    walls: list[float] = []
    cpus: list[float] = []
    text = ""
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        text = engine.transcribe(audio)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return EngineRun(
        config=engine.config,
        file=file,
        audio_seconds=len(audio) / 16_000,
        seconds=statistics.median(walls),
        cpu_seconds=statistics.median(cpus),
        repeats=repeats,
        all_seconds=tuple(round(w, 3) for w in walls),
        text=text,
        wer=word_error_rate(reference, text),
        load_seconds=engine.load_seconds,
    )
