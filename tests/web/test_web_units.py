"""The web app's plain functions: transcript words and turns, where phrases are said, the word
diff, search snippets and their moments, the login redirect target, upload form options."""

from __future__ import annotations

import pytest
from markupsafe import Markup
from starlette.datastructures import FormData

from interfaces.api.errors import ApiError
from interfaces.web import transcript as tx
from interfaces.web.auth import safe_next
from interfaces.web.files import options_from_form
from interfaces.web.render import clock, marked

SEGMENTS = [
    {
        "start": 0.0,
        "end": 2.0,
        "text": " The blue printer.",
        "speaker": "agent",
        "words": [
            {"start": 0.0, "end": 0.3, "word": " The"},
            {"start": 0.3, "end": 0.7, "word": " blue"},
            {"start": 0.7, "end": 1.4, "word": " printer."},
        ],
    },
    {"start": 2.0, "end": 3.5, "text": " It is broken.", "speaker": "customer", "words": []},
    {
        "start": 3.5,
        "end": 5.0,
        "text": " A Blue printer!",
        "speaker": "agent",
        "words": [
            {"start": 3.5, "end": 3.6, "word": " A"},
            {"start": 3.6, "end": 4.0, "word": " Blue", "speaker": "customer"},
            {"start": 4.0, "end": 4.6, "word": " printer!"},
        ],
    },
]


def test_words_keep_times_and_speakers_and_untimed_segments_become_one_piece() -> None:
    words = tx.words_of(SEGMENTS)
    assert [w.text for w in words] == [
        "The", "blue", "printer.", "It is broken.", "A", "Blue", "printer!",
    ]  # fmt: skip
    assert [w.index for w in words] == list(range(7))
    assert words[3].start == 2.0 and words[3].speaker == "customer"
    assert words[5].speaker == "customer"  # diarization moved this word


def test_turns_group_speakers_and_keep_one_colour_each() -> None:
    turns = tx.turns(tx.words_of(SEGMENTS))
    assert [(t.speaker, t.colour, len(t.words)) for t in turns] == [
        ("agent", 0, 3), ("customer", 1, 1), ("agent", 0, 1), ("customer", 1, 1), ("agent", 0, 1),
    ]  # fmt: skip
    assert tx.turns(tx.words_of([{"start": 0, "end": 1, "text": "hi"}]))[0].colour is None


def test_occurrences_match_phrases_across_case_and_punctuation() -> None:
    words = tx.words_of(SEGMENTS)
    assert tx.occurrences("blue printer", words) == [0.3, 3.6]
    assert tx.occurrences("PRINTER", words) == [0.7, 4.0]
    assert tx.occurrences("broken", words) == [2.0]
    assert tx.occurrences("green", words) == []
    assert tx.occurrences("...", words) == []
    assert tx.occurrences("printer", words, limit=1) == [0.7]


def test_word_diff() -> None:
    assert tx.word_diff("the blue printer is broken", "the red printer is broken now") == [
        ("same", "the"), ("removed", "blue"), ("added", "red"),
        ("same", "printer is broken"), ("added", "now"),
    ]  # fmt: skip
    assert tx.word_diff("same words", "same words") == [("same", "same words")]
    assert tx.word_diff("", "new") == [("added", "new")]


def test_a_search_hit_is_found_at_its_first_highlighted_word() -> None:
    words = tx.words_of(SEGMENTS)
    assert tx.hit_time("It is **broken**. A Blue **printer**", words) == 2.0
    assert tx.hit_time("no **marks** here match", words) is None
    assert tx.hit_time("nothing marked", words) is None


def test_sentiment_points_in_time_order() -> None:
    result = {
        "segments": [{"start": 4, "end": 6, "score": -0.5}, {"start": 0, "end": 2, "score": 0.25}]
    }
    assert tx.sentiment_points(result) == [(1.0, 0.25), (5.0, -0.5)]
    assert tx.sentiment_points(None) == []


def test_marked_snippets_escape_everything_but_the_marks() -> None:
    out = marked("a <script>x</script> **hit** and **<b>bold</b>** **open")
    assert isinstance(out, Markup)
    assert str(out) == (
        "a &lt;script&gt;x&lt;/script&gt; <mark>hit</mark> and "
        "<mark>&lt;b&gt;bold&lt;/b&gt;</mark> **open"
    )


def test_clock() -> None:
    assert [clock(None), clock(0), clock(59.6), clock(61), clock(3725)] == [
        "–", "0:00", "1:00", "1:01", "1:02:05",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/files/1?t=2", "/files/1?t=2"),
        ("/search", "/search"),
        (None, "/files"),
        ("", "/files"),
        ("https://evil.example/", "/files"),
        ("//evil.example/", "/files"),
        ("/\\evil.example", "/files"),
        ("/files\r\nSet-Cookie: x=1", "/files"),
    ],
)
def test_after_sign_in_only_local_paths(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


def test_upload_form_fields_become_job_options() -> None:
    form = FormData(
        [("engine", "faster-whisper"), ("model", " "), ("language", "de"),
         ("vocabulary", "Acme, Zorblax"), ("speakers", "2"), ("channels", "auto"),
         ("channel_labels", ""), ("redact_pii", "on"), ("csrf_token", "x")]
    )  # fmt: skip
    assert options_from_form(form) == {
        "engine": "faster-whisper",
        "language": "de",
        "vocabulary": "Acme, Zorblax",
        "speakers": 2,
        "redact_pii": True,
    }
    assert options_from_form(FormData([("channels", "split")])) == {"channels": "split"}
    with pytest.raises(ApiError, match="whole number"):
        options_from_form(FormData([("speakers", "two")]))
