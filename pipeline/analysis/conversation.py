"""Conversation analytics: who talked how much, when they talked over each other, and how.

Computed from the timed, speaker-labelled segments of a transcript (channels or diarization
give the labels; an unlabelled transcript counts as one speaker, ``unknown``). Times are
seconds from the start, so a supervisor can jump to each moment.

Result shape (``AnalysisResult.result``)::

    {
      "duration": 62.4, "speech_seconds": 51.0, "silence_seconds": 11.4, "silence_share": 0.18,
      "overlap_seconds": 3.1, "turns": 14, "interruptions": 2,
      "speakers": {
        "agent": {"talk_seconds": 30.2, "talk_ratio": 0.57, "words": 88, "words_per_minute": 175,
                  "turns": 7, "interruptions_made": 1, "interrupted": 1,
                  "longest_monologue": {"start": 3.2, "end": 15.0, "seconds": 11.8},
                  "sentiment": {"label": "positive", "score": 0.41, ...},
                  "first_spoke": 0.4, "last_spoke": 60.1},
        ...
      },
      "longest_monologue": {"speaker": "agent", "start": 3.2, "end": 15.0, "seconds": 11.8},
      "interruption_moments": [{"at": 20.1, "by": "customer", "interrupted": "agent",
                                "overlap_seconds": 1.2}, ...],
      "overlap_moments": [{"start": 20.1, "end": 21.3, "speakers": ["agent", "customer"]}, ...],
      "timeline": [{"speaker": "agent", "start": 0.4, "end": 15.0}, ...]
    }

Definitions: *talk time* is the union of a speaker's segments; *overlap* is time where two or
more speakers' segments run at once; *silence* is the duration not covered by any segment; a
*turn* is a maximal run of one speaker's consecutive segments (in start order); an
*interruption* is a segment that starts while another speaker's segment is still running at
least :data:`INTERRUPTION_MIN_OVERLAP` seconds beyond that start (back-channel "mm-hm"s
shorter than that are overlaps, not interruptions); the *longest monologue* is the longest
turn. Sentiment per speaker scores each speaker's words together with the configured sentiment
model. Lists of moments are capped at :data:`MAX_MOMENTS`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from db.models import AnalysisType
from pipeline.analysis.records import AnalysisInput, AnalysisResult, SegmentText
from pipeline.analysis.sentiment import _backend, score_texts
from pipeline.settings import Settings

UNKNOWN = "unknown"
INTERRUPTION_MIN_OVERLAP = 0.3
MAX_MOMENTS = 200

Span = tuple[float, float]


def union(spans: list[Span]) -> list[Span]:
    """Sorted, merged intervals."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def length(spans: list[Span]) -> float:
    return sum(end - start for start, end in spans)


def overlaps(per_speaker: dict[str, list[Span]]) -> list[tuple[float, float, list[str]]]:
    """Stretches where two or more speakers talk at once, with who (a sweep over edges)."""
    edges: list[tuple[float, int, str]] = []
    for speaker, spans in per_speaker.items():
        for start, end in spans:
            edges += [(start, 1, speaker), (end, -1, speaker)]
    edges.sort(key=lambda e: (e[0], e[1]))
    active: dict[str, int] = defaultdict(int)
    out: list[tuple[float, float, list[str]]] = []
    previous = None
    for at, delta, speaker in edges:
        talking = sorted(s for s, n in active.items() if n > 0)
        if previous is not None and at > previous and len(talking) >= 2:
            if out and out[-1][1] == previous and out[-1][2] == talking:
                out[-1] = (out[-1][0], at, talking)
            else:
                out.append((previous, at, talking))
        active[speaker] += delta
        previous = at
    return out


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float
    words: int


def turns_of(segments: list[SegmentText]) -> list[Turn]:
    turns: list[Turn] = []
    for seg in sorted(segments, key=lambda s: s.start):
        who = seg.speaker or UNKNOWN
        words = len(seg.text.split())
        if turns and turns[-1].speaker == who:
            last = turns[-1]
            turns[-1] = Turn(who, last.start, max(last.end, seg.end), last.words + words)
        else:
            turns.append(Turn(who, seg.start, seg.end, words))
    return turns


