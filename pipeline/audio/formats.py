"""The audio containers TeleAI Pro accepts, and how names and ffmpeg refer to them.

One closed set (``db.models.AudioFormat``, the same enum the schema's CHECK is built from)
keeps every stage honest: validation, storage names, probing and decoding all
switch on these six values, so a new container is one edit here plus a sniffer rule.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import TypeGuard

from db.models import AudioFormat  # the one list of formats, shared with the schema's CHECK

__all__ = [
    "EXTENSIONS",
    "FFMPEG_DEMUXERS",
    "LABELS",
    "SUPPORTED_FORMATS",
    "AudioFormat",
    "ensure_audio_format",
    "format_from_extension",
    "is_audio_format",
    "supported_extensions",
]

SUPPORTED_FORMATS: tuple[AudioFormat, ...] = tuple(AudioFormat)

# Extensions users upload with. Aliases map to the container that really holds the audio:
# .oga/.opus files are Ogg, so they are probed and stored as "ogg".
EXTENSIONS: dict[str, AudioFormat] = {
    ".mp3": AudioFormat.MP3,
    ".wav": AudioFormat.WAV,
    ".ogg": AudioFormat.OGG,
    ".oga": AudioFormat.OGG,
    ".opus": AudioFormat.OGG,
    ".m4a": AudioFormat.M4A,
    ".flac": AudioFormat.FLAC,
    ".webm": AudioFormat.WEBM,
}

# Human names for messages ("could not read the M4A stream").
LABELS: dict[AudioFormat, str] = {
    AudioFormat.MP3: "MP3",
    AudioFormat.WAV: "WAV",
    AudioFormat.OGG: "Ogg",
    AudioFormat.M4A: "M4A",
    AudioFormat.FLAC: "FLAC",
    AudioFormat.WEBM: "WebM",
}

# The ffmpeg demuxer for each container. Opening with an explicit demuxer means ffmpeg never
# guesses the format from content, so a playlist or concat script can never be interpreted.
FFMPEG_DEMUXERS: dict[AudioFormat, str] = {
    AudioFormat.MP3: AudioFormat.MP3,
    AudioFormat.WAV: AudioFormat.WAV,
    AudioFormat.OGG: AudioFormat.OGG,
    AudioFormat.M4A: "mp4",
    AudioFormat.FLAC: AudioFormat.FLAC,
    AudioFormat.WEBM: "matroska",
}


def is_audio_format(value: object) -> TypeGuard[AudioFormat]:
    """True when ``value`` is one of :data:`SUPPORTED_FORMATS` (an enum member or its text)."""
    return isinstance(value, str) and value in SUPPORTED_FORMATS


def ensure_audio_format(value: str) -> AudioFormat:
    """``value`` as an :data:`AudioFormat`; ``ValueError`` for anything else (a caller bug)."""
    if not is_audio_format(value):
        raise ValueError(f"unknown audio format {value!r}; expected one of {SUPPORTED_FORMATS}")
    return AudioFormat(value)


def format_from_extension(path: str | PurePath) -> AudioFormat | None:
    """The format a file name claims (case-insensitive), or None for an unsupported extension."""
    return EXTENSIONS.get(PurePath(path).suffix.lower())


def supported_extensions() -> str:
    """The accepted extensions as one line for error messages: ``.mp3, .wav, …``."""
    return ", ".join(EXTENSIONS)
