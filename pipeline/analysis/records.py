"""Plain values that go into and come out of the text analyses.

Kept free of ORM and model types so the analyses can be tested, and run by workers, on plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from db.models import AnalysisType  # the one list of analysis types, shared with the schema

# The analyses every file gets (the others run on request or when their input exists).
ANALYSIS_TYPES: tuple[AnalysisType, ...] = (
    AnalysisType.SENTIMENT,
    AnalysisType.SUMMARY,
    AnalysisType.KEYWORDS,
    AnalysisType.ENTITIES,
    AnalysisType.CONVERSATION,
    AnalysisType.CHAPTERS,
    AnalysisType.TOPICS,
)


@dataclass(frozen=True)
class WordText:
    """One timed word of a segment (PII spans map back to these, and through them to times)."""

    start: float
    end: float
    word: str


@dataclass(frozen=True)
class SegmentText:
    """One timed piece of a transcript, as the transcriber produced it (seconds from the start)."""

    start: float
    end: float
    text: str
    speaker: str | None = None  # channel label or diarization cluster (None: unlabelled)
    words: tuple[WordText, ...] = ()  # empty when the engine gave no word times


def segments_from_stored(stored: Iterable[Mapping[str, Any]]) -> tuple[SegmentText, ...]:
    """The analyses' segments from a transcription's stored ``segments`` JSON (the one reading
    of that shape, for the analyze stage and for analyses of a redacted transcript)."""
    return tuple(
        SegmentText(
            start=float(s["start"]),
            end=float(s["end"]),
            text=str(s["text"]),
            speaker=s.get("speaker"),
            words=tuple(
                WordText(float(w["start"]), float(w["end"]), str(w["word"]))
                for w in s.get("words") or ()
            ),
        )
        for s in stored
    )


@dataclass(frozen=True)
class AnalysisInput:
    """A transcript to analyse: its full text plus the timed segments it was built from."""

    text: str
    segments: tuple[SegmentText, ...] = ()
    language: str | None = None
    duration: float | None = None  # seconds of audio (silence share needs it)


@dataclass(frozen=True)
class AnalysisResult:
    """One analysis outcome, ready to store: ``result`` is JSON-serialisable.

    ``seconds`` is the wall time of the analysis, including a model's first (lazy) load in this
    process, so stage timings in the database show the real cost of a cold worker.
    """

    analysis_type: AnalysisType
    result: dict[str, Any]
    model_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