def interruptions(segments: list[SegmentText]) -> list[dict[str, Any]]:
    """Segments that start while another speaker's segment keeps running (see module)."""
    ordered = sorted(segments, key=lambda s: s.start)
    found = []
    for index, seg in enumerate(ordered):
        who = seg.speaker or UNKNOWN
        for earlier in ordered[:index]:
            other = earlier.speaker or UNKNOWN
            if other == who or earlier.start >= seg.start:
                continue
            running = earlier.end - seg.start
            if running >= INTERRUPTION_MIN_OVERLAP:
                found.append(
                    {
                        "at": round(seg.start, 2),
                        "by": who,
                        "interrupted": other,
                        "overlap_seconds": round(min(running, seg.end - seg.start), 2),
                    }
                )
                break
    return found


def _r(value: float) -> float:
    return round(value, 3)


def analyze_conversation(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """Conversation analytics of ``inp`` (see module docstring)."""
    segments = [s for s in inp.segments if s.end > s.start and s.text.strip()]
    per_speaker: dict[str, list[Span]] = defaultdict(list)
    words: dict[str, int] = defaultdict(int)
    texts: dict[str, list[str]] = defaultdict(list)
    for seg in segments:
        who = seg.speaker or UNKNOWN
        per_speaker[who].append((seg.start, seg.end))
        words[who] += len(seg.text.split())
        texts[who].append(seg.text)
    talk = {who: union(spans) for who, spans in per_speaker.items()}
    speech = union([span for spans in per_speaker.values() for span in spans])
    end = max((s.end for s in segments), default=0.0)
    duration = max(inp.duration or 0.0, end)
    speech_seconds = length(speech)
    overlapping = overlaps(talk)
    turns = turns_of(segments)
    cut_ins = interruptions(segments)
    total_talk = sum(length(spans) for spans in talk.values()) or 1.0
    speakers_sorted = sorted(talk, key=lambda w: -length(talk[w]))
    sentiments = score_texts([" ".join(texts[w]) for w in speakers_sorted], _backend(settings))
    longest_overall: Turn | None = max(turns, key=lambda t: t.end - t.start, default=None)
    speakers: dict[str, Any] = {}
    for who, sentiment in zip(speakers_sorted, sentiments, strict=True):
        seconds = length(talk[who])
        own = [t for t in turns if t.speaker == who]
        longest = max(own, key=lambda t: t.end - t.start)
        speakers[who] = {
            "talk_seconds": _r(seconds),
            "talk_ratio": round(seconds / total_talk, 4),
            "words": words[who],
            "words_per_minute": round(words[who] / (seconds / 60), 1) if seconds > 0 else 0.0,
            "turns": len(own),
            "interruptions_made": sum(c["by"] == who for c in cut_ins),
            "interrupted": sum(c["interrupted"] == who for c in cut_ins),
            "longest_monologue": {
                "start": _r(longest.start),
                "end": _r(longest.end),
                "seconds": _r(longest.end - longest.start),
            },
            "sentiment": sentiment,
            "first_spoke": _r(talk[who][0][0]),
            "last_spoke": _r(talk[who][-1][1]),
        }
    result: dict[str, Any] = {
        "duration": _r(duration),
        "speech_seconds": _r(speech_seconds),
        "silence_seconds": _r(max(0.0, duration - speech_seconds)),
        "silence_share": round(max(0.0, duration - speech_seconds) / duration, 4)
        if duration > 0
        else 0.0,
        "overlap_seconds": _r(sum(b - a for a, b, _ in overlapping)),
        "turns": len(turns),
        "interruptions": len(cut_ins),
        "speakers": speakers,
        "longest_monologue": (
            {
                "speaker": longest_overall.speaker,
                "start": _r(longest_overall.start),
                "end": _r(longest_overall.end),
                "seconds": _r(longest_overall.end - longest_overall.start),
            }
            if longest_overall
            else None
        ),
        "interruption_moments": cut_ins[:MAX_MOMENTS],
        "overlap_moments": [
            {"start": _r(a), "end": _r(b), "speakers": who}
            for a, b, who in overlapping[:MAX_MOMENTS]
        ],
        "timeline": [
            {"speaker": t.speaker, "start": _r(t.start), "end": _r(t.end)}
            for t in turns[:MAX_MOMENTS]
        ],
    }
    return AnalysisResult(
        analysis_type=AnalysisType.CONVERSATION,
        result=result,
        model_name=f"conversation+{settings.sentiment_model}",
        parameters={
            "interruption_min_overlap": INTERRUPTION_MIN_OVERLAP,
            "unlabelled_speaker": UNKNOWN,
            "sentiment_model": settings.sentiment_model,
        },
    )
