"""Benchmark 9: long files. Peak memory against file length, windowed vs whole-file WER, and
from which length faster-whisper's BatchedInferencePipeline wins.

Every measurement runs in a fresh child process that loads the model and warms it up, so the
child's ``VmHWM`` (resident high-water mark) is the peak on that one file, and the difference
to its value after warm-up is what the file added. The rows here run the windowed core
(``decode_windows`` → ``transcribe_windows``, with the pipeline's window settings) after a
Whisper-only warm-up; the ``worker`` mode, which ``--only longfile4h`` uses, runs what a
transcription worker runs (``transcribe_call`` as ``run_transcribe`` makes it, diarizer, guard,
after :func:`pipeline.warmup.warm_up`): 1,100 MiB on ten minutes, batched, against 1,019 MiB
for the windowed core in an earlier run. Files are generated speech with pauses
(:mod:`bench.corpus`).

- Memory: the same path on files of growing length; flat means the peak does not grow with the
  length. For comparison the old whole-file path (``decode_to_16k_mono`` + one ``transcribe``
  call) on the 10-minute file.
- WER: windowed vs whole-file decoding (both sequential) of the 10- and 30-minute files,
  pooled over their words.
- Batched: sequential vs batched per file length; the first length from which batched is
  faster on every longer file is the suggested ``TELEAI_BATCHED_MIN_SECONDS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.context import Context
from bench.corpus import STANDARD, CorpusFile, Recipe, ensure_file
from bench.results import Section, Table, Target
from bench.wer import word_error_rate
from pipeline.transcription.base import SAMPLE_RATE

if TYPE_CHECKING:
    from pipeline.audio.decode import Window

RECIPES = {
    "30s": Recipe("30s", 30.0, 31),
    "2min": Recipe("2min", 120.0, 121),
    "5min": Recipe("5min", 300.0, 301),
    "10min": STANDARD["10min"],
    "30min": Recipe("30min", 1800.0, 1801),
    "60min": Recipe("60min", 3600.0, 3601),
    # Just under TELEAI_MAX_DURATION_SECONDS: an MP3 of exactly 4:00:00 decodes a few hundred
    # samples longer (encoder delay and padding), and the pipeline refuses it (AudioTooLong):
    # the 2026-12-01 run of a 14,400-s file failed in its last window that way.
    "4h": Recipe("4h", 14390.0, 14401),
}
FULL = {
    "batched": ("30s", "2min", "5min", "10min"),
    "memory": ("10min", "30min", "60min"),
    "wer": ("10min", "30min"),
}
QUICK = {"batched": ("30s", "2min"), "memory": ("2min", "5min"), "wer": ("2min",)}
PEAK_TARGET_MIB = 1536.0  # issue 16: <= 1.5 GB on a four-hour file
FLAT_BOUND_MIB = 100.0  # growth of the peak from the shortest to the longest file
WER_BOUND_POINTS = 0.5
CHILD_TIMEOUT_S = 3 * 3600
PROGRESS_ENV = "BENCH_LONGFILE_PROGRESS"
REPEATS = 3  # the machine is shared: one run of each is at the mercy of other jobs


@dataclass(frozen=True)
class ChildRun:
    """One file through one path in a fresh process."""

    file: str
    audio_seconds: float
    mode: str  # windowed | whole | worker (transcribe_call after the worker's warm-up)
    inference: str
    windows: int
    seconds: float
    warm_peak_mib: float
    peak_mib: float
    text: str
    wer: float
    diarize_seconds: float = 0.0  # worker mode: the speaker embeddings and clustering
    speakers: int | None = None
    diarization: str | None = None  # worker mode: the method, None when it did not run

    @property
    def added_mib(self) -> float:
        return self.peak_mib - self.warm_peak_mib

    @property
    def rtf(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds else float("nan")


def _median_run(runs: list[ChildRun]) -> ChildRun:
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Progress:
    """One JSON line per finished window (audio seconds done, wall time, peak so far) appended
    to the file named by ``BENCH_LONGFILE_PROGRESS``: a run stopped before the end (the
    four-hour row takes hours on two cores) still says how far it got and what the peak was
    up to there. Without the variable it does nothing."""

    def __init__(self, path: str | None, started: float, warm_peak_mib: float) -> None:
        self.path = Path(path) if path else None
        self.started = started
        self.warm = warm_peak_mib
        self.windows = 0
        self.audio_end = 0.0

    def track(self, windows: Iterator[Window]) -> Iterator[Window]:
        for window in windows:
            self.audio_end = window.start + len(window.samples) / SAMPLE_RATE
            yield window

    def tracking(self, decode: Callable[..., Iterator[Window]]) -> Callable[..., Iterator[Window]]:
        """``decode`` (``decode_windows``) with every window it yields passed through
        :meth:`track`: for a caller that calls the decoder itself (``transcribe_call``)."""

        def tracked(*args: Any, **kwargs: Any) -> Iterator[Window]:
            return self.track(decode(*args, **kwargs))

        return tracked

    def window_done(self) -> None:
        self.windows += 1
        if self.path is None:
            return
        line = {
            "windows": self.windows,
            "audio_seconds": round(self.audio_end, 3),
            "seconds": round(time.perf_counter() - self.started, 2),
            "warm_peak_mib": round(self.warm, 1),
            "peak_mib": round(_vm_hwm_mib(), 1),
            "load": os.getloadavg()[0],
        }
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")


def child_main(path: Path, mode: str, batched: bool, window: float, threads: int) -> None:
    """The measured process: model load and warm-up as a worker, then one file."""
    import numpy as np

    from pipeline.audio.decode import decode_to_16k_mono, decode_windows
    from pipeline.settings import Settings
    from pipeline.transcription import get_transcriber
    from pipeline.transcription.windows import transcribe_windows

    settings = Settings(whisper_cpu_threads=threads, transcribe_window_seconds=window)
    transcriber = get_transcriber(settings)
    if mode == "worker":
        from pipeline.warmup import warm_up

        warm_up({"transcribe"}, settings)  # Whisper and, with diarization on, the encoder
    else:
        transcriber.transcribe(np.zeros(16000, dtype=np.float32), language="en")
    warm = _vm_hwm_mib()
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if mode == "worker":
        transcript, extra = _worker_path(path, settings, transcriber, batched, started, warm)
        windows = int(str(transcript.parameters["windows"]))
    elif mode == "whole":
        transcript = transcriber.transcribe(decode_to_16k_mono(path), language="en")
        windows = 1
    else:
        progress = Progress(os.environ.get(PROGRESS_ENV), started, warm)
        transcript = transcribe_windows(
            transcriber,
            progress.track(
                decode_windows(
                    path,
                    window_seconds=settings.transcribe_window_seconds,
                    max_seconds=settings.max_duration_seconds,
                    whole_seconds=settings.transcribe_whole_max_seconds,
                )
            ),
            language="en",
            batched=batched,
            between=progress.window_done,
        )
        windows = int(str(transcript.parameters["windows"]))
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "warm_peak_mib": warm,
        "peak_mib": _vm_hwm_mib(),
        "windows": windows,
        "inference": transcript.parameters.get("inference"),
        "audio_seconds": transcript.duration,
        "text": transcript.text,
        **extra,
    }
    print("RESULT " + json.dumps(result))


def _worker_path(
    path: Path,
    settings: Any,
    transcriber: Any,
    batched: bool,
    started: float,
    warm: float,
) -> tuple[Any, dict[str, Any]]:
    """The transcription worker's own call (``run_transcribe`` → ``transcribe_call``, with
    the worker's settings: diarization, hallucination guard, language per stretch), without
    the database around it: what a worker process holds on this file. ``transcribe_call``
    calls ``decode_windows`` itself, so the progress lines see its windows through a wrapper
    around that function in this (throw-away) child process."""
    from pipeline.audio.decode import checked_format
    from pipeline.options import JobOptions
    from pipeline.transcription import call as call_module

    progress = Progress(os.environ.get(PROGRESS_ENV), started, warm)
    call_module.decode_windows = progress.tracking(call_module.decode_windows)  # type: ignore[attr-defined]
    call = call_module.transcribe_call(
        transcriber,
        path,
        checked_format(path, None),
        options=JobOptions(),
        language=settings.language,
        window_seconds=settings.transcribe_window_seconds,
        whole_seconds=settings.transcribe_whole_max_seconds,
        max_seconds=settings.max_duration_seconds,
        batched=batched,
        diarization=settings.diarization,
        per_segment_language=settings.language_per_segment,
        between=progress.window_done,
    )
    speakers = call.metadata.get("speakers", {})
    return call.transcript, {
        "diarize_seconds": call.diarize_seconds,
        "speakers": speakers.get("speakers"),
        "diarization": speakers.get("method"),
    }


def _run_child(
    ctx: Context,
    file: CorpusFile,
    mode: str,
    *,
    batched: bool,
    window: float,
    progress: Path | None = None,
    timeout: float = CHILD_TIMEOUT_S,
) -> ChildRun:
    """``file`` through ``mode`` in a fresh child; ``progress`` collects its per-window lines
    (:class:`Progress`); ``subprocess.TimeoutExpired`` after ``timeout`` s (child killed)."""
    command = [
        sys.executable, "-m", "bench.longfile", str(file.path), mode,
        "batched" if batched else "sequential", str(window), str(ctx.threads),
    ]  # fmt: skip
    env = {**os.environ, "TELEAI_LOG_LEVEL": "WARNING"}
    if progress is not None:
        env[PROGRESS_ENV] = str(progress)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child for {file.name} {mode} failed: {done.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return ChildRun(
        file=file.name,
        audio_seconds=float(data["audio_seconds"]),
        mode=mode,
        inference=str(data["inference"]),
        windows=int(data["windows"]),
        seconds=float(data["seconds"]),
        warm_peak_mib=float(data["warm_peak_mib"]),
        peak_mib=float(data["peak_mib"]),
        text=str(data["text"]),
        wer=word_error_rate(file.reference, str(data["text"])),
        diarize_seconds=float(data.get("diarize_seconds", 0.0)),
        speakers=data.get("speakers"),
        diarization=data.get("diarization") if data.get("diarization") != "none" else None,
    )


def run(ctx: Context) -> Section:
    from pipeline.settings import Settings

    section = Section("longfile", "9. Long files: memory, windowed WER, batched inference")
    sizes = QUICK if ctx.quick else FULL
    extra = tuple(n for n in os.environ.get("BENCH_LONGFILE_EXTRA", "").split(",") if n)
    window = float(Settings.model_fields["transcribe_window_seconds"].default)
    files = {
        name: ensure_file(RECIPES[name], ctx.corpus_dir)
        for name in {*sizes["batched"], *sizes["memory"], *sizes["wer"], *extra}
    }
    runs: list[ChildRun] = []

    # Batched vs sequential per length (windowed path, as the worker runs it).
    speed = Table(
        "Sequential vs BatchedInferencePipeline by file length (windowed path, fresh process; "
        "median wall time of the repeats)",
        ["file", "sequential s", "batched s", "speed-up", "WER sequential", "WER batched"],
    )
    by_length: list[tuple[float, float]] = []
    sequential_runs: dict[str, ChildRun] = {}
    batched_runs: dict[str, ChildRun] = {}
    repeats = 1 if ctx.quick else REPEATS
    for name in sizes["batched"]:
        seqs: list[ChildRun] = []
        bats: list[ChildRun] = []
        for _ in range(repeats):  # interleaved, so load from other jobs hits both alike
            seqs.append(_run_child(ctx, files[name], "windowed", batched=False, window=window))
            bats.append(_run_child(ctx, files[name], "windowed", batched=True, window=window))
        seq, bat = _median_run(seqs), _median_run(bats)
        sequential_runs[name], batched_runs[name] = seq, bat
        runs += [*seqs, *bats]
        speed.add(name, seq.seconds, bat.seconds, seq.seconds / bat.seconds, seq.wer, bat.wer)
        by_length.append((files[name].seconds, seq.seconds / bat.seconds))
    section.tables.append(speed)
    threshold = next(
        (length for length, _ in by_length if all(s > 1.0 for l2, s in by_length if l2 >= length)),
        None,
    )
    section.targets.append(
        Target(
            "batched inference where it wins",
            "faster than sequential from some length on",
            f"faster from {threshold:.0f} s on" if threshold is not None else "never faster",
            threshold is not None,
            "TELEAI_BATCHED_MIN_SECONDS should be about this length",
        )
    )

    # Windowed vs whole-file WER (both sequential), pooled over the WER files' words: one
    # Whisper skip is 0.5 point of a 10-minute file, so one file alone cannot show ±0.5.
    pairs: list[tuple[ChildRun, ChildRun]] = []
    for name in sizes["wer"]:
        whole_run = _run_child(ctx, files[name], "whole", batched=False, window=window)
        windowed_run = sequential_runs.get(name) or _run_child(
            ctx, files[name], "windowed", batched=False, window=window
        )
        runs += [whole_run] + ([] if name in sequential_runs else [windowed_run])
        pairs.append((windowed_run, whole_run))
    counts = [files[w.file].words for w, _ in pairs]
    windowed_wer = sum(w.wer * n for (w, _), n in zip(pairs, counts, strict=True)) / sum(counts)
    whole_wer = sum(h.wer * n for (_, h), n in zip(pairs, counts, strict=True)) / sum(counts)
    gap = 100 * (windowed_wer - whole_wer)
    each = "; ".join(f"{w.file} {100 * w.wer:.2f}% vs {100 * h.wer:.2f}%" for w, h in pairs)
    section.targets.append(
        Target(
            f"WER windowed vs whole-file ({' + '.join(w.file for w, _ in pairs)}, pooled)",
            f"within ±{WER_BOUND_POINTS} point",
            f"{100 * windowed_wer:.2f}% vs {100 * whole_wer:.2f}% ({gap:+.2f} points; {each})",
            abs(gap) <= WER_BOUND_POINTS,
        )
    )
    windowed, whole = pairs[0]

    # Peak memory against length, the path the pipeline takes (batched from the threshold).
    memory = Table(
        f"Peak RSS of a fresh transcription process by file length ({window:.0f}-s windows)",
        ["file", "path", "inference", "windows", "after warm-up MiB", "peak MiB", "added MiB",
         "wall s", "× real time"],
    )  # fmt: skip
    memory_runs: list[ChildRun] = []
    for name in (*sizes["memory"], *extra):
        found = batched_runs.get(name)
        child = found or _run_child(ctx, files[name], "windowed", batched=True, window=window)
        if found is None:
            runs.append(child)
        memory_runs.append(child)
    for child in (*memory_runs, *(h for _, h in pairs)):
        memory.add(
            child.file,
            child.mode,
            child.inference,
            child.windows,
            child.warm_peak_mib,
            child.peak_mib,
            child.added_mib,
            child.seconds,
            child.rtf,
        )
    section.tables.append(memory)
    # Flat means: once a file fills a window, more windows add (almost) nothing.
    filled = [r for r in memory_runs if r.audio_seconds >= window]
    longest = memory_runs[-1]
    if len(filled) >= 2:
        shortest, longest = filled[0], filled[-1]
        growth = longest.peak_mib - shortest.peak_mib
        measured, met = f"{growth:+.0f} MiB", growth <= FLAT_BOUND_MIB
    else:
        shortest = memory_runs[0]
        measured, met = "n/a: fewer than two files fill a window", None
    section.targets.append(
        Target(
            "peak RSS flat in file length",
            f"peak({longest.file}) - peak({shortest.file}) ≤ {FLAT_BOUND_MIB:.0f} MiB",
            measured,
            met,
        )
    )
    four_hours = next((r for r in memory_runs if r.file == "4h"), None)
    section.targets.append(
        Target(
            "peak worker RSS on a four-hour file",
            f"≤ {PEAK_TARGET_MIB:.0f} MiB",
            f"{four_hours.peak_mib:.0f} MiB"
            if four_hours
            else f"{longest.peak_mib:.0f} MiB on {longest.file} (4 h not run)",
            four_hours.peak_mib <= PEAK_TARGET_MIB if four_hours else None,
            "" if four_hours else "BENCH_LONGFILE_EXTRA=4h adds it (hours on two cores)",
        )
    )
    section.notes.append(
        f"Whole-file path on {whole.file}: peak {whole.peak_mib:.0f} MiB "
        f"(+{whole.added_mib:.0f} MiB) against {windowed.peak_mib:.0f} MiB windowed."
    )
    section.data = {"runs": [r.__dict__ | {"added_mib": r.added_mib} for r in runs]}
    return section


if __name__ == "__main__":
    _path, _mode, _inference, _window, _threads = sys.argv[1:6]
    child_main(Path(_path), _mode, _inference == "batched", float(_window), int(_threads))
