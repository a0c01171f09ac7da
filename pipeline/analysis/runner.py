"""Run the requested text analyses on one transcript, timing each.

Analyses are independent: each loads its own model lazily (cached per process), so a worker that
only runs ``entities`` never loads the sentence-transformer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

from db.models import AnalysisType
from pipeline.analysis.chapters import analyze_chapters
from pipeline.analysis.conversation import analyze_conversation
from pipeline.analysis.entities import analyze_entities
from pipeline.analysis.keywords import analyze_keywords
from pipeline.analysis.llm import analyze_llm_summary
from pipeline.analysis.records import ANALYSIS_TYPES, AnalysisInput, AnalysisResult
from pipeline.analysis.sentiment import analyze_sentiment
from pipeline.analysis.summary import analyze_summary
from pipeline.analysis.topics import analyze_topics
from pipeline.settings import Settings

Analyzer = Callable[[AnalysisInput, Settings], AnalysisResult]

ANALYZERS: dict[str, Analyzer] = {
    AnalysisType.SENTIMENT: analyze_sentiment,
    AnalysisType.SUMMARY: analyze_summary,
    AnalysisType.KEYWORDS: analyze_keywords,
    AnalysisType.ENTITIES: analyze_entities,
    AnalysisType.CONVERSATION: analyze_conversation,
    AnalysisType.CHAPTERS: analyze_chapters,
    AnalysisType.TOPICS: analyze_topics,
    AnalysisType.LLM_SUMMARY: analyze_llm_summary,
}


def default_kinds(settings: Settings) -> tuple[str, ...]:
    """What the analyze stage runs: :data:`ANALYSIS_TYPES`, plus ``llm_summary`` when an
    OpenAI-compatible server is configured (``TELEAI_LLM_BASE_URL`` and ``TELEAI_LLM_MODEL``)."""
    extra = (AnalysisType.LLM_SUMMARY,) if settings.llm_base_url and settings.llm_model else ()
    return (*ANALYSIS_TYPES, *extra)


def analyze_one(kind: str, inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """One analysis with its wall time (including a first model load) in ``seconds``."""
    try:
        analyzer = ANALYZERS[kind]
    except KeyError:
        raise ValueError(f"Unknown analysis {kind!r}; expected one of {ANALYSIS_TYPES}") from None
    started = time.perf_counter()
    result = analyzer(inp, settings)
    return dataclasses.replace(result, seconds=round(time.perf_counter() - started, 4))


def analyze(
    inp: AnalysisInput, settings: Settings, kinds: Iterable[str] = ANALYSIS_TYPES
) -> list[AnalysisResult]:
    """The requested analyses of ``inp``, in the order asked. Unknown kinds fail before any work;
    model errors surface as :class:`pipeline.errors.ModelUnavailable`."""
    wanted = list(kinds)
    unknown = [kind for kind in wanted if kind not in ANALYZERS]
    if unknown:
        raise ValueError(f"Unknown analyses {unknown}; expected some of {ANALYSIS_TYPES}")
    return [analyze_one(kind, inp, settings) for kind in wanted]
