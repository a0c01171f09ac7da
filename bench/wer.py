"""Transcription quality: text normalisation and word error rate.

Used by tests and benchmarks to compare a transcript with the sentence that was spoken; WER is
computed on normalised text so casing and punctuation (which Whisper adds freely) do not count.
"""

from __future__ import annotations

import re
import unicodedata

import jiwer

_APOSTROPHES = re.compile(r"['’`]")
_NON_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Casefold (ß → ss), drop apostrophes ("don't" → "dont"), other punctuation → space.

    Whitespace collapses to single spaces. Letters keep their accents (German/French text stays
    comparable); Unicode is NFC-composed so "é" typed two ways compares equal.
    """
    text = unicodedata.normalize("NFC", text).casefold()
    text = _APOSTROPHES.sub("", text)
    text = _NON_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, on normalised text.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise (jiwer refuses an
    empty reference). The value can exceed 1.0 when the hypothesis adds many words.
    """
    ref = normalize_text(reference)
    hyp = normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))
