"""A redacted copy of the audio: a tone (or silence) over the words of each finding.

pydub decodes the stored file with ffmpeg; the samples of each span (padded by
:data:`PAD_SECONDS` on both sides, because word times from Whisper are accurate to a few tens of
milliseconds) are replaced, sample-exact, with a 1 kHz tone at -20 dBFS or with silence, keeping
length, channels and sample rate, and the copy is written in the original container when
pydub/ffmpeg can write it (WAV, MP3, OGG, FLAC), else as WAV. The whole file is held in memory
as PCM: an hour of 16 kHz mono is 115 MB; the duration limit bounds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

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

    audio = AudioSegment.from_file(source)
    if audio.sample_width == 1:  # 8-bit PCM is unsigned: work in 16 bits
        audio = audio.set_sample_width(2)
    samples = np.array(audio.get_array_of_samples())
    rate, channels = audio.frame_rate, audio.channels
    peak = float(2 ** (8 * audio.sample_width - 1) - 1)
    frames = len(samples) // channels
    for a, b in merged(spans):
        first, last = min(frames, a * rate // 1000), min(frames, b * rate // 1000)
        if last <= first:
            continue
        if cover == "tone":
            t = np.arange(first, last) / rate
            wave = np.sin(2 * np.pi * TONE_HZ * t) * peak * 10 ** (TONE_DBFS / 20)
            samples[first * channels : last * channels] = np.repeat(wave, channels)
        else:
            samples[first * channels : last * channels] = 0
    audio = audio._spawn(samples.astype(samples.dtype).tobytes())
    out_fmt = fmt if fmt in WRITABLE else "wav"
    target = target_dir / f"{source.stem}.redacted.{out_fmt}"
    audio.export(target, format=out_fmt)
    return target
