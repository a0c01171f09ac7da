"""Transcribe a call: every channel, every speaker, every language, the customer's words.

The transcription stage's one entry point for call audio (docs/call-audio.md). For a stored
file it

1. scans the channels of a multi-channel file and plans what to transcribe
   (:mod:`pipeline.transcription.channels`): one signal, or each talker's channel alone;
2. decodes each planned signal as bounded windows (:func:`pipeline.audio.decode.decode_windows`)
   and transcribes each window with the language detected per stretch of speech
   (:mod:`pipeline.transcription.languages`) and the job's vocabulary and prompt;
3. runs the hallucination guard on every window's segments (:mod:`pipeline.transcription.guard`);
4. on a single signal, embeds the speech windows for speaker diarization
   (:mod:`pipeline.transcription.diarize`) and labels words and segments at the end;
5. merges everything by time into one :class:`Transcript` whose segments (and words) carry
   ``channel``, ``speaker`` and ``language``, and returns the metadata that says what was done:
   the channel plan, the speakers, the languages with their shares, the guard's decisions and
   the vocabulary used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.audio.decode import SAMPLE_RATE, Window, decode_windows
from pipeline.audio.formats import AudioFormat
from pipeline.options import JobOptions
from pipeline.transcription.base import Transcriber
from pipeline.transcription.channels import (
    ChannelPlan,
    decoded_channels,
    plan_channels,
    scan_channels,
)
from pipeline.transcription.guard import Decision, guard_segments, rms_dbfs
from pipeline.transcription.languages import transcribe_block
from pipeline.transcription.records import (
    Segment,
    Transcript,
    join_segment_text,
    transcript_confidence,
)


@dataclass
class CallTranscript:
    """The merged transcript, the seconds spent decoding and diarizing, and the metadata."""

    transcript: Transcript
    decode_seconds: float = 0.0
    diarize_seconds: float = 0.0
    scan_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


def language_shares(segments: list[Segment]) -> dict[str, float]:
    """Language → share of the transcribed speech time (segment durations), largest first."""
    seconds: dict[str, float] = {}
    for segment in segments:
        if segment.language:
            seconds[segment.language] = seconds.get(segment.language, 0.0) + max(
                0.0, segment.end - segment.start
            )
    total = sum(seconds.values())
    if total <= 0:
        return {}
    return {k: round(v / total, 4) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}


def _window_level(window: Window) -> Callable[[float, float], float]:
    def level(start: float, end: float) -> float:
        a = max(0, int(start * SAMPLE_RATE))
        b = max(a + 1, int(end * SAMPLE_RATE))
        return rms_dbfs(window.samples[a:b])

    return level


def _timed(windows: Iterator[Window], spent: list[float]) -> Iterator[Window]:
    while True:
        started = time.perf_counter()
        try:
            window = next(windows)
        except StopIteration:
            spent[0] += time.perf_counter() - started
            return
        spent[0] += time.perf_counter() - started
        yield window


def transcribe_call(
    transcriber: Transcriber,
    path: str | os.PathLike[str],
    fmt: AudioFormat,
    *,
    options: JobOptions,
    language: str | None,
    window_seconds: float,
    whole_seconds: float | None = None,
    max_seconds: float | None = None,
    batched: bool = False,
    diarization: bool = True,
    per_segment_language: bool = True,
    between: Callable[[], None] | None = None,
) -> CallTranscript:
    """Transcribe the file at ``path`` (see module docstring). ``language`` fixes the language
    (None: detect per stretch of speech); ``between`` runs after every window (the memory
    guard's check). A signal of at most ``whole_seconds`` is one window, decoded as a whole
    file; longer ones come in ``window_seconds`` windows (:func:`decode_windows`)."""
    started = time.perf_counter()
    count = decoded_channels(path, fmt)
    scan = scan_channels(path, fmt, count, max_seconds) if count > 1 else None
    plan: ChannelPlan = plan_channels(scan, options.channels, options.channel_labels)
    scan_seconds = time.perf_counter() - started
    single = not plan.split
    diarizer = None
    if single and diarization and options.speakers != 1:
        from pipeline.transcription.diarize import Diarizer

        diarizer = Diarizer(options.speakers, options.min_speakers, options.max_speakers)
    decode_spent = [0.0]
    diarize_seconds = 0.0
    segments: list[Segment] = []
    decisions: list[Decision] = []
    first: Transcript | None = None
    samples = 0
    windows = 0
    for source in plan.sources:
        source_samples = 0
        for window in _timed(
            decode_windows(
                path,
                fmt,
                window_seconds=window_seconds,
                channel=source.channel,
                max_seconds=max_seconds,
                whole_seconds=whole_seconds,
            ),
            decode_spent,
        ):
            windows += 1
            source_samples += len(window.samples)
            block = transcribe_block(
                transcriber,
                window.samples,
                language=options.language or language,
                batched=batched,
                vocabulary=options.vocabulary,
                prompt=options.prompt,
                per_segment=per_segment_language,
            )
            first = first or block.transcript
            channel = source.channel if plan.split else None
            labelled = [replace(s, channel=channel, speaker=source.label) for s in block.segments]
            kept, found = guard_segments(labelled, _window_level(window))
            decisions.extend(
                replace(d, start=d.start + window.start, end=d.end + window.start) for d in found
            )
            if diarizer is not None:
                t = time.perf_counter()
                diarizer.add(window.samples, window.start, kept)
                diarize_seconds += time.perf_counter() - t
            segments.extend(_shifted(s, window.start) for s in kept)
            if between is not None:
                between()
        samples = max(samples, source_samples)
    if first is None:
        raise ValueError("no audio windows to transcribe")
    speakers: dict[str, Any]
    if diarizer is not None:
        t = time.perf_counter()
        segments.sort(key=lambda s: s.start)
        segments, speakers = diarizer.label(segments)
        speakers["method"] = "resemblyzer+agglomerative"
        diarize_seconds += time.perf_counter() - t
    else:
        labels = sorted({s.speaker for s in segments if s.speaker})
        speakers = {"method": "channels" if plan.split else "none", "labels": labels}
        speakers["speakers"] = len(labels)
    segments.sort(key=lambda s: (s.start, s.channel if s.channel is not None else -1))
    segments = [replace(s, id=i) for i, s in enumerate(segments)]
    shares = language_shares(segments)
    dominant = next(iter(shares), first.language)
    transcript = Transcript(
        text=join_segment_text(segments),
        language=dominant,
        language_probability=first.language_probability if len(shares) <= 1 else None,
        duration=samples / SAMPLE_RATE,
        segments=tuple(segments),
        engine=first.engine,
        engine_version=first.engine_version,
        model_name=first.model_name,
        confidence=transcript_confidence(segments),
        parameters={
            **first.parameters,
            "language_requested": options.language or language,
            "language_per_segment": per_segment_language
            and transcriber.multilingual
            and not (options.language or language),
            "windows": windows,
            "vocabulary": list(options.vocabulary),
            "prompt": options.prompt,
            "channels": options.channels,
            "channel_labels": list(options.channel_labels),
            "speakers_requested": {
                "speakers": options.speakers,
                "min_speakers": options.min_speakers,
                "max_speakers": options.max_speakers,
            },
        },
    )
    metadata = {
        "channels": plan.to_dict(),
        "speakers": speakers,
        "languages": shares,
        "guard": {
            "dropped": sum(d.action == "drop" for d in decisions),
            "flagged": sum(d.action == "flag" for d in decisions),
            "decisions": [d.to_dict() for d in decisions[:200]],
        },
        "vocabulary": list(options.vocabulary),
    }
    return CallTranscript(
        transcript,
        decode_seconds=decode_spent[0],
        diarize_seconds=diarize_seconds,
        scan_seconds=scan_seconds,
        metadata=metadata,
    )


def _shifted(segment: Segment, offset: float) -> Segment:
    if offset == 0:
        return segment
    return replace(
        segment,
        start=segment.start + offset,
        end=segment.end + offset,
        words=tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in segment.words),
    )
