"""Extractive summary: the transcript's most central sentences, in their original order.

Extractive on purpose: every summary sentence is a sentence that was said, so the summary cannot
invent facts (abstractive models can, and transformers 5 dropped the summarization pipeline).
Each sentence is embedded with the MiniLM sentence-transformer (long sentences in chunks, never
truncated; embeddings shared with the keywords); the document vector is the word-weighted mean of
all sentence embeddings, and the sentences closest to it by cosine similarity are kept (a repeated
sentence only once). Every sentence of the text is a candidate, however long the transcript.

Result shape (``AnalysisResult.result``)::

    {
      "summary": "First chosen sentence. Second chosen sentence.",
      "sentences": [{"index": 4, "text": "First chosen sentence.", "score": 0.71}, ...],
      "sentence_count": 120,
      "ratio": 0.05
    }

``index`` is the sentence's position among the ``sentence_count`` sentences of the text,
``score`` its cosine similarity to the document vector, ``ratio`` the summary's share of the
text's words.

**Never longer than half the text.** At most ``summary_sentences`` sentences and at most half
of the sentences are kept, and a candidate is skipped when it would take the summary past half
of the text's words (:data:`MAX_RATIO`). A text too short to summarise (fewer than
:data:`MIN_SENTENCES` sentences or :data:`MIN_WORDS` words, or no sentence fits in half of it)
says so instead of echoing itself::

    {"summary": "", "sentences": [], "sentence_count": 1, "ratio": 0.0,
     "too_short": true, "note": "Too short to summarise: 1 sentence, 9 words."}

Blank text gives ``{"summary": "", "sentences": [], "sentence_count": 0, "ratio": 0.0}``.
"""

from __future__ import annotations

from typing import Any

from db.models import AnalysisType
from pipeline.analysis.chunking import Span, split_sentences, word_count
from pipeline.analysis.embedding import Matrix, sentence_embeddings
from pipeline.analysis.records import AnalysisInput, AnalysisResult
from pipeline.settings import Settings

MAX_RATIO = 0.5  # a summary holds at most this share of the text's words
MIN_SENTENCES = 4
MIN_WORDS = 40


def centrality(vectors: Matrix, document: Matrix) -> list[float]:
    """Cosine similarity of each unit-length row to the unit-length document vector."""
    return [float(x) for x in vectors @ document[0]]


def pick_central(
    scores: list[float],
    count: int,
    keys: list[str] | None = None,
    sizes: list[int] | None = None,
    max_size: int | None = None,
) -> list[int]:
    """Indices of the ``count`` highest scores in text order; an earlier sentence wins a tie, a
    sentence whose ``key`` was already picked is skipped (transcripts repeat themselves), and one
    that would take the summed ``sizes`` past ``max_size`` is skipped too."""
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    seen: set[str] = set()
    used = 0
    for i in ranked:
        key = keys[i] if keys is not None else str(i)
        if key in seen:
            continue
        size = sizes[i] if sizes is not None else 0
        if max_size is not None and used + size > max_size:
            continue
        seen.add(key)
        used += size
        chosen.append(i)
        if len(chosen) == count:
            break
    return sorted(chosen)


def _result(
    text: str, sentences: list[Span], chosen: list[int], scores: list[float] | None
) -> dict[str, Any]:
    picked = [
        {
            "index": i,
            "text": sentences[i].text,
            "score": None if scores is None else round(scores[i], 4),
        }
        for i in chosen
    ]
    summary = " ".join(sentences[i].text for i in chosen)
    total = word_count(text)
    return {
        "summary": summary,
        "sentences": picked,
        "sentence_count": len(sentences),
        "ratio": round(word_count(summary) / total, 4) if total else 0.0,
    }


def _too_short(text: str, sentences: list[Span]) -> dict[str, Any]:
    count, words = len(sentences), word_count(text)
    return {
        "summary": "",
        "sentences": [],
        "sentence_count": count,
        "ratio": 0.0,
        "too_short": True,
        "note": f"Too short to summarise: {count} sentence{'s' * (count != 1)}, "
        f"{words} word{'s' * (words != 1)}.",
    }


def analyze_summary(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """The ``settings.summary_sentences`` most central sentences of ``inp.text``."""
    sentences = split_sentences(inp.text)
    wanted = min(settings.summary_sentences, len(sentences) // 2)
    words = word_count(inp.text)
    result: dict[str, Any]
    if not sentences:
        result = _result(inp.text, sentences, [], None)
    elif len(sentences) < MIN_SENTENCES or words < MIN_WORDS:
        result = _too_short(inp.text, sentences)
    else:
        embedded = sentence_embeddings(settings.embedding_model, settings.hub_downloads, inp.text)
        scores = centrality(embedded.vectors, embedded.document)
        keys = [" ".join(s.text.casefold().split()) for s in sentences]
        sizes = [word_count(s.text) for s in sentences]
        chosen = pick_central(scores, wanted, keys, sizes, int(words * MAX_RATIO))
        result = (
            _result(inp.text, sentences, chosen, scores)
            if chosen
            else _too_short(inp.text, sentences)
        )
    return AnalysisResult(
        analysis_type=AnalysisType.SUMMARY,
        result=result,
        model_name=settings.embedding_model,
        parameters={
            "method": "cosine-to-document-vector",
            "max_sentences": settings.summary_sentences,
            "max_ratio": MAX_RATIO,
            "language": inp.language,
        },
    )
