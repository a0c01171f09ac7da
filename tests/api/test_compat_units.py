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


def test_highlights_entities_and_utterances_of_the_transcript_object() -> None:
    """Phrases are found word by word across case and punctuation, every occurrence for a
    highlight and the first for an entity; the utterances carry the same words as ``words``
    (transcript_json builds each word once and normalises the words once per answer)."""
    import datetime as dt
    import uuid
    from types import SimpleNamespace

    from interfaces.api.aai import transcript_json
    from interfaces.api.compat import Readable
    from interfaces.api.fastread import StoredAnalysis

    said = [(" Hello", "S1"), (" Anna,", "S1"), (" the", "S1"), (" blue", "S2"),
            (" printer", "S2"), (" is", "S2"), (" broken.", "S2"), (" Blue", "S1"),
            (" PRINTER", "S1"), (" again!", "S1")]  # fmt: skip
    words = [{"word": w, "start": i * 0.5, "end": i * 0.5 + 0.4, "probability": 0.9,
              "speaker": s} for i, (w, s) in enumerate(said)]  # fmt: skip
    version = Readable(uuid.uuid4(), "".join(w for w, _ in said).strip(),
                       [{"start": 0.0, "end": 5.0, "text": "", "words": words}], False, "en",
                       0.9, "tiny.en")  # fmt: skip
    analyses = [
        StoredAnalysis("keywords", {"keywords": [{"keyword": "blue printer", "score": 0.5},
                                                 {"keyword": "green", "score": 0.1}]}),
        StoredAnalysis("entities", {"entities": [{"text": "anna", "label": "PERSON"},
                                                 {"text": "Zed", "label": "ORG"}]}),
    ]  # fmt: skip
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    row = SimpleNamespace(id=uuid.uuid4(), status="completed", error_message=None,
                          metadata_={}, duration_seconds=5, created_at=now,
                          processing_completed_at=now)  # fmt: skip
    body = transcript_json(row, version, analyses)  # type: ignore[arg-type]
    assert body["auto_highlights_result"]["results"] == [
        {"count": 2, "rank": 0.5, "text": "blue printer",
         "timestamps": [{"start": 1500, "end": 2400}, {"start": 3500, "end": 4400}]},
        {"count": 1, "rank": 0.1, "text": "green", "timestamps": []},
    ]  # fmt: skip
    assert body["entities"] == [
        {"entity_type": "person_name", "text": "anna", "start": 500, "end": 900},
        {"entity_type": "organization", "text": "Zed", "start": 0, "end": 0},
    ]
    assert [w["speaker"] for w in body["words"]] == ["A"] * 3 + ["B"] * 4 + ["A"] * 3
    assert [u["speaker"] for u in body["utterances"]] == ["A", "B", "A"]
    assert [w for u in body["utterances"] for w in u["words"]] == body["words"]
