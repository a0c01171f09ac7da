"""The one interface the pipeline needs from a speech-to-text engine."""

from __future__ import annotations

from collections.abc import Sequence
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

    multilingual: bool

    def transcribe(
        self,
        audio: Audio,
        *,
        language: str | None,
        batched: bool = False,
        vocabulary: Sequence[str] = (),
        prompt: str | None = None,
    ) -> Transcript:
        """Transcribe ``audio``; ``language=None`` means detect it (multilingual models).
        ``batched`` asks for the engine's batched decoder where it has one (faster on long
        files); engines without one decode sequentially. ``parameters["inference"]`` of the
        result says which ran. ``vocabulary`` (terms the speakers use) and ``prompt`` steer
        the decoder (hotwords / initial prompt) and are recorded in ``parameters``."""
        ...

    def detect_language(self, audio: Audio) -> tuple[str, float]:
        """The most likely language of (the first 30 s of) ``audio`` and its probability."""
        ...


def check_audio(audio: Audio) -> Audio:
    """Validate the sample array at the engine boundary and return it as contiguous float32."""
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples (1-D array), got shape {audio.shape}")
    return np.ascontiguousarray(audio, dtype=np.float32)
