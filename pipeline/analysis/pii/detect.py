"""Personal data in a transcript: which words, when, what kind, how sure.

The words of every segment (their times from the transcriber; a segment without word times is
split on spaces and its time shared out by characters) are normalised
(:mod:`pipeline.analysis.pii.spoken`), Presidio runs on the normalised text
(:mod:`pipeline.analysis.pii.engine`) in windows of whole pieces, and each span found maps back to
the words it came from. Presidio's entity names become our types (:data:`PII_TYPES`); where two
findings cover the same words the more specific type wins (an e-mail over the person in it, a card
over a phone number, then the higher score).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.analysis.pii.engine import LANGUAGE, PRESIDIO_ENTITIES, load_pii_engine
from pipeline.analysis.pii.spoken import Normalised, normalise
from pipeline.analysis.records import AnalysisInput
from pipeline.pii_types import PII_TYPES, pii_types_of

__all__ = ["PII_TYPES", "Finding", "Token", "detect", "pii_types_of", "resolve", "tokens_of"]

FROM_PRESIDIO = {
    "PERSON": "person",
    "SPOKEN_PERSON": "person",
    "PHONE_NUMBER": "phone",
    "EMAIL_ADDRESS": "email",
    "SPOKEN_EMAIL": "email",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "bank_account",
    "BANK_ACCOUNT": "bank_account",
    "US_SSN": "ssn",
    "SPOKEN_SSN": "ssn",
    "LOCATION": "address",
    "STREET_ADDRESS": "address",
    "IP_ADDRESS": "ip",
}
# Higher wins an overlap (before the score).
PRIORITY = {
    "email": 9,
    "card": 8,
    "ssn": 7,
    "bank_account": 6,
    "ip": 6,
    "phone": 5,
    "date_of_birth": 4,
    "address": 3,
    "person": 2,
}
_BIRTH_CUE = re.compile(r"\b(?:born|birth|dob|d\.o\.b|birthday)\b[^.?!]{0,30}$", re.IGNORECASE)
# Words after which a capitalised word is what someone is called, not where they are: spaCy
# tags "Macon" in "you can call me Macon 447 …" (Whisper's "call me back on") as a place. A
# place the caller names comes after "in", "at", "from", "to" … ("I live in Macon").
_NAMED_AS = re.compile(
    r"\b(?:call me|call him|call her|this is|my name is|my name's|"
    r"name is|i am|i'm|speaking with|speak to|talking to|spoke with|spoke to|ask for)"
    r"[\s,:]*$",
    re.IGNORECASE,
)
WINDOW_CHARS = 4000  # Presidio (spaCy) per call: bounded memory on long calls
OVERLAP_PIECES = 12  # words shared by neighbouring windows, so no span is cut at a seam


@dataclass(frozen=True)
class Token:
    """One word of the transcript with its time and where it sits (segment, word index)."""

    text: str
    start: float
    end: float
    segment: int
    word: int | None  # index into the segment's words; None when the segment had none
    last_word: int | None = None  # the last word joined into this token (None: ``word``)

    @property
    def words(self) -> range:
        """Indices of the segment's words behind this token (empty without word times)."""
        if self.word is None:
            return range(0)
        return range(self.word, (self.last_word if self.last_word is not None else self.word) + 1)


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: tokens ``first``..``last`` (inclusive) of the transcript."""

    type: str
    first: int
    last: int
    start: float
    end: float
    score: float
    text: str  # as transcribed
    normalized: str  # as detected ("4111111111111111")
    recognizer: str


def tokens_of(inp: AnalysisInput) -> list[Token]:
    """Every word of ``inp`` in order, with times (see the module docstring)."""
    tokens: list[Token] = []
    for s, segment in enumerate(inp.segments):
        if segment.words:
            for i, w in enumerate(segment.words):
                text = w.word.strip()
                if not text:
                    continue
                previous = tokens[-1] if tokens else None
                if previous is not None and previous.segment == s and not w.word[:1].isspace():
                    # Whisper splits "maria.luisatoutlook.com" or "4.0815…" into several
                    # words; one without a leading space continues the word before it.
                    tokens[-1] = Token(
                        previous.text + text, previous.start, w.end, s, previous.word, i
                    )
                    continue
                tokens.append(Token(text, w.start, w.end, s, i))
            continue
        parts = segment.text.split()
        total = sum(len(p) + 1 for p in parts) or 1
        at, span = 0, max(0.0, segment.end - segment.start)
        for part in parts:
            begin = segment.start + span * at / total
            at += len(part) + 1
            tokens.append(Token(part, begin, segment.start + span * at / total, s, None))
    if not inp.segments and inp.text.strip():
        tokens = [Token(p, 0.0, 0.0, 0, None) for p in inp.text.split()]
    return tokens


def _windows(norm: Normalised) -> list[tuple[int, int]]:
    """Character windows of at most about :data:`WINDOW_CHARS`, on piece boundaries."""
    pieces = norm.pieces
    if not pieces or len(norm.text) <= WINDOW_CHARS:
        return [(0, len(norm.text))]
    out: list[tuple[int, int]] = []
    first = 0
    while first < len(pieces):
        last = first
        while last + 1 < len(pieces) and pieces[last + 1].end - pieces[first].start <= WINDOW_CHARS:
            last += 1
        out.append((pieces[first].start, pieces[last].end))
        if last + 1 >= len(pieces):
            break
        first = max(first + 1, last + 1 - OVERLAP_PIECES)
    return out


def _our_type(entity: str, norm: Normalised, start: int) -> str | None:
    """Our type of a Presidio finding at ``start``, or None when it is not personal data here:
    a date is a date of birth only after a birth cue; a spaCy place right after "call me",
    "this is", "my name is" … is a name (or a misheard word), not a location."""
    before = norm.text[max(0, start - 40) : start]
    if entity == "DATE_TIME":
        return "date_of_birth" if _BIRTH_CUE.search(before) else None
    if entity == "LOCATION" and _NAMED_AS.search(before):
        return None
    return FROM_PRESIDIO.get(entity)


def detect(tokens: Sequence[Token], spacy_model: str, min_score: float) -> list[Finding]:
    """The personal data in ``tokens``, in transcript order, overlaps resolved."""
    norm = normalise([t.text for t in tokens])
    if not norm.text:
        return []
    engine = load_pii_engine(spacy_model)
    candidates: list[Finding] = []
    for begin, end in _windows(norm):
        for hit in engine.analyze(
            norm.text[begin:end], language=LANGUAGE, entities=list(PRESIDIO_ENTITIES)
        ):
            start, stop = begin + hit.start, begin + hit.end
            kind = _our_type(hit.entity_type, norm, start)
            score = 0.85 if kind == "date_of_birth" else float(hit.score)
            if kind is None or score < min_score:
                continue
            words = norm.words_of(start, stop)
            if words is None:
                continue
            first, last = words
            recognizer = (hit.recognition_metadata or {}).get("recognizer_name", hit.entity_type)
            candidates.append(
                Finding(
                    type=kind,
                    first=first,
                    last=last,
                    start=tokens[first].start,
                    end=tokens[last].end,
                    score=round(score, 4),
                    text=" ".join(t.text for t in tokens[first : last + 1]),
                    normalized=norm.text[start:stop],
                    recognizer=str(recognizer),
                )
            )
    return resolve(candidates)


def merge_same_type(candidates: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings of one type as one: the words of both, the higher score.

    Two recognisers often read one item differently: Presidio's e-mail pattern finds
    ``johnson@outlook.com`` inside what the e-mail cue found ("Susan. Johnson.outlook.com",
    the address with its "dot" misheard), spaCy finds "Maria" inside the name cue's "Maria
    Gonzalez". The item is the union; redacting only the narrower reading would leave part of
    it (and the person "Susan" would outrank nothing). The value kept is the widest reading's.
    """
    merged: list[Finding] = []
    for finding in sorted(candidates, key=lambda f: (f.type, f.first, -f.last)):
        last = merged[-1] if merged else None
        if last is None or last.type != finding.type or finding.first > last.last:
            merged.append(finding)
            continue
        wide = last if last.last - last.first >= finding.last - finding.first else finding
        merged[-1] = dataclasses.replace(
            wide,
            first=last.first,
            start=last.start,
            last=max(last.last, finding.last),
            end=max(last.end, finding.end),
            score=max(last.score, finding.score),
            text=last.text if last.last >= finding.last else _joined(last, finding),
        )
    return merged


def _joined(left: Finding, right: Finding) -> str:
    # Tokens of ``left`` then those of ``right`` beyond it (``text`` is tokens joined by spaces).
    extra = right.text.split()[left.last - right.first + 1 :]
    return " ".join([left.text, *extra])


def resolve(candidates: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping findings (in words): same-type readings merged, then priority, then
    score, then length decide."""
    ranked = sorted(
        merge_same_type(candidates),
        key=lambda f: (-PRIORITY[f.type], -f.score, -(f.last - f.first), f.first),
    )
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.last < k.first or k.last < finding.first for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.first)
