"""Crafted files against the duration limit and the in-task memory budget, through a real worker.

One worker (all queues, one pool child, so every task runs in the same process and the child
can be watched) with ``TELEAI_MAX_DURATION_SECONDS=300`` and ``TELEAI_TASK_MEMORY_BUDGET_MIB``
set low enough that transcribing four minutes of speech in one window passes it. Files are
generated in the run (ffmpeg, espeak-ng) and sent with the real ``teleai ingest --wait``:

- a 58 KB FLAC whose STREAMINFO claims 10 s but that holds 8 hours, and a WebM whose
  ``Duration`` element claims 10 s over 6 minutes: both ``failed`` at ingest, within seconds,
  with the limit's message, and the pool child's peak memory barely moves;
- a FLAC claiming 10 s over 60 s (under the limit): ``completed`` with the decoded 60 s stored
  in ``audio_files.duration_seconds``, and (``TELEAI_BATCHED_MIN_SECONDS=50``) transcribed by
  the batched pipeline, as the transcription's ``parameters`` record;
- four minutes of speech with the low budget: ``failed`` at transcription with the budget's
  message, the same pool child still alive (a clean failure, not an OOM kill).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from interfaces.speech import ESPEAK_VOICE, ESPEAK_WPM
from tests.badinput import pool_pids
from tests.conftest import PgAdmin
from tests.crafted import flac_with_lying_header, webm_with_lying_duration
from tests.integration.conftest import Pipeline, module_pipeline
from tests.integration.test_bad_inputs import assert_readable_failure
from tests.speech import espeak_wav

LIMIT_S = 300
BUDGET_MIB = 128  # 60 s of silence grows the child by ~30 MiB, 4 min of speech by ~300 MiB
LIMIT_MESSAGE = "the audio lasts more than 0:05:00 although its header claims 0:00:10; " + (
    "the limit is 0:05:00"
)
PEAK_GROWTH_MIB = 100


@pytest.fixture(scope="module")
def guarded(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    settings = {
        "TELEAI_MAX_DURATION_SECONDS": str(LIMIT_S),
        "TELEAI_TASK_MEMORY_BUDGET_MIB": str(BUDGET_MIB),
        "TELEAI_WHISPER_CPU_THREADS": "2",
        "TELEAI_BATCHED_MIN_SECONDS": "50",  # the 60-s file takes the batched path
    }
    root = tmp_path_factory.mktemp("crafted")
    with module_pipeline(
        pg_admin, template_database, redis_url, root, "crafted",
        settings=settings, concurrency=1, name="crafted",
    ) as found:  # fmt: skip
        yield found


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("crafted-files")
    speech = work / "speech.wav"
    text = " ".join(["Thank you for calling, please hold while I look at your account."] * 4)
    espeak_wav(text, speech, voice=ESPEAK_VOICE, words_per_minute=ESPEAK_WPM)
    four_minutes = work / "four-minutes.mp3"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-stream_loop", "-1",
         "-i", str(speech), "-t", "240", "-c:a", "libmp3lame", "-b:a", "64k", str(four_minutes)],
        check=True, capture_output=True,
    )  # fmt: skip
    return {
        "flac_8h": flac_with_lying_header(
            work / "eight-hours.flac", seconds=8 * 3600, claim_seconds=10
        ),
        "webm_6min": webm_with_lying_duration(
            work / "six-minutes.webm", seconds=360, claim_seconds=10
        ),
        "flac_60s": flac_with_lying_header(work / "one-minute.flac", seconds=60, claim_seconds=10),
        "speech_4min": four_minutes,
    }


def _child(pipeline: Pipeline) -> psutil.Process:
    [pid] = pool_pids(pipeline.workers[0])
    return psutil.Process(pid)


def _peak_mib(child: psutil.Process) -> float:
    for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def _ingest(pipeline: Pipeline, path: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    started = time.monotonic()
    [row] = pipeline.ingest(path)
    return row, pipeline.show(row["id"]), time.monotonic() - started


@pytest.mark.parametrize("name", ["flac_8h", "webm_6min"])
def test_lying_header_fails_at_ingest_fast_in_bounded_memory(
    name: str, guarded: Pipeline, files: dict[str, Path]
) -> None:
    path = files[name]
    if name == "flac_8h":
        assert path.stat().st_size < 100_000  # the 58 KB file of the report
    child = _child(guarded)
    peak_before = _peak_mib(child)
    row, report, _seconds = _ingest(guarded, path)
    assert row["status"] == "failed", (row, guarded.worker_logs()[-3000:])
    assert row["error_message"].endswith(LIMIT_MESSAGE), row
    assert_readable_failure(row["error_message"], path.name, guarded.storage_dir)
    assert report["stage"] == "ingest"
    assert report["error_details"]["exception_type"] == "AudioTooLong", report
    assert report["stage_seconds"]["ingest"] < 5, report["stage_seconds"]
    assert _peak_mib(child) - peak_before < PEAK_GROWTH_MIB
    assert _child(guarded).pid == child.pid


def test_decoded_duration_is_stored(guarded: Pipeline, files: dict[str, Path]) -> None:
    row, report, _ = _ingest(guarded, files["flac_60s"])
    assert row["status"] == "completed", (row, guarded.worker_logs()[-3000:])
    assert float(report["duration_seconds"]) == pytest.approx(60.0, abs=0.01)
    probe = report["metadata"]["probe"]
    assert probe["duration_source"] == "decoded"
    assert probe["header_duration_seconds"] == pytest.approx(10.0)
    assert report["transcription"]["text"] == ""  # silence
    parameters = report["transcription"]["metadata"]["parameters"]
    assert (parameters["inference"], parameters["batch_size"]) == ("batched", 8), parameters
    assert parameters["windows"] == 1


def test_memory_budget_fails_the_file_not_the_worker(
    guarded: Pipeline, files: dict[str, Path]
) -> None:
    child = _child(guarded)
    row, report, _ = _ingest(guarded, files["speech_4min"])
    assert row["status"] == "failed", (row, guarded.worker_logs()[-3000:])
    message = row["error_message"]
    assert f"transcribing needed more than its memory budget of {BUDGET_MIB} MiB" in message, row
    assert_readable_failure(message, files["speech_4min"].name, guarded.storage_dir)
    assert report["stage"] == "transcribe"
    assert report["error_details"]["exception_type"] == "MemoryBudgetExceeded", report
    guarded.assert_workers_alive()
    assert _child(guarded).pid == child.pid, "the pool child was replaced: not a clean failure"
    assert float(report["duration_seconds"]) == pytest.approx(240.0, abs=0.5)
