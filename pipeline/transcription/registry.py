"""Build the configured transcriber once per process (models are big and slow to load)."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from pipeline.settings import Settings
from pipeline.transcription.base import Transcriber

ENGINE_PACKAGES = {"faster-whisper": "faster-whisper", "openai-whisper": "openai-whisper"}


def engine_version(engine: str) -> str:
    """Installed version of the engine's package, recorded with every transcript."""
    try:
        return version(ENGINE_PACKAGES[engine])
    except KeyError as exc:
        raise ValueError(f"unknown transcription engine {engine!r}") from exc


@lru_cache(maxsize=4)
def _build(
    engine: str,
    model: str,
    device: str,
    compute_type: str,
    cpu_threads: int,
    beam_size: int,
    vad_filter: bool,
    cache_dir: Path,
    hub_downloads: bool,
    batch_size: int = 8,
) -> Transcriber:
    if engine == "faster-whisper":
        from pipeline.transcription.faster import FasterWhisperTranscriber

        return FasterWhisperTranscriber(
            model,
            cache_dir=cache_dir,
            hub_downloads=hub_downloads,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            beam_size=beam_size,
            vad_filter=vad_filter,
            batch_size=batch_size,
        )
    if engine == "openai-whisper":
        from pipeline.transcription.openai import OpenAIWhisperTranscriber

        return OpenAIWhisperTranscriber(
            model,
            cache_dir=cache_dir,
            hub_downloads=hub_downloads,
            device=device,
            cpu_threads=cpu_threads,
            beam_size=beam_size,
            vad_filter=vad_filter,
        )
    raise ValueError(f"unknown transcription engine {engine!r}")


def get_transcriber(settings: Settings) -> Transcriber:
    """The process-wide transcriber for these settings; loaded on first use, then reused."""
    return _build(
        settings.engine,
        settings.whisper_model,
        settings.whisper_device,
        settings.whisper_compute_type,
        settings.whisper_cpu_threads,
        settings.whisper_beam_size,
        settings.whisper_vad_filter,
        settings.model_cache_dir,
        settings.hub_downloads,
        settings.batched_batch_size,
    )


def clear_transcribers() -> None:
    """Drop cached models (tests, or a worker that changes settings at run time)."""
    _build.cache_clear()
