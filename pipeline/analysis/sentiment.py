"""Sentiment of the whole transcript and of each timed segment.

Backends: VADER (default, ``Settings.sentiment_model == "vader"``), a lexicon model that needs no
weights and reads one sentence at a time; or any transformers text-classification model (a local
directory, or a hub name when hub downloads are allowed), fed whole-sentence chunks under its
token limit. Either way a text is scored piece by piece and the pieces are combined as a
length-weighted mean, so a two-hour transcript is scored in full, not just its first 512 tokens.

Result shape (``AnalysisResult.result``)::

    {
      "overall": {"label": "negative", "score": -0.62,
                  "scores": {"positive": 0.02, "negative": 0.41, "neutral": 0.57}, "units": 3},
      "segments": [
        {"index": 0, "start": 0.0, "end": 4.2, "label": "negative", "score": -0.87,
         "scores": {...}, "units": 1},
        ...
      ]
    }

VADER: ``label`` is positive / negative / neutral from the mean compound score with the usual
±0.05 thresholds; ``score`` is that compound score in [-1, 1]; ``scores`` are the mean
positive/negative/neutral proportions. Transformers: ``label`` is the model's own label (from its
config) with the highest mean probability; ``score`` is that probability; ``scores`` holds every
label's mean probability. ``units`` is the number of pieces (sentences or chunks) scored. Text with
nothing to score gives ``{"label": "neutral", "score": 0.0, "scores": {}, "units": 0}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from db.models import AnalysisType
from pipeline.analysis.chunking import SizeFn, bounded_sentences, chunk_text, word_count
from pipeline.analysis.embedding import tokenizer_counter
from pipeline.analysis.models import load_text_classifier, load_vader
from pipeline.analysis.records import AnalysisInput, AnalysisResult
from pipeline.settings import Settings

VADER = "vader"
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05
# VADER is built for sentences; an unpunctuated run of speech is cut into pieces of this many words.
VADER_MAX_WORDS = 60
# Used when a tokenizer reports no real limit (transformers' "very large integer" sentinel).
DEFAULT_MAX_TOKENS = 512
_TOKEN_MARGIN = 4
_BATCH_SIZE = 8

Scores = dict[str, float]


@dataclass(frozen=True)
class _Backend:
    """How one sentiment model cuts, scores and labels text."""

    units: Callable[[str], list[str]]
    score: Callable[[list[str]], list[Scores]]
    weight: SizeFn
    label: Callable[[Scores], tuple[str, float, Scores]]
    parameters: dict[str, Any]


def vader_label(compound: float) -> str:
    """The conventional VADER reading of a compound score."""
    if compound >= POSITIVE_THRESHOLD:
        return "positive"
    if compound <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


def weighted_mean(rows: Sequence[Scores], weights: Sequence[float]) -> Scores:
    """Key-wise mean of ``rows`` weighted by ``weights`` (all rows share their keys)."""
    total = float(sum(weights))
    keys = list(rows[0]) if rows else []
    return {
        key: sum(row[key] * w for row, w in zip(rows, weights, strict=True)) / total for key in keys
    }


def _vader_backend() -> _Backend:
    analyzer = load_vader()

    def score(units: list[str]) -> list[Scores]:
        out: list[Scores] = []
        for unit in units:
            raw = analyzer.polarity_scores(unit)
            out.append(
                {
                    "compound": raw["compound"],
                    "positive": raw["pos"],
                    "negative": raw["neg"],
                    "neutral": raw["neu"],
                }
            )
        return out

    def label(mean: Scores) -> tuple[str, float, Scores]:
        compound = mean["compound"]
        rest = {k: v for k, v in mean.items() if k != "compound"}
        return vader_label(compound), compound, rest

    return _Backend(
        units=lambda text: [s.text for s in bounded_sentences(text, VADER_MAX_WORDS)],
        score=score,
        weight=word_count,
        label=label,
        parameters={
            "backend": "vader",
            "unit": "sentence",
            "max_unit_words": VADER_MAX_WORDS,
            "weighting": "words",
            "thresholds": {"positive": POSITIVE_THRESHOLD, "negative": NEGATIVE_THRESHOLD},
        },
    )


def _transformers_backend(settings: Settings) -> _Backend:
    classifier = load_text_classifier(settings.sentiment_model, settings.hub_downloads)
    tokenizer = classifier.tokenizer
    limit = int(tokenizer.model_max_length)
    if limit > 100_000:  # the tokenizer does not know; the model's position table still bounds it
        positions = getattr(classifier.model.config, "max_position_embeddings", None)
        limit = min(DEFAULT_MAX_TOKENS, int(positions or DEFAULT_MAX_TOKENS))
    budget = max(8, limit - int(tokenizer.num_special_tokens_to_add()) - _TOKEN_MARGIN)

    count = tokenizer_counter(tokenizer)

    def score(units: list[str]) -> list[Scores]:
        predictions = classifier(units, batch_size=_BATCH_SIZE, truncation=True, top_k=None)
        return [{p["label"]: float(p["score"]) for p in row} for row in predictions]

    def label(mean: Scores) -> tuple[str, float, Scores]:
        best = max(mean, key=lambda k: mean[k])
        return best, mean[best], mean

    return _Backend(
        units=lambda text: [c.text for c in chunk_text(text, budget, count)],
        score=score,
        weight=count,
        label=label,
        parameters={
            "backend": "transformers",
            "unit": "chunk",
            "max_tokens": budget,
            "weighting": "tokens",
        },
    )


def _backend(settings: Settings) -> _Backend:
    if settings.sentiment_model.strip().casefold() == VADER:
        return _vader_backend()
    return _transformers_backend(settings)


def _neutral() -> dict[str, Any]:
    return {"label": "neutral", "score": 0.0, "scores": {}, "units": 0}


def score_texts(texts: Sequence[str], backend: _Backend) -> list[dict[str, Any]]:
    """One ``{label, score, scores, units}`` per text; all pieces are scored in one model call."""
    units_per_text = [backend.units(text) for text in texts]
    flat = [unit for units in units_per_text for unit in units]
    flat_scores = backend.score(flat) if flat else []
    results: list[dict[str, Any]] = []
    position = 0
    for units in units_per_text:
        rows = flat_scores[position : position + len(units)]
        position += len(units)
        if not units:
            results.append(_neutral())
            continue
        weights = [float(max(1, backend.weight(unit))) for unit in units]
        name, value, scores = backend.label(weighted_mean(rows, weights))
        results.append(
            {
                "label": name,
                "score": round(value, 4),
                "scores": {k: round(v, 4) for k, v in scores.items()},
                "units": len(units),
            }
        )
    return results


def analyze_sentiment(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """Overall sentiment of ``inp.text`` plus one entry per segment, with its timestamps."""
    backend = _backend(settings)
    overall, *per_segment = score_texts([inp.text, *(s.text for s in inp.segments)], backend)
    segments = [
        {"index": i, "start": seg.start, "end": seg.end, **scored}
        for i, (seg, scored) in enumerate(zip(inp.segments, per_segment, strict=True))
    ]
    return AnalysisResult(
        analysis_type=AnalysisType.SENTIMENT,
        result={"overall": overall, "segments": segments},
        model_name=settings.sentiment_model,
        parameters={**backend.parameters, "language": inp.language},
    )
