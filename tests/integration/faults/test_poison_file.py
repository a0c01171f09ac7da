"""A file that kills its worker every time it is tried must end ``failed``, not loop forever.

The crash is real: the transcription worker runs in a memory cgroup (v1) whose limit leaves
room for ordinary recordings but not for decoding three hours of audio to 16 kHz float32
(~0.7 GB, twice that while the chunks are joined). The kernel's OOM killer ends the child that
decodes it with SIGKILL, Celery puts the message back, and after ``TELEAI_MAX_ATTEMPTS`` claims
the row is failed by the next one. No test hook in the product is involved; its own guards
(windowed decoding, the in-task memory budget) are switched off for that worker by settings.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import MAX_ATTEMPTS, Cluster, SpeechCorpus

pytestmark = pytest.mark.slow

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
HEADROOM_BYTES = 400 * 1024 * 1024  # ordinary work needs a few MB; the poison needs > 1 GB
POISON_SECONDS = 3 * 3600
GOOD_FILES = 8
UNGUARDED = {
    "TELEAI_TASK_MEMORY_BUDGET_MIB": "0",  # no in-task memory guard
    "TELEAI_TRANSCRIBE_WINDOW_SECONDS": str(POISON_SECONDS + 60),  # decode it in one piece
}


@pytest.fixture
def memory_cgroup(workers: Cluster) -> Iterator[Path]:
    """A fresh cgroup-v1 memory group; its workers are stopped and it is removed afterwards."""
    assert (CGROUP_ROOT / "cgroup.procs").exists(), (
        f"no cgroup-v1 memory controller at {CGROUP_ROOT}"
    )
    group = CGROUP_ROOT / f"teleai-faults-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        workers.stop_workers(keep="w1")
        with contextlib.suppress(OSError):
            group.rmdir()


def _oom_kills(group: Path) -> int:
    for line in (group / "memory.oom_control").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    raise AssertionError("this kernel does not count OOM kills per cgroup")


def _poison(directory: Path) -> Path:
    """Three hours of FLAC silence: 2 MB on disk, 1.4 GB at peak while decoding."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "three-hours.flac"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi",
         "-i", "anullsrc=r=16000:cl=mono", "-t", str(POISON_SECONDS), "-c:a", "flac", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def test_file_that_kills_its_worker_fails_after_max_attempts(
    workers: Cluster,
    corpus: SpeechCorpus,
    tmp_path: Path,
    memory_cgroup: Path,
    report: Callable[..., None],
) -> None:
    workers.consume("w1", "transcribe", enabled=False)
    join_cgroup = f'echo $$ > {memory_cgroup / "cgroup.procs"} && exec "$@"'
    # The product now guards against this (windowed decoding, an in-task memory budget), so
    # both are switched off here: the poison must really take its worker down, as a blow-up
    # the guards do not catch would.
    workers.start_worker(
        "oom",
        queues="transcribe",
        concurrency=2,
        wrapper=("sh", "-c", join_cgroup, "sh"),
        env=UNGUARDED,
    )
    usage = int((memory_cgroup / "memory.usage_in_bytes").read_text())
    (memory_cgroup / "memory.limit_in_bytes").write_text(str(usage + HEADROOM_BYTES))

    poison = _poison(tmp_path / "poison")
    good = corpus.batch(tmp_path / "good", GOOD_FILES, prefix="good")
    started = time.monotonic()
    [poison_id] = workers.submit_ok(poison)
    good_ids = workers.submit_ok(*good)
    ids = [poison_id, *good_ids]
    workers.wait_settled(ids, timeout=400)
    seconds = time.monotonic() - started
    counts = oracle.check(workers.database_url, ids)
    kills = _oom_kills(memory_cgroup)
    [(status, message, attempt)] = workers.query(
        "SELECT status, error_message, error_details->>'attempt' FROM audio_files WHERE id = %s",
        (poison_id,),
    )
    report(
        files=counts.files,
        oom_kills=kills,
        bystanders_killed=kills - MAX_ATTEMPTS,
        poison_claims=int(attempt),
        poison_status=status,
        lost=counts.lost,
        duplicates=counts.versions - counts.completed,
        seconds=round(seconds, 1),
    )
    assert status == "failed"
    assert message == (
        f"transcribe failed: gave up on the transcribe stage after {MAX_ATTEMPTS} attempts "
        "(the worker stopped or crashed each time)"
    ), message
    # The row counts the claims: MAX_ATTEMPTS that ran and died, then the one that gave up.
    assert int(attempt) == MAX_ATTEMPTS + 1
    # Every run of the poison was OOM-killed; while a killed child is still releasing its
    # memory the kernel may kill a bystander too (its file is simply claimed again).
    assert kills >= MAX_ATTEMPTS, f"only {kills} OOM kills"
    assert counts.completed == len(good_ids), counts.failures
    assert counts.failures.keys() == {poison_id}
