"""The transcript as the file page shows it: timed words in speaker turns, where a keyword or an
entity is said, a word diff of two versions, and the moment a search hit is spoken.

Plain functions over the stored segments (``transcriptions.segments``: ``start``, ``end``,
``text``, ``speaker``, ``channel`` and ``words`` with their own ``start``/``end``/``word``), so
they are tested without a browser. A segment without word times becomes one timed piece.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SPEAKER_COLOURS = 8  # CSS classes spk-0 .. spk-7
_TOKEN = re.compile(r"[\w']+", re.UNICODE)


@dataclass(frozen=True)
class Word:
    """One timed word (or an untimed segment's whole text) in reading order."""

    index: int
    start: float
    end: float
    text: str
    speaker: str | None


@dataclass
class Turn:
    """Consecutive words of one speaker (or of nobody in particular)."""

    speaker: str | None
    colour: int | None
    start: float
    words: list[Word] = field(default_factory=list)


def normal(text: str) -> list[str]:
    """Lower-case word tokens, punctuation dropped: how words are matched against phrases."""
    return [t.lower() for t in _TOKEN.findall(text)]


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def words_of(segments: Iterable[Mapping[str, Any]]) -> list[Word]:
    """Every word of the transcript with its time and speaker."""
    found: list[Word] = []
    for segment in segments:
        seg_start = _float(segment.get("start"), 0.0)
        seg_end = _float(segment.get("end"), seg_start)
        seg_speaker = segment.get("speaker")
        timed = [w for w in segment.get("words") or () if str(w.get("word", "")).strip()]
        if not timed:
            text = " ".join(str(segment.get("text", "")).split())
            if text:
                found.append(Word(len(found), seg_start, seg_end, text, _label(seg_speaker)))
            continue
        for word in timed:
            start = _float(word.get("start"), seg_start)
            speaker = word.get("speaker", seg_speaker)
            found.append(
                Word(
                    len(found),
                    start,
                    _float(word.get("end"), start),
                    " ".join(str(word["word"]).split()),
                    _label(speaker),
                )
            )
    return found


def _label(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def turns(words: Sequence[Word]) -> list[Turn]:
    """Words grouped into speaker turns; each speaker keeps one colour class."""
    colours: dict[str, int] = {}
    grouped: list[Turn] = []
    for word in words:
        if not grouped or grouped[-1].speaker != word.speaker:
            colour = None
            if word.speaker is not None:
                colour = colours.setdefault(word.speaker, len(colours) % SPEAKER_COLOURS)
            grouped.append(Turn(word.speaker, colour, word.start))
        grouped[-1].words.append(word)
    return grouped


def occurrences(phrase: str, words: Sequence[Word], limit: int = 50) -> list[float]:
    """Start times where ``phrase`` is said (its tokens in a row, case and punctuation aside)."""
    wanted = normal(phrase)
    if not wanted:
        return []
    # One token list for the whole transcript, remembering which word each token came from.
    tokens: list[tuple[str, int]] = [(t, w.index) for w in words for t in normal(w.text)]
    times: list[float] = []
    size = len(wanted)
    for i in range(len(tokens) - size + 1):
        if all(tokens[i + k][0] == wanted[k] for k in range(size)):
            time = words[tokens[i][1]].start
            if not times or times[-1] != time:
                times.append(time)
            if len(times) >= limit:
                break
    return times


DiffOp = Literal["same", "added", "removed"]


def word_diff(before: str, after: str) -> list[tuple[DiffOp, str]]:
    """What changed from ``before`` to ``after``, word by word (runs of equal words merged)."""
    old, new = before.split(), after.split()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    out: list[tuple[DiffOp, str]] = []
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            out.append(("same", " ".join(old[a1:a2])))
            continue
        if a2 > a1:
            out.append(("removed", " ".join(old[a1:a2])))
        if b2 > b1:
            out.append(("added", " ".join(new[b1:b2])))
    return out


def hit_time(snippet: str, words: Sequence[Word], marker: str = "**") -> float | None:
    """When the first highlighted word of a search snippet is spoken (None: not found)."""
    parts = snippet.split(marker)
    marked = [parts[i] for i in range(1, len(parts), 2)]
    for hit in marked:
        times = occurrences(hit, words, limit=1)
        if times:
            return times[0]
    return None


def sentiment_points(result: Mapping[str, Any] | None) -> list[tuple[float, float]]:
    """(time, score in -1..1) per scored segment of a sentiment analysis, in time order."""
    if not result:
        return []
    points = []
    for item in result.get("segments") or ():
        start, end = _float(item.get("start"), 0.0), _float(item.get("end"), 0.0)
        points.append(((start + end) / 2, _float(item.get("score"), 0.0)))
    return sorted(points)
