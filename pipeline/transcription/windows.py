"""Transcribe a long file window by window and join the pieces into one transcript.

Whisper engines take the whole sample array and build features for all of it at once (about
1 MiB of worker memory per audio second with faster-whisper), so a four-hour call would need
some 14 GB. Here the file arrives as :class:`~pipeline.audio.decode.Window` s from
:func:`~pipeline.audio.decode.decode_windows` (bounded blocks, cut in pauses), each window is
transcribed alone, and only the small records are kept: memory is one window's worth whatever
the length.

Joins: windows do not overlap and are cut in the quietest moment near their end, so each word
is heard in exactly one window (nothing lost, nothing doubled). Every segment and word time is
shifted by its window's ``start`` (an exact sample count), so times run on continuously across
joins, and segment ids are renumbered in order. The language is detected once, in the first
window that has speech, and then fixed for the rest, so one call cannot switch language
halfway. A file that fits in one window is transcribed exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from pipeline.audio.decode import Window
from pipeline.transcription.base import SAMPLE_RATE, Transcriber
from pipeline.transcription.records import (
    Segment,
    Transcript,
    join_segment_text,
    transcript_confidence,
)


def shifted(segment: Segment, offset: float, new_id: int) -> Segment:
    """``segment`` with its times (and its words' times) moved by ``offset`` seconds."""
    return replace(
        segment,
        id=new_id,
        start=segment.start + offset,
        end=segment.end + offset,
        words=tuple(
            replace(word, start=word.start + offset, end=word.end + offset)
            for word in segment.words
        ),
    )


def transcribe_windows(
    transcriber: Transcriber,
    windows: Iterable[Window],
    *,
    language: str | None,
    batched: bool = False,
    between: Callable[[], None] | None = None,
) -> Transcript:
    """One :class:`Transcript` of all ``windows`` (see module docstring). ``between`` runs
    after each window (the memory guard's cooperative check). ``parameters`` gains
    ``windows`` (how many there were)."""
    segments: list[Segment] = []
    first: Transcript | None = None
    detected: Transcript | None = None
    samples = 0
    count = 0
    for window in windows:
        chosen = language or (detected.language if detected is not None else None)
        piece = transcriber.transcribe(window.samples, language=chosen, batched=batched)
        count += 1
        samples += len(window.samples)
        first = first or piece
        if detected is None and piece.segments:
            detected = piece
        base = len(segments)
        segments.extend(
            shifted(segment, window.start, base + index)
            for index, segment in enumerate(piece.segments)
        )
        del piece
        if between is not None:
            between()
    if first is None:
        raise ValueError("no audio windows to transcribe")
    source = detected or first
    return Transcript(
        text=join_segment_text(segments),
        language=source.language,
        language_probability=source.language_probability,
        duration=samples / SAMPLE_RATE,
        segments=tuple(segments),
        engine=source.engine,
        engine_version=source.engine_version,
        model_name=source.model_name,
        confidence=transcript_confidence(segments),
        parameters={**source.parameters, "language_requested": language, "windows": count},
    )
