"""The one interface the pipeline needs from a speech-to-text engine."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pipeline.transcription.records import Transcript

SAMPLE_RATE = 16_000
"""Every engine takes 16 kHz mono float32 samples in [-1, 1]; decoding happens before."""

Audio = npt.NDArray[np.float32]


@runtime_checkable
class Transcriber(Protocol):
    """Turns decoded audio into a :class:`Transcript`; one instance holds one loaded model."""

    def transcribe(
        self, audio: Audio, *, language: str | None, batched: bool = False
    ) -> Transcript:
        """Transcribe ``audio``; ``language=None`` means detect it (multilingual models).
        ``batched`` asks for the engine's batched decoder where it has one (faster on long
        files); engines without one decode sequentially. ``parameters["inference"]`` of the
        result says which ran."""
        ...


def check_audio(audio: Audio) -> Audio:
    """Validate the sample array at the engine boundary and return it as contiguous float32."""
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples (1-D array), got shape {audio.shape}")
    return np.ascontiguousarray(audio, dtype=np.float32)
