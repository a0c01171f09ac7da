"""Speech-to-text: engine-neutral records, packaged-model resolution and two Whisper engines.

Import cost is kept low on purpose: engines and models load on first :func:`get_transcriber`.
"""

from __future__ import annotations

from pipeline.transcription.base import SAMPLE_RATE, Audio, Transcriber
from pipeline.transcription.records import (
    Segment,
    Transcript,
    Word,
    segments_to_json,
    transcript_confidence,
)
from pipeline.transcription.registry import clear_transcribers, engine_version, get_transcriber

__all__ = [
    "SAMPLE_RATE",
    "Audio",
    "Segment",
    "Transcriber",
    "Transcript",
    "Word",
    "clear_transcribers",
    "engine_version",
    "get_transcriber",
    "segments_to_json",
    "transcript_confidence",
]
