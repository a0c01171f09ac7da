"""Speak a sentence into an audio file: espeak-ng speaks, ffmpeg converts to any format.

One implementation for the demo (its sample calls), the tests (they assert a word error rate
against the sentence, so test audio is generated in the run, never checked in) and the
benchmarks' corpora. It lives in the package because the demo ships in it; ``tests.speech`` and
``tests.harness`` re-export it. A missing tool raises at once, naming the package to install;
the demo checks for the tools first and falls back to its shipped sample.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ESPEAK_RATE = 22_050
"""The sample rate espeak-ng writes (mono, 16-bit)."""
ESPEAK_VOICE, ESPEAK_WPM = "en", 175
"""espeak-ng's own defaults (what it speaks without ``-v``/``-s``): the demo's voice and speed."""

# ffmpeg arguments per supported container; 16-bit/44.1 kHz stereo input keeps probing honest.
FORMAT_ARGS: dict[str, list[str]] = {
    "wav": ["-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "96k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    "m4a": ["-c:a", "aac", "-b:a", "96k"],
    "flac": ["-c:a", "flac"],
    "webm": ["-c:a", "libopus", "-b:a", "64k"],
}
FORMATS = tuple(FORMAT_ARGS)


def require_tool(name: str) -> str:
    """The tool's path; raises ``RuntimeError`` saying how to install it when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; .ci/run installs it (apt-get install {name})")
    return path


def espeak_wav(
    text: str,
    out: Path,
    *,
    voice: str = "en-us",
    words_per_minute: int = 150,
    ssml: bool = False,
) -> Path:
    """Speak ``text`` into a WAV file with espeak-ng (22.05 kHz mono, as espeak writes it).

    With ``ssml`` the text is SSML (``<speak>…<break time='1500ms'/>…</speak>``): pauses of a
    known length, for tests that need silence at known places.
    """
    require_tool("espeak-ng")
    out.parent.mkdir(parents=True, exist_ok=True)
    markup = ["-m"] if ssml else []
    subprocess.run(
        ["espeak-ng", *markup, "-v", voice, "-s", str(words_per_minute), "-w", str(out), text],
        check=True,
        capture_output=True,
    )
    return out


def convert(src: Path, fmt: str, out: Path, *, sample_rate: int = 44100, channels: int = 2) -> Path:
    """Convert ``src`` with ffmpeg into ``fmt`` at the given rate and channel count."""
    require_tool("ffmpeg")
    out.parent.mkdir(parents=True, exist_ok=True)
    rate = 48000 if fmt == "webm" else sample_rate  # Opus only runs at 48 kHz
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(src),
            "-ar",
            str(rate),
            "-ac",
            str(channels),
            *FORMAT_ARGS[fmt],
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def speech_file(
    text: str,
    fmt: str,
    directory: Path,
    *,
    stem: str = "speech",
    voice: str = "en-us",
    sample_rate: int = 44100,
    channels: int = 2,
) -> Path:
    """A spoken ``text`` in ``fmt`` inside ``directory`` (the espeak WAV is kept beside it)."""
    wav = espeak_wav(text, directory / f"{stem}.espeak.wav", voice=voice)
    return convert(
        wav, fmt, directory / f"{stem}.{fmt}", sample_rate=sample_rate, channels=channels
    )
