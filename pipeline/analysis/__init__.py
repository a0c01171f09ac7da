"""Text analyses of a transcript: sentiment, extractive summary, keywords and named entities.

Usage::

    from pipeline.analysis import AnalysisInput, SegmentText, analyze
    results = analyze(AnalysisInput(text, segments, "en"), get_settings())

Each :class:`AnalysisResult` carries ``analysis_type``, a JSON-serialisable ``result``,
``model_name``, ``parameters`` and ``seconds``. The ``result`` shapes are documented in the
modules :mod:`.sentiment`, :mod:`.summary`, :mod:`.keywords` and :mod:`.entities`. Long
transcripts are chunked (:mod:`.chunking`), never truncated. Models load lazily, once per process
(:mod:`.models`); importing this package loads none of them.
"""

from __future__ import annotations

from db.models import AnalysisType
from pipeline.analysis.records import (
    ANALYSIS_TYPES,
    AnalysisInput,
    AnalysisResult,
    SegmentText,
)
from pipeline.analysis.runner import analyze, analyze_one

__all__ = [
    "ANALYSIS_TYPES",
    "AnalysisInput",
    "AnalysisResult",
    "AnalysisType",
    "SegmentText",
    "analyze",
    "analyze_one",
]
