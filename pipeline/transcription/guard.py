"""Hallucination guard: find Whisper's known failure modes per segment and flag or drop them.

Whisper invents text in two recognisable ways: *repetition loops* (the decoder gets stuck and
writes one phrase over and over) and *text over silence or noise* (a plausible sentence where
nobody spoke). Each segment is checked on signals the decoder and the audio give:

* ``compression_ratio`` — zlib ratio of the text (Whisper's own loop signal; > 2.4 is a loop);
* repeated n-grams — the longest run of one 1..6-word phrase repeated back to back, and the
  share of the segment's words it covers;
* ``no_speech_prob`` with ``avg_logprob`` — Whisper's own "nothing was said" rule (both past
  their thresholds: silence decoded into words);
* the audio level under the segment (dBFS) — text over a near-silent stretch.

Decision: a segment is **dropped** when the evidence is strong (a loop covering most of it, the
decoder's own no-speech rule, or near-silent audio) and **flagged** (kept, with ``flags``) when
one weaker signal fires. Every decision is returned as a record so the transcription's metadata
says what was removed and why; nothing disappears without a trace.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from pipeline.transcription.records import Segment

COMPRESSION_RATIO_LIMIT = 2.4  # Whisper's compression_ratio_threshold
NO_SPEECH_LIMIT = 0.6  # Whisper's no_speech_threshold ...
LOGPROB_LIMIT = -1.0  # ... together with its log_prob_threshold
SILENCE_DBFS = -50.0  # a segment whose audio stays below this is text over silence
MAX_NGRAM = 6
LOOP_MIN_REPEATS = {1: 5}  # one word five times running; longer phrases three times
LOOP_DEFAULT_REPEATS = 3
LOOP_DROP_SHARE = 0.6  # a loop covering this share of the words: the segment is the loop

_WORD = re.compile(r"[\w']+", re.UNICODE)

LevelFn = Callable[[float, float], float | None]
"""(start, end) in seconds → the audio's RMS level there in dBFS (None: unknown)."""


@dataclass(frozen=True)
class Decision:
    """What the guard did with one segment (``action``: ``flag`` or ``drop``)."""

    start: float
    end: float
    text: str
    action: str
    reasons: tuple[str, ...]
    channel: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text[:200],
            "action": self.action,
            "reasons": list(self.reasons),
            "channel": self.channel,
        }


def compression_ratio(text: str) -> float:
    """zlib compression ratio of ``text`` (as Whisper computes it); 0.0 for empty text."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


def longest_loop(text: str) -> tuple[int, int, int]:
    """``(n, repeats, words)`` of the longest back-to-back repetition of one n-gram in
    ``text`` (case-folded words), with ``words`` the total words of the text. ``(0, 1, w)``
    when nothing repeats."""
    tokens = [t.casefold() for t in _WORD.findall(text)]
    best = (0, 1)
    for n in range(1, min(MAX_NGRAM, len(tokens) // 2) + 1):
        for start in range(len(tokens) - n):
            gram = tokens[start : start + n]
            repeats = 1
            at = start + n
            while tokens[at : at + n] == gram:
                repeats += 1
                at += n
            if repeats > 1 and repeats * n > best[0] * best[1]:
                best = (n, repeats)
    return best[0], best[1], len(tokens)


def is_loop(n: int, repeats: int) -> bool:
    return n > 0 and repeats >= LOOP_MIN_REPEATS.get(n, LOOP_DEFAULT_REPEATS)


def judge(segment: Segment, level_dbfs: float | None = None) -> tuple[str, tuple[str, ...]]:
    """``(action, reasons)`` for one segment: action ``keep``, ``flag`` or ``drop``."""
    reasons: list[str] = []
    strong = False
    ratio = segment.compression_ratio
    if ratio is None:
        ratio = compression_ratio(segment.text)
    n, repeats, words = longest_loop(segment.text)
    if is_loop(n, repeats):
        share = n * repeats / max(words, 1)
        reasons.append(f"repetition: {n}-word phrase x{repeats} ({share:.0%} of the words)")
        strong = strong or share >= LOOP_DROP_SHARE
    if ratio > COMPRESSION_RATIO_LIMIT:
        reasons.append(f"compression ratio {ratio:.2f} > {COMPRESSION_RATIO_LIMIT}")
        strong = strong or is_loop(n, repeats)
    if segment.no_speech_prob > NO_SPEECH_LIMIT:
        if segment.avg_logprob < LOGPROB_LIMIT:
            reasons.append(
                f"no speech: no_speech_prob {segment.no_speech_prob:.2f} with avg_logprob "
                f"{segment.avg_logprob:.2f}"
            )
            strong = True
        else:
            reasons.append(f"no_speech_prob {segment.no_speech_prob:.2f}")
    if level_dbfs is not None and level_dbfs < SILENCE_DBFS:
        reasons.append(f"text over silence: audio at {level_dbfs:.0f} dBFS")
        strong = True
    if not reasons:
        return "keep", ()
    return ("drop" if strong else "flag"), tuple(reasons)


def guard_segments(
    segments: Iterable[Segment], level: LevelFn | None = None
) -> tuple[list[Segment], list[Decision]]:
    """The segments to keep (flagged ones carry ``flags``) and a decision per segment that was
    flagged or dropped. ``level`` gives the audio level under a segment (see :data:`LevelFn`)."""
    kept: list[Segment] = []
    decisions: list[Decision] = []
    for segment in segments:
        dbfs = level(segment.start, segment.end) if level is not None else None
        action, reasons = judge(segment, dbfs)
        if action == "keep":
            kept.append(segment)
            continue
        decisions.append(
            Decision(segment.start, segment.end, segment.text, action, reasons, segment.channel)
        )
        if action == "flag":
            kept.append(replace(segment, flags=(*segment.flags, *reasons)))
    return kept, decisions


def rms_dbfs(samples: Any) -> float:
    """RMS level of float samples in dBFS (-inf → -120 for digital silence)."""
    import numpy as np

    if len(samples) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 1e-6 else -120.0
