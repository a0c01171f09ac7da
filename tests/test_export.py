"""Subtitle and text exports are pure functions of the stored segments."""

from __future__ import annotations

import json

from pipeline.export import render, timestamp, to_srt, to_vtt

SEGMENTS = [
    {"start": 0.0, "end": 2.5, "text": " Hello there."},
    {"start": 2.5, "end": 3661.0101, "text": "A long one."},
    {"start": 3661.5, "end": 3662.0, "text": "   "},  # empty text: no cue
]


def test_timestamp_formats() -> None:
    assert timestamp(0, separator=",") == "00:00:00,000"
    assert timestamp(3661.0101, separator=".") == "01:01:01.010"
    assert timestamp(-1, separator=",") == "00:00:00,000"


def test_srt() -> None:
    assert to_srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
        "2\n00:00:02,500 --> 01:01:01,010\nA long one.\n"
    )


def test_vtt() -> None:
    assert to_vtt(SEGMENTS) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n"
        "00:00:02.500 --> 01:01:01.010\nA long one.\n"
    )


def test_render_txt_and_json() -> None:
    report = {"id": "x", "transcription": {"text": " Hello there. ", "segments": SEGMENTS}}
    assert render("txt", report) == "Hello there.\n"
    assert json.loads(render("json", report))["id"] == "x"
    assert render("srt", report).startswith("1\n00:00:00,000")


CRAFTED = [
    {"start": 0.0, "end": 1.0, "text": "<b>bold</b> & <c.red>red</c> <v Boss>"},
    {
        "start": 1.0,
        "end": 2.0,
        "text": "first\n\n2\n00:00:00,000 --> 99:00:00,000\nFAKE CUE\r\rafter\x1b]0;title\x07",
    },
    {"start": 2.0, "end": 3.0, "text": "\n\n"},  # only blank lines: no cue at all
]


def _parse_srt(document: str) -> list[list[str]]:
    """Cues as a player sees them: blocks separated by blank lines."""
    return [block.splitlines() for block in document.split("\n\n") if block.strip()]


def test_srt_escapes_markup_timing_lines_and_blank_lines() -> None:
    cues = _parse_srt(to_srt(CRAFTED))
    assert len(cues) == 2, cues  # the injected "cue 2" stays inside cue 2's text
    assert cues[0] == [
        "1",
        "00:00:00,000 --> 00:00:01,000",
        "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;c.red&gt;red&lt;/c&gt; &lt;v Boss&gt;",
    ]
    number, timing, *text = cues[1]
    assert (number, timing) == ("2", "00:00:01,000 --> 00:00:02,000")
    assert text == ["first", "2", "00:00:00,000 --&gt; 99:00:00,000", "FAKE CUE", "after]0;title"]
    assert sum("-->" in line for cue in cues for line in cue) == 2  # only the real timings


def test_vtt_escapes_markup_timing_lines_and_blank_lines() -> None:
    document = to_vtt(CRAFTED)
    header, *cues = document.split("\n\n")
    assert header == "WEBVTT"
    assert len(cues) == 2, cues
    assert "<" not in document and "\x1b" not in document and "\r" not in document
    assert cues[0].splitlines()[1] == (
        "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;c.red&gt;red&lt;/c&gt; &lt;v Boss&gt;"
    )
    assert [line for line in document.splitlines() if "-->" in line] == [
        "00:00:00.000 --> 00:00:01.000",
        "00:00:01.000 --> 00:00:02.000",
    ]
