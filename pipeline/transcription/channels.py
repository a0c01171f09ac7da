"""Which channels of a file to transcribe: one per talker when they differ, once when they don't.

Call recordings often put the agent on the left channel and the customer on the right. Mixing
them down loses the quieter side wherever both talk at once, so for files with two or more
channels the channels are first *scanned* (decoded one at a time into a 50-ms level envelope:
a few hundred KB for hours of audio, at the decoder's ~1,000x real-time speed):

* **silent** — a channel whose loud frames (95th percentile) stay under
  :data:`SILENT_DBFS` carries nobody; it is skipped and named in the metadata;
* **duplicate** — a channel whose envelope follows an earlier one (correlation ≥
  :data:`DUPLICATE_CORRELATION` and levels within :data:`DUPLICATE_LEVEL_DB`) is the same
  signal (mono recorded as stereo): it is transcribed once;
* otherwise the channels carry **different** speech and each is transcribed on its own; the
  segments are merged by time, each carrying its ``channel`` and a ``speaker`` label (from the
  job's ``channel_labels``, the owner's defaults, or ``CH1``, ``CH2``, ...). Overlapping speech
  stays: both sides are separate segments with overlapping times.

The job option ``channels`` forces either way: ``split`` transcribes every channel with signal
(duplicates included), ``mix`` one mixed-down signal (then diarized like mono audio). At most
:data:`MAX_SPLIT_CHANNELS` channels are transcribed separately; a file with more distinct
channels is mixed down, and the metadata says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.audio.decode import SAMPLE_RATE, open_audio, stream_16k
from pipeline.audio.formats import AudioFormat
from pipeline.options import ChannelMode

FRAME = SAMPLE_RATE // 20  # 50-ms level frames
SILENT_DBFS = -55.0
DUPLICATE_CORRELATION = 0.98
DUPLICATE_LEVEL_DB = 1.0
MAX_SPLIT_CHANNELS = 8


def decoded_channels(path: str | os.PathLike[str], fmt: AudioFormat) -> int:
    """How many channels the decoder gives (the probe's header count can disagree)."""
    with open_audio(path, fmt) as (_, stream):
        return int(stream.codec_context.layout.nb_channels)


def envelope(
    path: str | os.PathLike[str],
    fmt: AudioFormat,
    channel: int,
    max_seconds: float | None = None,
) -> npt.NDArray[np.float32]:
    """The RMS level of one channel per 50-ms frame (linear, 16 kHz decode)."""
    levels: list[float] = []
    rest = np.zeros(0, dtype=np.float32)
    for block in stream_16k(path, fmt, channel=channel, max_seconds=max_seconds):
        data = np.concatenate([rest, block]) if rest.size else block
        whole = len(data) // FRAME * FRAME
        if whole:
            frames = data[:whole].reshape(-1, FRAME).astype(np.float64)
            levels.extend(np.sqrt(np.mean(np.square(frames), axis=1)).tolist())
        rest = data[whole:]
    if rest.size:
        levels.append(float(np.sqrt(np.mean(np.square(rest.astype(np.float64))))))
    return np.asarray(levels, dtype=np.float32)


def dbfs(level: float) -> float:
    return 20 * math.log10(level) if level > 1e-6 else -120.0


@dataclass(frozen=True)
class ChannelScan:
    """What the scan found: per-channel loud level (dBFS), silent channels, duplicates
    (channel → the earlier channel it repeats)."""

    count: int
    loud_dbfs: tuple[float, ...]
    silent: tuple[int, ...]
    duplicates: dict[int, int] = field(default_factory=dict)

    @property
    def distinct(self) -> tuple[int, ...]:
        """Channels with signal that repeat no earlier one."""
        return tuple(
            c for c in range(self.count) if c not in self.silent and c not in self.duplicates
        )


def same_signal(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> bool:
    """Two envelopes of one signal: they rise and fall together at the same level."""
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    loud = (a > 10 ** (SILENT_DBFS / 20)) | (b > 10 ** (SILENT_DBFS / 20))
    if loud.sum() < 3:
        return False
    la, lb = np.log10(a[loud] + 1e-9), np.log10(b[loud] + 1e-9)
    if la.std() < 1e-6 or lb.std() < 1e-6:
        return bool(np.allclose(la, lb, atol=DUPLICATE_LEVEL_DB / 20))
    correlation = float(np.corrcoef(la, lb)[0, 1])
    level_db = abs(float(np.median(la - lb))) * 20
    return correlation >= DUPLICATE_CORRELATION and level_db <= DUPLICATE_LEVEL_DB


def scan_channels(
    path: str | os.PathLike[str],
    fmt: AudioFormat,
    count: int,
    max_seconds: float | None = None,
) -> ChannelScan:
    """Scan ``count`` channels (see module docstring)."""
    envelopes = [envelope(path, fmt, c, max_seconds) for c in range(count)]
    loud = tuple(
        round(dbfs(float(np.percentile(e, 95))) if e.size else -120.0, 1) for e in envelopes
    )
    silent = tuple(c for c in range(count) if loud[c] < SILENT_DBFS)
    duplicates: dict[int, int] = {}
    for c in range(count):
        if c in silent:
            continue
        for earlier in range(c):
            if earlier in silent or earlier in duplicates:
                continue
            if same_signal(envelopes[earlier], envelopes[c]):
                duplicates[c] = earlier
                break
    return ChannelScan(count, loud, silent, duplicates)


@dataclass(frozen=True)
class Source:
    """One signal to transcribe: a channel index (None: the mono mix) and its speaker label
    (None: diarization labels the speakers)."""

    channel: int | None
    label: str | None


@dataclass(frozen=True)
class ChannelPlan:
    """The signals to transcribe, whether they are kept apart (``split``), and why."""

    sources: tuple[Source, ...]
    split: bool
    reason: str
    scan: ChannelScan | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": "split" if self.split else "single",
            "reason": self.reason,
            "transcribed": [{"channel": s.channel, "speaker": s.label} for s in self.sources],
        }
        if self.scan is not None:
            out.update(
                count=self.scan.count,
                loud_dbfs=list(self.scan.loud_dbfs),
                silent=list(self.scan.silent),
                duplicates={str(k): v for k, v in self.scan.duplicates.items()},
            )
        return out


def channel_label(channel: int, labels: Sequence[str]) -> str:
    """The speaker label of a channel: the configured one, else ``CH<n>`` (1-based)."""
    return labels[channel] if channel < len(labels) and labels[channel] else f"CH{channel + 1}"


def plan_channels(
    scan: ChannelScan | None, mode: ChannelMode, labels: Sequence[str] = ()
) -> ChannelPlan:
    """What to transcribe for ``scan`` (None: a mono file) under the job's ``mode``."""
    if scan is None or scan.count < 2:
        return ChannelPlan((Source(None, None),), False, "mono", scan)
    if mode == "mix":
        return ChannelPlan((Source(None, None),), False, "mixed down (channels=mix)", scan)
    with_signal = [c for c in range(scan.count) if c not in scan.silent]
    chosen = with_signal if mode == "split" else list(scan.distinct)
    if not chosen:
        return ChannelPlan((Source(None, None),), False, "every channel is silent", scan)
    if len(chosen) > MAX_SPLIT_CHANNELS:
        return ChannelPlan(
            (Source(None, None),),
            False,
            f"{len(chosen)} channels with speech, more than {MAX_SPLIT_CHANNELS}: mixed down",
            scan,
        )
    if len(chosen) == 1:
        only = chosen[0]
        why = (
            "the channels carry the same signal"
            if scan.duplicates
            else f"only channel {only + 1} has signal"
        )
        if mode == "split":
            return ChannelPlan(
                (Source(only, channel_label(only, labels)),),
                True,
                f"channels=split; {why}",
                scan,
            )
        source = Source(only if scan.silent else None, None)
        return ChannelPlan((source,), False, why, scan)
    reason = "channels=split" if mode == "split" else "the channels carry different speech"
    return ChannelPlan(
        tuple(Source(c, channel_label(c, labels)) for c in chosen), True, reason, scan
    )
