"""What the benchmarks of one run share: sizes, the corpus, decoded audio and measured runs.

Runs are memoised per (configuration, file), so a number that two benchmarks need (the default
engine's speed is both an engine-comparison and a real-time-factor row, and its text is a WER
row) is measured once, and both tables agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.corpus import CorpusFile, ensure_corpus
from bench.engines import EngineConfig, EngineRun, LoadedEngine, measure
from bench.services import ServiceConfig
from pipeline.audio.formats import AudioFormat
from pipeline.transcription.base import Audio


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; ``--quick`` uses the small set."""

    audio_files: tuple[str, ...]
    long_file: str  # the longest file: batched pipeline, peak memory
    repeats: int  # repeats of short in-process runs (median counts)
    pipeline_repeats: int
    scaling_files: int
    scaling_processes: tuple[int, ...]
    ingest_files: int
    memory_tasks: int
    db_scale: float  # fraction of 1,000,000 files / transcriptions and 3,000,000 analyses
    db_repeats: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(("10s", "60s"), "60s", 1, 1, 8, (1, 2), 100, 20, 0.01, 5)
        return cls(("10s", "60s", "10min"), "10min", 3, 3, 40, (1, 2, 4), 1000, 200, 1.0, 15)


@dataclass
class Context:
    """Shared state of one run (see module docstring)."""

    quick: bool
    threads: int
    services: ServiceConfig
    corpus_dir: Path
    model_cache_dir: Path
    sizes: Sizes
    db_scale_override: float | None = None
    keep_db: str | None = None  # a filled database kept between runs (bench.dbfill)
    corpus: dict[str, CorpusFile] = field(default_factory=dict)
    _audio: dict[str, Audio] = field(default_factory=dict)
    _runs: dict[tuple[EngineConfig, str], EngineRun] = field(default_factory=dict)
    _engine: LoadedEngine | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # results one benchmark leaves others

    @property
    def db_scale(self) -> float:
        return self.db_scale_override if self.db_scale_override is not None else self.sizes.db_scale

    def file(self, name: str) -> CorpusFile:
        if name not in self.corpus:
            self.corpus.update(ensure_corpus(self.corpus_dir, [name]))
        return self.corpus[name]

    def audio(self, name: str) -> Audio:
        """The file decoded to 16 kHz mono by the pipeline's decoder (once per run)."""
        if name not in self._audio:
            from pipeline.audio.decode import decode_to_16k_mono

            self._audio[name] = decode_to_16k_mono(self.file(name).path, AudioFormat.MP3)
        return self._audio[name]

    def engine(self, config: EngineConfig) -> LoadedEngine:
        """The loaded model for ``config``; one at a time, warmed up on the short clip (the
        first call pays one-off costs: allocations, numba compilation of word alignment)."""
        if self._engine is None or self._engine.config != config:
            self._engine = None
            engine = LoadedEngine(config, threads=self.threads, cache_dir=self.model_cache_dir)
            engine.transcribe(self.audio("clip"))
            self._engine = engine
        return self._engine

    def run(self, config: EngineConfig, file: str, repeats: int | None = None) -> EngineRun:
        """``config`` on ``file``, measured once per run and remembered."""
        key = (config, file)
        if key not in self._runs:
            self._runs[key] = measure(
                self.engine(config),
                self.audio(file),
                file=file,
                reference=self.file(file).reference,
                repeats=repeats or self.repeats_for(config, file),
            )
        return self._runs[key]

    def known_run(self, config: EngineConfig, file: str) -> EngineRun | None:
        return self._runs.get((config, file))

    def repeats_for(self, config: EngineConfig, file: str) -> int:
        """Short faster-whisper runs are repeated (median); long or slow ones run once."""
        if self.quick or config.engine != "faster-whisper":
            return 1
        return self.sizes.repeats if self.file(file).seconds <= 60 else 1

    def release_engine(self) -> None:
        self._engine = None
