"""Text normalisation and word error rate (pure functions)."""

from __future__ import annotations

import pytest

from bench.wer import normalize_text, word_error_rate


def test_normalize_drops_case_punctuation_and_extra_spaces() -> None:
    assert normalize_text("  Hello, World!\n  How are   you?  ") == "hello world how are you"


def test_normalize_apostrophes_and_dashes() -> None:
    assert normalize_text("Don't stop—it's well-known.") == "dont stop its well known"
    assert normalize_text("don’t") == "dont"


def test_normalize_keeps_accented_letters() -> None:
    assert normalize_text("Ça va? Très bien, merci.") == "ça va très bien merci"
    assert normalize_text("Cafe\u0301") == normalize_text("Café")  # NFD and NFC agree


def test_wer_ignores_formatting() -> None:
    assert word_error_rate("the cat sat on the mat", "The cat sat on the mat.") == 0.0


def test_wer_counts_substitutions_deletions_insertions() -> None:
    assert word_error_rate("the cat sat", "the dog sat") == pytest.approx(1 / 3)
    assert word_error_rate("the cat sat", "the sat") == pytest.approx(1 / 3)
    assert word_error_rate("the cat sat", "the cat sat down") == pytest.approx(1 / 3)


def test_wer_empty_cases() -> None:
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "hello") == 1.0
    assert word_error_rate("hello there", "") == 1.0
    assert word_error_rate("...", "!!") == 0.0
