"""The transcription worker's warm-up (pipeline.warmup): everything the first file needs is
loaded before the first task, with the diarizer, the first task's imports and the worker's
``alongside`` work done while Whisper loads, and nothing on the cold-start path imports the
heavy libraries the diarizer no longer uses. Real models (tiny.en, the numpy voice encoder)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from pipeline.settings import get_settings
from pipeline.warmup import warm_up

HEAVY = ("torch", "sklearn", "scipy", "librosa", "resemblyzer", "numba", "mutagen")


def test_warm_up_runs_alongside_beside_the_model_load() -> None:
    beside: list[str] = []
    seconds = warm_up(
        {"transcribe"},
        get_settings(),
        alongside=lambda: beside.append(threading.current_thread().name),
    )
    assert beside == ["teleai-warm-up"]  # not the thread that builds Whisper
    assert {"transcriber", "diarizer", "total"} <= seconds.keys()
    assert seconds["total"] >= max(seconds["transcriber"], seconds["diarizer"])


def test_an_error_beside_the_model_load_fails_the_warm_up() -> None:
    def broken() -> None:
        raise RuntimeError("database exploded")

    with pytest.raises(RuntimeError, match="database exploded"):
        warm_up({"transcribe"}, get_settings(), alongside=broken)


def test_side_work_that_hangs_does_not_hold_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.warmup.SIDE_WAIT_SECONDS", 0.5)
    release = threading.Event()
    seconds = warm_up({"transcribe"}, get_settings(), alongside=lambda: release.wait(60))
    release.set()
    assert "transcriber" in seconds


def test_a_transcription_worker_imports_no_heavy_library() -> None:
    """What a transcription worker's pool child has imported when warm: Celery's app and
    tasks, Whisper, the diarizer (numpy), the first task's modules; none of :data:`HEAVY`
    (torch alone took 2-7 s of the cold start on the shared machine)."""
    script = (
        "import sys, workers.app, workers.tasks\n"
        "from pipeline.settings import get_settings\n"
        "from pipeline.warmup import warm_up\n"
        "assert get_settings().diarization\n"
        "warm_up({'transcribe'}, get_settings())\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
