"""A redacted copy of the audio: a tone (or silence) over the words of each finding.

pydub decodes the stored file with ffmpeg, overlays nothing but replaces each span (padded by
:data:`PAD_SECONDS` on both sides, because word times from Whisper are accurate to a few tens of
milliseconds) with a 1 kHz tone at -20 dBFS or with silence, keeping length, channels and sample
rate, and writes the copy in the original container when pydub/ffmpeg can write it (WAV, MP3,
OGG, FLAC), else as WAV. The whole file is held in memory as PCM: an hour of 16 kHz mono is
115 MB; calls are far shorter than the duration limit, which bounds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

PAD_SECONDS = 0.08
TONE_HZ = 1000
TONE_DBFS = -20.0
WRITABLE = frozenset({"wav", "mp3", "ogg", "flac"})

Cover = Literal["tone", "silence"]


def merged(spans: Iterable[tuple[float, float]], pad: float = PAD_SECONDS) -> list[tuple[int, int]]:
    """Padded, merged spans in milliseconds (never below zero)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        a, b = max(0, round((start - pad) * 1000)), round((end + pad) * 1000)
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def redact_audio(
    source: Path,
    spans: Iterable[tuple[float, float]],
    target_dir: Path,
    fmt: str,
    cover: Cover = "tone",
) -> Path:
    """Write the redacted copy of ``source`` into ``target_dir``; returns its path."""
    from pydub import AudioSegment
    from pydub.generators import Sine

    audio = AudioSegment.from_file(source)
    for a, b in merged(spans):
        a, b = min(a, len(audio)), min(b, len(audio))
        if b <= a:
            continue
        if cover == "tone":
            patch = Sine(TONE_HZ, sample_rate=audio.frame_rate).to_audio_segment(
                duration=b - a, volume=TONE_DBFS
            )
            patch = patch.set_channels(audio.channels).set_sample_width(audio.sample_width)
        else:
            patch = AudioSegment.silent(duration=b - a, frame_rate=audio.frame_rate)
            patch = patch.set_channels(audio.channels).set_sample_width(audio.sample_width)
        audio = audio[:a] + patch[: b - a] + audio[b:]
    out_fmt = fmt if fmt in WRITABLE else "wav"
    target = target_dir / f"{source.stem}.redacted.{out_fmt}"
    audio.export(target, format=out_fmt)
    return target
