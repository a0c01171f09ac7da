"""Transcript exports: plain text, JSON, SubRip (SRT) and WebVTT subtitles from stored segments.

Segment text is data a speaker (or whoever crafted the audio) controls, so subtitle cues are
escaped before they reach a player: ``&``, ``<`` and ``>`` become character references (WebVTT
defines ``&amp; &lt; &gt;``; SRT players that understand tags read the same ones, the others
show them as text), which also turns ``-->`` into ``--&gt;`` so no cue line can look like a
timing line; control characters are dropped; and line breaks inside a cue are kept but never
blank, since a blank line ends a cue and whatever follows would be parsed as a new one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

ExportFormat = Literal["txt", "json", "srt", "vtt"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("txt", "json", "srt", "vtt")


def timestamp(seconds: float, *, separator: str) -> str:
    """``HH:MM:SS<sep>mmm`` (SRT uses a comma, WebVTT a dot); negative times clamp to zero."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


# C0 and C1 controls other than the line breaks handled by splitlines(), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_REFERENCES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def cue_text(text: str) -> str:
    """``text`` made safe as the payload of one SRT or WebVTT cue (see the module docstring)."""
    lines = []
    for line in text.splitlines():  # every line terminator a player may honour, CR included
        line = _CONTROL.sub("", line).strip()
        if line:
            lines.append("".join(_REFERENCES.get(char, char) for char in line))
    return "\n".join(lines)


def speaker_label(segment: Mapping[str, Any]) -> str | None:
    """The segment's speaker as one safe line (None when unlabelled): a label comes from a
    job's options or diarization, so it is escaped like cue text and kept to one line."""
    raw = segment.get("speaker")
    if raw is None:
        return None
    label = " ".join(cue_text(str(raw)).split())
    return label or None


def _cues(segments: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, str, str | None]]:
    cues = []
    for segment in segments:
        text = cue_text(str(segment.get("text", "")))
        if text:
            start, end = float(segment["start"]), float(segment["end"])
            cues.append((start, end, text, speaker_label(segment)))
    return cues


def to_srt(segments: Sequence[Mapping[str, Any]]) -> str:
    """SubRip; a labelled segment's cue starts with ``[speaker]``."""
    blocks = [
        f"{i}\n{timestamp(start, separator=',')} --> {timestamp(end, separator=',')}\n"
        f"{f'[{who}] ' if who else ''}{text}\n"
        for i, (start, end, text, who) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Mapping[str, Any]]) -> str:
    """WebVTT; a labelled segment's cue is a voice span, ``<v speaker>text``."""
    blocks = [
        f"{timestamp(start, separator='.')} --> {timestamp(end, separator='.')}\n"
        f"{f'<v {who}>' if who else ''}{text}\n"
        for start, end, text, who in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def normalise_segments(
    segments: Sequence[Mapping[str, Any]], language: str | None
) -> list[dict[str, Any]]:
    """Stored segments with ``speaker``, ``channel`` and ``language`` on every segment and
    word (versions transcribed before call audio lack them: None, and the transcript's
    language), so every reader sees one shape."""
    out = []
    for segment in segments:
        seg = dict(segment)
        seg.setdefault("speaker", None)
        seg.setdefault("channel", None)
        seg["language"] = seg.get("language") or language
        seg["words"] = [
            {
                **word,
                "speaker": word.get("speaker") or seg["speaker"],
                "channel": word.get("channel", seg["channel"]),
                "language": word.get("language") or seg["language"],
            }
            for word in seg.get("words") or ()
        ]
        out.append(seg)
    return out


def redaction_summary(redaction: Any | None) -> dict[str, Any] | None:
    """What a report says about a version's redaction (``db.models.TranscriptRedaction``):
    the policy, how many spans of each type, whether a redacted audio copy exists."""
    if redaction is None:
        return None
    counts: dict[str, int] = {}
    for span in redaction.spans:
        counts[span["type"]] = counts.get(span["type"], 0) + 1
    return {
        "policy": redaction.policy,
        "counts": counts,
        "spans": redaction.spans,
        "audio": redaction.audio_path is not None,
    }


def apply_redaction(report: dict[str, Any], redaction: Any) -> dict[str, Any]:
    """``report`` (the ``teleai show`` / API export form) with the transcript replaced by its
    redacted form and the ``pii`` analysis (which holds the personal data) left out; the
    other analyses of a redacted job were computed on the redacted text already."""
    shown = dict(report)
    transcription = dict(shown.get("transcription") or {})
    transcription.update(
        id=str(redaction.transcription_id),
        version=redaction.version,
        text=redaction.redacted_text,
        segments=normalise_segments(redaction.segments, transcription.get("language_code")),
        word_count=len(redaction.redacted_text.split()),
        redacted=True,
    )
    shown["transcription"] = transcription
    shown["analyses"] = [a for a in shown.get("analyses", []) if a["analysis_type"] != "pii"]
    shown["redaction"] = redaction_summary(redaction)
    return shown


def render(fmt: ExportFormat, report: Mapping[str, Any]) -> str:
    """Render a ``teleai show`` report's latest transcription in ``fmt``."""
    transcription = report["transcription"]
    if fmt == "json":
        return json.dumps(report, indent=2, default=str)
    if fmt == "txt":
        return str(transcription["text"]).strip() + "\n"
    segments = transcription["segments"]
    return to_srt(segments) if fmt == "srt" else to_vtt(segments)
