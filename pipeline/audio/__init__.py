"""Audio intake: identify, validate, store, probe and decode uploaded recordings.

Plain functions on paths; no database. The ingest stage runs
``validate_upload`` → ``store_file`` → ``probe_audio`` on the stored copy (which counts the
decoded samples: the stored duration is the real one); transcription reads the stored copy as
bounded, silence-aligned ``decode_windows`` (``decode_to_16k_mono`` holds a whole file: short
audio, tests and benchmarks only).
"""

from __future__ import annotations

from pipeline.audio.decode import (
    SAMPLE_RATE,
    Window,
    decode_to_16k_mono,
    decode_windows,
    stream_16k,
)
from pipeline.audio.formats import SUPPORTED_FORMATS, AudioFormat, format_from_extension
from pipeline.audio.probe import (
    AudioInfo,
    probe_audio,
    probe_with_ffprobe,
    probe_with_mutagen,
    probe_with_pyav,
)
from pipeline.audio.sniff import Sniffed, sniff, sniff_format
from pipeline.audio.storage import StoredFile, sha256_file, store_file
from pipeline.audio.validate import validate_upload

__all__ = [
    "SAMPLE_RATE",
    "SUPPORTED_FORMATS",
    "AudioFormat",
    "AudioInfo",
    "Sniffed",
    "StoredFile",
    "Window",
    "decode_to_16k_mono",
    "decode_windows",
    "format_from_extension",
    "probe_audio",
    "probe_with_ffprobe",
    "probe_with_mutagen",
    "probe_with_pyav",
    "sha256_file",
    "sniff",
    "sniff_format",
    "store_file",
    "stream_16k",
    "validate_upload",
]
