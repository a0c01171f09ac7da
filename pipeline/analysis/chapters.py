"""Auto chapters: the transcript cut into topical sections, each with a headline, gist, summary.

TextTiling (Hearst, 1997) on sentence embeddings: every sentence is embedded with the MiniLM
model (the embeddings the summary and keywords already computed, cached per process); at each
gap between two sentences the similarity of the :data:`WINDOW` sentences before and after is
taken, and the *depth* of each similarity valley (how far it lies below the highest similarity
on its left plus on its right) marks a topic change. Gaps deeper than ``mean - std / 2`` of all
depths become boundaries, greedily by depth, keeping every chapter at least
:data:`MIN_SENTENCES` sentences long. A transcript of fewer than ``2 * MIN_SENTENCES``
sentences is one chapter.

Each chapter gets (the shape of AssemblyAI's ``auto_chapters``, times in seconds)::

    {"chapters": [{"start": 0.0, "end": 41.2, "start_sentence": 0, "end_sentence": 6,
                   "headline": "refund for the broken printer", "gist": "broken printer",
                   "summary": "The most central sentence of the chapter."}, ...]}

``headline`` is the chapter's best key phrase (KeyBERT, up to three words), ``gist`` its best
one- or two-word phrase, ``summary`` its most central sentence that is at most half of the
chapter's words (empty when none is: a chapter of one long sentence is not summarised by itself).
Times come from the segments: a sentence starts at the segment holding its first character.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from db.models import AnalysisType
from pipeline.analysis.chunking import Span, word_count
from pipeline.analysis.embedding import Matrix, normalize_rows, sentence_embeddings
from pipeline.analysis.models import load_keybert
from pipeline.analysis.records import AnalysisInput, AnalysisResult
from pipeline.settings import Settings

WINDOW = 3
MIN_SENTENCES = 3
MAX_CHAPTERS = 30


@dataclass(frozen=True)
class Chapter:
    """Sentences ``first``..``last`` (inclusive) of the transcript, with their times."""

    first: int
    last: int
    start: float
    end: float


def gap_similarities(vectors: Matrix, window: int = WINDOW) -> list[float]:
    """Cosine similarity across each gap (between sentence i-1 and i, for i = 1..n-1)."""
    out: list[float] = []
    for i in range(1, len(vectors)):
        left = normalize_rows(vectors[max(0, i - window) : i].mean(axis=0, keepdims=True))
        right = normalize_rows(vectors[i : i + window].mean(axis=0, keepdims=True))
        out.append(float((left @ right.T)[0, 0]))
    return out


def depth_scores(similarities: list[float]) -> list[float]:
    """TextTiling depth of each gap: rise to the highest point on the left plus on the right."""
    depths = []
    for i, value in enumerate(similarities):
        left = max(similarities[: i + 1])
        right = max(similarities[i:])
        depths.append((left - value) + (right - value))
    return depths


def boundaries(depths: list[float], count: int, min_size: int = MIN_SENTENCES) -> list[int]:
    """Sentence indices that start a new chapter (gap ``g`` is before sentence ``g + 1``)."""
    if count < 2 * min_size or not depths:
        return []
    cutoff = float(np.mean(depths) - np.std(depths) / 2)
    chosen: list[int] = []
    for gap in sorted(range(len(depths)), key=lambda g: -depths[g]):
        if depths[gap] <= max(cutoff, 1e-6) or len(chosen) >= MAX_CHAPTERS - 1:
            break
        start = gap + 1
        edges = sorted([0, *chosen, count])
        k = bisect.bisect_right(edges, start)
        if start - edges[k - 1] >= min_size and edges[k] - start >= min_size:
            chosen.append(start)
    return sorted(chosen)


def sentence_times(inp: AnalysisInput, sentences: tuple[Span, ...]) -> list[tuple[float, float]]:
    """(start, end) seconds of each sentence, from the segment holding its first/last char."""
    if not inp.segments:
        return [(0.0, 0.0)] * len(sentences)
    offsets: list[int] = []
    at = 0
    for segment in inp.segments:
        found = inp.text.find(segment.text.strip(), at)
        offsets.append(found if found >= 0 else at)
        at = (found if found >= 0 else at) + len(segment.text.strip())
    times = []
    for span in sentences:
        a = max(0, bisect.bisect_right(offsets, span.start) - 1)
        b = max(0, bisect.bisect_right(offsets, max(span.start, span.end - 1)) - 1)
        times.append((inp.segments[a].start, inp.segments[b].end))
    return times


def chapter_spans(inp: AnalysisInput, settings: Settings) -> tuple[list[Chapter], Any]:
    """The chapters of ``inp`` and the sentence embeddings they were cut from."""
    embedded = sentence_embeddings(settings.embedding_model, settings.hub_downloads, inp.text)
    count = len(embedded.sentences)
    if count == 0:
        return [], embedded
    cuts = boundaries(depth_scores(gap_similarities(embedded.vectors)), count)
    times = sentence_times(inp, embedded.sentences)
    edges = [0, *cuts, count]
    chapters = [
        Chapter(a, b - 1, times[a][0], times[b - 1][1]) for a, b in itertools.pairwise(edges)
    ]
    return chapters, embedded


def _phrases(text: str, settings: Settings, ngrams: tuple[int, int]) -> str:
    model = load_keybert(settings.embedding_model, settings.hub_downloads)
    found = model.extract_keywords(
        text, keyphrase_ngram_range=ngrams, stop_words="english", top_n=1
    )
    return str(found[0][0]) if found else ""


def describe(chapter: Chapter, embedded: Any, settings: Settings) -> dict[str, Any]:
    """Headline, gist and summary of one chapter."""
    sentences = embedded.sentences[chapter.first : chapter.last + 1]
    text = " ".join(s.text for s in sentences)
    vectors = embedded.vectors[chapter.first : chapter.last + 1]
    centre = normalize_rows(vectors.mean(axis=0, keepdims=True))
    scores = [float(x) for x in vectors @ centre[0]]
    order = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    limit = word_count(text) / 2
    summary = next((sentences[i].text for i in order if word_count(sentences[i].text) <= limit), "")
    return {
        "start": round(chapter.start, 3),
        "end": round(chapter.end, 3),
        "start_sentence": chapter.first,
        "end_sentence": chapter.last,
        "headline": _phrases(text, settings, (1, 3)),
        "gist": _phrases(text, settings, (1, 2)),
        "summary": summary,
    }


def analyze_chapters(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """The ``chapters`` analysis (see the module docstring)."""
    chapters, embedded = chapter_spans(inp, settings)
    return AnalysisResult(
        analysis_type=AnalysisType.CHAPTERS,
        result={"chapters": [describe(c, embedded, settings) for c in chapters]},
        model_name=settings.embedding_model,
        parameters={
            "method": "texttiling-on-sentence-embeddings",
            "window": WINDOW,
            "min_sentences": MIN_SENTENCES,
        },
    )
