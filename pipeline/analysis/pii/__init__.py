"""Personal data in call transcripts: detection, the redacted transcript, the redacted audio.

Usage (the analyze stage does this when a job asks for ``redact_pii``)::

    outcome = analyze_pii(inp, version.segments, Policy(types, "type", key), settings)
    outcome.result            # the ``pii`` analysis (type, text, words, times, score)
    outcome.redacted_segments # stored segments with the findings replaced
    outcome.redacted_input    # what the other analyses read, so they hold no personal data

Result shape of the ``pii`` analysis (``AnalysisResult.result``)::

    {
      "entities": [{"type": "card", "text": "four one one one …", "normalized": "4111…",
                    "start_word": 12, "end_word": 27, "start": 3.1, "end": 9.8,
                    "score": 1.0, "recognizer": "CreditCardRecognizer", "redacted": true}, ...],
      "counts": {"card": 1, "phone": 1},
      "policy": {"types": ["card", "phone", ...], "substitution": "type"},
      "redacted_text": "… my card number is [CARD] …"
    }

``start_word``/``end_word`` index the transcript's words (all segments, in order, inclusive);
``start``/``end`` are seconds. It holds the personal data itself, so migration 007 lets only
those who may read unredacted transcripts read it (docs/call-intelligence.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from db.models import AnalysisType
from pipeline.analysis.pii.detect import PII_TYPES, Finding, detect, pii_types_of, tokens_of
from pipeline.analysis.pii.redact import Policy, joined_text, redact_segments, substitute
from pipeline.analysis.records import AnalysisInput, AnalysisResult, segments_from_stored
from pipeline.settings import Settings

__all__ = [
    "PII_TYPES",
    "Finding",
    "PiiOutcome",
    "Policy",
    "analyze_pii",
    "pii_types_of",
    "substitute",
]


@dataclass(frozen=True)
class PiiOutcome:
    """The ``pii`` analysis, the redacted segments and text, and the input for the others."""

    result: AnalysisResult
    findings: tuple[Finding, ...]
    redacted_segments: list[dict[str, Any]]
    redacted_text: str
    redacted_input: AnalysisInput
    spans: list[dict[str, Any]] = field(default_factory=list)  # without the personal data


def _input_of(inp: AnalysisInput, segments: Sequence[Mapping[str, Any]]) -> AnalysisInput:
    return dataclasses.replace(
        inp,
        text=joined_text(segments),
        segments=segments_from_stored(segments),
    )


def analyze_pii(
    inp: AnalysisInput,
    segments: Sequence[Mapping[str, Any]],
    policy: Policy,
    settings: Settings,
) -> PiiOutcome:
    """Detect, then redact the policy's types in ``segments`` (the version's stored JSON)."""
    tokens = tokens_of(inp)
    findings = detect(tokens, settings.spacy_model, settings.pii_min_score)
    redacted = redact_segments(segments, tokens, findings, policy)
    text = joined_text(redacted) if segments else inp.text
    entities = [
        {
            "type": f.type,
            "text": f.text,
            "normalized": f.normalized,
            "start_word": f.first,
            "end_word": f.last,
            "start": round(f.start, 3),
            "end": round(f.end, 3),
            "score": f.score,
            "recognizer": f.recognizer,
            "redacted": f.type in policy.types,
        }
        for f in findings
    ]
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.type] = counts.get(f.type, 0) + 1
    spans = [
        {k: e[k] for k in ("type", "start_word", "end_word", "start", "end", "score")}
        for e in entities
        if e["redacted"]
    ]
    result = AnalysisResult(
        analysis_type=AnalysisType.PII,
        result={
            "entities": entities,
            "counts": counts,
            "policy": {"types": list(policy.types), "substitution": policy.substitution},
            "redacted_text": text,
        },
        model_name=f"presidio+{settings.spacy_model}",
        parameters={"min_score": settings.pii_min_score, "language": inp.language},
    )
    return PiiOutcome(
        result=result,
        findings=tuple(findings),
        redacted_segments=redacted,
        redacted_text=text,
        redacted_input=_input_of(inp, redacted) if segments else inp,
        spans=spans,
    )
