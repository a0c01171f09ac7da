"""Benchmark 9b (``--only longfile4h``): peak RSS on a real four-hour file, measured.

The long-file benchmark (:mod:`bench.longfile`) runs 10, 30 and 60 minutes; the four-hour
target (peak worker RSS ≤ 1.5 GB, issue 16) needs the four-hour file itself, and at ~11× real
time on two free cores that is over 20 minutes of both cores (much more on a shared machine),
so it is its own benchmark, selected on purpose. It is the transcription worker's own call for
a file of that length (``transcribe_call`` as ``run_transcribe`` makes it: ``decode_windows``,
batched since it is longer than ``TELEAI_BATCHED_MIN_SECONDS``, the hallucination guard and,
with ``TELEAI_DIARIZATION`` on as by default, the speaker embeddings and their clustering at
the end) in a fresh child that warms up as a worker does (Whisper and the voice encoder, torch
included); the child's ``VmHWM`` is the peak. Until 2026-12-01 14:40 it ran
``transcribe_windows`` after a Whisper-only warm-up, which leaves out the diarizer (torch, the
encoder, the clustering of every island of a four-hour call) that a worker holds.

The child appends one line per finished window (:class:`bench.longfile.Progress`), so when the
run is stopped by ``BENCH_LONGFILE_TIMEOUT_S`` (default three hours) the section still reports
the peak over the audio it did get through, marked as partial: the target verdict then stays
open (n/a), it is not called met.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.corpus import ensure_file
from bench.longfile import CHILD_TIMEOUT_S, PEAK_TARGET_MIB, RECIPES, _run_child
from bench.results import Section, Table, Target

TIMEOUT_ENV = "BENCH_LONGFILE_TIMEOUT_S"


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The child's per-window lines (a line cut short by a kill is dropped)."""
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


def run(ctx: Context) -> Section:
    from pipeline.settings import Settings

    section = Section("longfile4h", "9b. Long files: peak RSS on a four-hour file")
    window = float(Settings.model_fields["transcribe_window_seconds"].default)
    timeout = float(os.environ.get(TIMEOUT_ENV, CHILD_TIMEOUT_S))
    file = ensure_file(RECIPES["4h"], ctx.corpus_dir)
    progress = ctx.services.work_dir / "longfile-4h-progress.jsonl"
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.unlink(missing_ok=True)
    finished = None
    try:
        finished = _run_child(
            ctx, file, "worker", batched=True, window=window, progress=progress, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        section.notes.append(f"stopped after {timeout:.0f} s ({TIMEOUT_ENV}): partial")
    except RuntimeError as error:  # the child failed: what it got through is still a figure
        section.notes.append(f"the child failed, partial: {str(error)[-300:]}")
    lines = read_progress(progress)
    table = Table(
        f"Four-hour file ({file.seconds / 3600:.0f} h generated speech with pauses, "
        f"{window:.0f}-s windows, batched, the worker's transcribe_call with diarization "
        f"{'on' if Settings().diarization else 'off'}): peak RSS as the file goes through",
        ["audio h done", "windows", "wall s", "peak MiB", "1-min load"],
    )
    for line in lines[:: max(1, len(lines) // 12)] + lines[-1:]:
        table.add(
            line["audio_seconds"] / 3600,
            line["windows"],
            line["seconds"],
            line["peak_mib"],
            line["load"],
        )
    section.tables.append(table)
    if finished is not None:
        measured = (
            f"{finished.peak_mib:.0f} MiB over the whole {finished.audio_seconds / 3600:.2f} h "
            f"({finished.windows} windows, {finished.seconds:.0f} s, "
            f"{finished.rtf:.1f}× real time, WER {100 * finished.wer:.2f} %, "
            f"diarization {finished.diarization or 'off'}: {finished.speakers} speakers in "
            f"{finished.diarize_seconds:.0f} s)"
        )
        met: bool | None = finished.peak_mib <= PEAK_TARGET_MIB
        section.data = {"run": finished.__dict__ | {"text": finished.text[:2000]}}
    elif lines:
        last = lines[-1]
        measured = (
            f"{last['peak_mib']:.0f} MiB over the first {last['audio_seconds'] / 3600:.2f} h "
            f"of 4 (partial: stopped at window {last['windows']})"
        )
        met = None
    else:
        measured, met = "no window finished", None
    section.targets.append(
        Target("peak worker RSS on a four-hour file", f"≤ {PEAK_TARGET_MIB:.0f} MiB", measured, met)
    )
    section.data["progress"] = lines
    return section
