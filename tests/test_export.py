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
