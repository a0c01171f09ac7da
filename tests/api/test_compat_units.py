"""Unit tests of the word list the compatible APIs build from stored Whisper segments."""

from __future__ import annotations

from typing import Any

from interfaces.api.compat import words_of


def _word(text: str, start: float, end: float) -> dict[str, object]:
    return {"word": text, "start": start, "end": end, "probability": 0.9}


def test_tokens_without_a_leading_space_continue_the_word_before() -> None:
    # What Whisper stored for a spoken phone number: one word in four tokens.
    text = " Call me at 555-120-34-567."
    segments: list[dict[str, Any]] = [
        {
            "text": text,
            "words": [
                _word(" Call", 0.0, 0.3),
                _word(" me", 0.3, 0.5),
                _word(" at", 0.5, 0.7),
                _word(" 555", 0.7, 1.0),
                _word("-120", 1.0, 1.4),
                _word("-34", 1.4, 1.6),
                _word("-567.", 1.6, 2.0),
            ],
        }
    ]
    words = words_of(segments)
    assert [w.text for w in words] == text.split()
    assert (words[-1].start, words[-1].end) == (0.7, 2.0)


def test_the_first_word_of_a_segment_never_joins_the_segment_before() -> None:
    segments: list[dict[str, Any]] = [
        {"text": " Hello.", "words": [_word(" Hello.", 0.0, 0.5)]},
        {"text": "Bye.", "words": [_word("Bye.", 1.0, 1.4)]},
    ]
    assert [w.text for w in words_of(segments)] == ["Hello.", "Bye."]
