"""Topics: zero-shot labels from a taxonomy, for the whole call and for each chapter.

No training data and no classifier: each label of the taxonomy has a one-sentence description;
the description and the text are embedded with the MiniLM model, and the cosine similarity is the
label's score. Labels scoring at least :data:`MIN_SCORE` and within :data:`MARGIN` of the best
are the text's topics (at most :data:`MAX_LABELS`); all scores are reported so a team can set
its own threshold. The taxonomy is configurable: ``TELEAI_TOPIC_TAXONOMY`` names a JSON file of
``{"label": "description", ...}``; unset, :data:`DEFAULT_TAXONOMY` (a contact centre's) is used.

Result shape (``AnalysisResult.result``)::

    {"call": {"labels": [{"label": "billing", "score": 0.41}, ...],
              "scores": {"billing": 0.41, "cancellation": 0.12, ...}},
     "chapters": [{"start": 0.0, "end": 41.2, "labels": [...], "scores": {...}}, ...],
     "taxonomy": ["billing", "cancellation", ...]}
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from db.models import AnalysisType
from pipeline.analysis.chapters import chapter_spans
from pipeline.analysis.embedding import Matrix, embed_texts, normalize_rows
from pipeline.analysis.models import load_sentence_model
from pipeline.analysis.records import AnalysisInput, AnalysisResult
from pipeline.errors import PermanentError
from pipeline.settings import Settings

MIN_SCORE = 0.2
MARGIN = 0.1
MAX_LABELS = 3

DEFAULT_TAXONOMY: dict[str, str] = {
    "billing": "A question or problem about a bill, an invoice, a charge or a fee on the account.",
    "payment": "Paying a bill, a card payment, a direct debit or a payment that failed.",
    "refund": "The customer asks for their money back or a refund of a charge.",
    "cancellation": "The customer wants to cancel, end or close a subscription, contract or order.",
    "technical problem": "Something does not work: an error, a device, the internet or an app "
    "is broken and needs troubleshooting.",
    "delivery": "Shipping, delivery, a parcel or order that is late, lost or not arrived.",
    "complaint": "The customer is unhappy and complains about poor service or a bad experience.",
    "sales": "Buying a new product, an upgrade, a quote, prices or a special offer.",
    "account access": "Logging in, a password reset, a locked account or verifying identity.",
    "appointment": "Booking, changing or cancelling an appointment, a visit or a time slot.",
    "personal details": "Changing an address, a phone number, an email or a name on the account.",
}


class InvalidTaxonomy(PermanentError):
    """Raised when TELEAI_TOPIC_TAXONOMY is not a JSON object of label -> description."""


def load_taxonomy(path: str | None) -> dict[str, str]:
    """The configured taxonomy (``path``: a JSON file) or the default one."""
    if not path:
        return DEFAULT_TAXONOMY
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidTaxonomy(f"cannot read the topic taxonomy {path}: {error}") from error
    if (
        not isinstance(raw, dict)
        or not raw
        or not all(
            isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
            for k, v in raw.items()
        )
    ):
        raise InvalidTaxonomy(f"the topic taxonomy {path} must be an object of label: description")
    return {k.strip(): v.strip() for k, v in raw.items()}


@lru_cache(maxsize=4)
def _label_vectors(
    model_name: str, hub_downloads: bool, items: tuple[tuple[str, str], ...]
) -> Matrix:
    model = load_sentence_model(model_name, hub_downloads)
    vectors = embed_texts(model, [f"{label}: {description}" for label, description in items])
    vectors.setflags(write=False)
    return vectors


def score_labels(vector: Matrix, labels: list[str], label_vectors: Matrix) -> dict[str, Any]:
    """Scores of every label for one unit-length text vector, and the labels kept."""
    scores = {
        label: round(float(s), 4) for label, s in zip(labels, label_vectors @ vector, strict=True)
    }
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    best = ranked[0][1] if ranked else 0.0
    kept = [
        {"label": label, "score": score}
        for label, score in ranked
        if score >= MIN_SCORE and score >= best - MARGIN
    ][:MAX_LABELS]
    return {"labels": kept, "scores": scores}


def analyze_topics(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """The ``topics`` analysis (see the module docstring)."""
    taxonomy = load_taxonomy(settings.topic_taxonomy)
    labels = list(taxonomy)
    chapters, embedded = chapter_spans(inp, settings)
    result: dict[str, Any] = {
        "call": {"labels": [], "scores": {}},
        "chapters": [],
        "taxonomy": labels,
    }
    if chapters:
        vectors = _label_vectors(
            settings.embedding_model, settings.hub_downloads, tuple(taxonomy.items())
        )
        result["call"] = score_labels(embedded.document[0], labels, vectors)
        for chapter in chapters:
            part = embedded.vectors[chapter.first : chapter.last + 1]
            centre = normalize_rows(part.mean(axis=0, keepdims=True))[0]
            result["chapters"].append(
                {
                    "start": round(chapter.start, 3),
                    "end": round(chapter.end, 3),
                    **score_labels(centre, labels, vectors),
                }
            )
    return AnalysisResult(
        analysis_type=AnalysisType.TOPICS,
        result=result,
        model_name=settings.embedding_model,
        parameters={
            "method": "embedding-similarity-to-label-descriptions",
            "min_score": MIN_SCORE,
            "margin": MARGIN,
            "taxonomy": settings.topic_taxonomy or "default",
        },
    )
