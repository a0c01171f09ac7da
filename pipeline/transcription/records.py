"""Engine-neutral transcription records: what every engine returns and what gets stored.

Frozen dataclasses on plain values, so a transcript can cross process boundaries, be compared in
tests and be written to JSON without any engine object attached.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    """One recognised word with its time span (seconds) and the decoder's probability.

    ``speaker`` is set by diarization, which labels words one by one (None: the segment's
    speaker applies)."""

    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return {
            "start": self.start,
            "end": self.end,
            "word": self.word,
            "probability": self.probability,
            "speaker": self.speaker,
        }


@dataclass(frozen=True)
class Segment:
    """One decoded segment; ``avg_logprob``, ``no_speech_prob`` and ``compression_ratio`` come
    from the decoder (None where an engine does not report it).

    Call audio (see docs/call-audio.md): ``channel`` is the 0-based channel the segment was
    transcribed from (None for mono or a mixed-down signal), ``speaker`` its label (a channel
    label, or a diarization cluster such as ``S1``), ``language`` the language it was decoded
    in, and ``flags`` what the hallucination guard found but kept.
    """

    id: int
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()
    compression_ratio: float | None = None
    speaker: str | None = None
    channel: int | None = None
    language: str | None = None
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON form; every word carries the segment's channel and language and its own
        speaker (the segment's unless diarization put the word elsewhere)."""
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "avg_logprob": self.avg_logprob,
            "no_speech_prob": self.no_speech_prob,
            "compression_ratio": self.compression_ratio,
            "speaker": self.speaker,
            "channel": self.channel,
            "language": self.language,
            "flags": list(self.flags),
            "words": [
                {
                    **word.to_dict(),
                    "speaker": word.speaker or self.speaker,
                    "channel": self.channel,
                    "language": self.language,
                }
                for word in self.words
            ],
        }


@dataclass(frozen=True)
class Transcript:
    """A whole transcription plus the provenance needed to reproduce or compare it.

    ``language_probability`` is None when the language was not detected (given by the caller or
    fixed by an English-only model). ``confidence`` is :func:`transcript_confidence` of the
    segments. ``parameters`` holds the decoding options actually used (JSON-serialisable).
    """

    text: str
    language: str
    language_probability: float | None
    duration: float
    segments: tuple[Segment, ...]
    engine: str
    engine_version: str
    model_name: str
    confidence: float
    parameters: dict[str, object] = field(default_factory=dict)

    def segments_json(self) -> list[dict[str, object]]:
        """The segments as JSON-ready dicts (for a JSONB column or an API response)."""
        return segments_to_json(self.segments)


def segments_to_json(segments: Iterable[Segment]) -> list[dict[str, object]]:
    """Plain dicts (id/start/end/text/avg_logprob/no_speech_prob/words) for ``json.dumps``."""
    return [segment.to_dict() for segment in segments]


def segment_confidence(avg_logprob: float) -> float:
    """``exp(avg_logprob)``: the geometric-mean token probability of a segment, in [0, 1]."""
    if math.isnan(avg_logprob):
        return 0.0
    return min(1.0, max(0.0, math.exp(min(avg_logprob, 0.0))))


def transcript_confidence(segments: Sequence[Segment]) -> float:
    """One number in [0, 1] for "how sure was the decoder", comparable across engines.

    Derivation: every segment's confidence is ``exp(avg_logprob)`` (the geometric mean of its
    token probabilities); the transcript's confidence is the mean of those weighted by segment
    duration, so a long segment counts more than a one-word one. Segments of zero length get
    equal weights. No segments (silence, or everything filtered as non-speech) gives 0.0.
    """
    if not segments:
        return 0.0
    weights = [max(0.0, segment.end - segment.start) for segment in segments]
    if sum(weights) <= 0.0:
        weights = [1.0] * len(segments)
    total = sum(weights)
    value = sum(
        weight * segment_confidence(segment.avg_logprob)
        for weight, segment in zip(weights, segments, strict=True)
    )
    return min(1.0, max(0.0, value / total))


def join_segment_text(segments: Iterable[Segment]) -> str:
    """The transcript text: segment texts stripped and joined by single spaces."""
    return " ".join(text for text in (segment.text.strip() for segment in segments) if text)
