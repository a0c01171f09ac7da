"""Audio intake: identify, validate, store, probe and decode uploaded recordings.

Plain functions on paths; no database. The ingest stage runs
``validate_upload`` → ``store_file`` → ``probe_audio`` on the stored copy; transcription calls
``decode_to_16k_mono`` on the stored copy.
"""

from __future__ import annotations

from pipeline.audio.decode import SAMPLE_RATE, decode_to_16k_mono
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
    "decode_to_16k_mono",
    "format_from_extension",
    "probe_audio",
    "probe_with_ffprobe",
    "probe_with_mutagen",
    "probe_with_pyav",
    "sha256_file",
    "sniff",
    "sniff_format",
    "store_file",
    "validate_upload",
]
