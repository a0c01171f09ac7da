"""Pure record helpers: confidence derivation, JSON shape, text joining."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.transcription.records import (
    Segment,
    Transcript,
    Word,
    join_segment_text,
    segment_confidence,
    segments_to_json,
    transcript_confidence,
)


def seg(start: float, end: float, avg_logprob: float, text: str = "x") -> Segment:
    return Segment(0, start, end, text, avg_logprob, 0.01)


def test_segment_confidence_is_exp_of_avg_logprob_clipped() -> None:
    assert segment_confidence(math.log(0.5)) == pytest.approx(0.5)
    assert segment_confidence(0.0) == 1.0
    assert segment_confidence(0.3) == 1.0  # positive log-probabilities cannot exceed 1
    assert segment_confidence(-1e9) == 0.0
    assert segment_confidence(float("nan")) == 0.0


def test_no_segments_means_zero_confidence() -> None:
    assert transcript_confidence([]) == 0.0


def test_confidence_is_duration_weighted() -> None:
    long_sure = seg(0.0, 9.0, math.log(0.9))
    short_unsure = seg(9.0, 10.0, math.log(0.1))
    assert transcript_confidence([long_sure, short_unsure]) == pytest.approx(0.9 * 0.9 + 0.1 * 0.1)


def test_zero_length_segments_weigh_equally() -> None:
    segments = [seg(1.0, 1.0, math.log(0.2)), seg(2.0, 2.0, math.log(0.6))]
    assert transcript_confidence(segments) == pytest.approx(0.4)


def test_confidence_stays_in_unit_interval() -> None:
    values = [transcript_confidence([seg(0, 1, lp)]) for lp in (-50.0, -1.0, -0.01, 0.0, 2.0)]
    assert all(0.0 <= v <= 1.0 for v in values)


def test_segments_json_round_trips_through_json() -> None:
    words = (Word(0.0, 0.4, " Hello", 0.9), Word(0.4, 0.8, " world", 0.8))
    segment = Segment(3, 0.0, 0.8, "Hello world", -0.2, 0.05, words)
    transcript = Transcript(
        text="Hello world",
        language="en",
        language_probability=None,
        duration=1.0,
        segments=(segment,),
        engine="faster-whisper",
        engine_version="1.2.1",
        model_name="tiny.en",
        confidence=0.8,
        parameters={"beam_size": 1},
    )
    data = json.loads(json.dumps(transcript.segments_json()))
    assert data == segments_to_json([segment])
    assert data[0]["id"] == 3
    assert set(data[0]) == {
        "id",
        "start",
        "end",
        "text",
        "avg_logprob",
        "no_speech_prob",
        "compression_ratio",
        "speaker",
        "channel",
        "language",
        "flags",
        "words",
    }
    # Every word carries speaker, channel and language (None here: mono, unlabelled).
    assert data[0]["words"][1] == {
        "start": 0.4,
        "end": 0.8,
        "word": " world",
        "probability": 0.8,
        "speaker": None,
        "channel": None,
        "language": None,
    }


def test_records_are_frozen() -> None:
    word = Word(0.0, 1.0, "a", 1.0)
    with pytest.raises(AttributeError):
        word.word = "b"  # type: ignore[misc]


def test_join_segment_text_skips_blank_and_strips() -> None:
    segments = [seg(0, 1, 0, " Hello. "), seg(1, 2, 0, "  "), seg(2, 3, 0, "Bye.")]
    assert join_segment_text(segments) == "Hello. Bye."
