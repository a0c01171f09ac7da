"""The audio containers TeleAI Pro accepts, and how names and ffmpeg refer to them.

One closed set keeps every stage honest: validation, storage names, probing and decoding all
switch on these six values, so a new container is one edit here plus a sniffer rule.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal, TypeGuard, get_args

AudioFormat = Literal["mp3", "wav", "ogg", "m4a", "flac", "webm"]
SUPPORTED_FORMATS: tuple[AudioFormat, ...] = get_args(AudioFormat)

# Extensions users upload with. Aliases map to the container that really holds the audio:
# .oga/.opus files are Ogg, so they are probed and stored as "ogg".
EXTENSIONS: dict[str, AudioFormat] = {
    ".mp3": "mp3",
    ".wav": "wav",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "ogg",
    ".m4a": "m4a",
    ".flac": "flac",
    ".webm": "webm",
}

# Human names for messages ("could not read the M4A stream").
LABELS: dict[AudioFormat, str] = {
    "mp3": "MP3",
    "wav": "WAV",
    "ogg": "Ogg",
    "m4a": "M4A",
    "flac": "FLAC",
    "webm": "WebM",
}

# The ffmpeg demuxer for each container. Opening with an explicit demuxer means ffmpeg never
# guesses the format from content, so a playlist or concat script can never be interpreted.
FFMPEG_DEMUXERS: dict[AudioFormat, str] = {
    "mp3": "mp3",
    "wav": "wav",
    "ogg": "ogg",
    "m4a": "mp4",
    "flac": "flac",
    "webm": "matroska",
}


def is_audio_format(value: object) -> TypeGuard[AudioFormat]:
    """True when ``value`` is one of :data:`SUPPORTED_FORMATS`."""
    return isinstance(value, str) and value in SUPPORTED_FORMATS


def ensure_audio_format(value: str) -> AudioFormat:
    """``value`` as an :data:`AudioFormat`; ``ValueError`` for anything else (a caller bug)."""
    if not is_audio_format(value):
        raise ValueError(f"unknown audio format {value!r}; expected one of {SUPPORTED_FORMATS}")
    return value


def format_from_extension(path: str | PurePath) -> AudioFormat | None:
    """The format a file name claims (case-insensitive), or None for an unsupported extension."""
    return EXTENSIONS.get(PurePath(path).suffix.lower())


def supported_extensions() -> str:
    """The accepted extensions as one line for error messages: ``.mp3, .wav, …``."""
    return ", ".join(EXTENSIONS)
