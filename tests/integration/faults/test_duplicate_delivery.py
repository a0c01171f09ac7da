"""At-least-once delivery: the same message twice, two workers on one file, a stalled writer.

Two separate worker processes consume the transcribe queue: ``w1`` (all queues, two children)
and ``w2`` (``-Q transcribe``, one child).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import Cluster, SpeechCorpus, wait_until

pytestmark = pytest.mark.slow

RECEIVED = re.compile(r"Task teleai\.transcribe\[[^\]]+\] received")


def _drained(cluster: Cluster) -> bool:
    """No message queued and no task running anywhere: late duplicates have all been handled."""
    if any(cluster.redis.queued().values()):
        return False
    return not any(cluster.active_tasks(name) for name in cluster.workers)


def test_every_message_twice_writes_one_version(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    workers.start_worker("w2", queues="transcribe", concurrency=1)
    marks = workers.log_marks()
    started = time.monotonic()
    ids = workers.submit_ok(*corpus.batch(tmp_path / "in", 16, prefix="dup"))
    workers.delay("ingest", ids, times=2)
    sent = 2 * len(ids)
    doubled: set[str] = set()
    while workers.unfinished(ids):
        assert time.monotonic() - started < 300, dict(workers.states(ids))
        rows = workers.query(
            "SELECT id::text FROM audio_files WHERE id = ANY(%s::uuid[])"
            " AND stage = 'transcribe' AND status IN ('pending', 'processing')",
            (ids,),
        )
        fresh = [str(r[0]) for r in rows if str(r[0]) not in doubled]
        if fresh:
            workers.delay("transcribe", fresh, times=2)
            sent += 2 * len(fresh)
            doubled.update(fresh)
        time.sleep(0.3)
    # Late duplicates of finished work: a transcription and an analysis of every file again.
    workers.delay("transcribe", ids)
    versions = [
        str(r[0])
        for r in workers.query(
            "SELECT id::text FROM transcriptions WHERE audio_file_id = ANY(%s::uuid[])", (ids,)
        )
    ]
    workers.delay("analyze", versions)
    sent += len(ids) + len(versions)
    wait_until(lambda: _drained(workers), 180, "every queued duplicate to be handled", every=0.5)
    seconds = time.monotonic() - started
    counts = oracle.check(workers.database_url, ids)
    deliveries = len(RECEIVED.findall(workers.logs_since(marks)))
    by_w2 = len(RECEIVED.findall(workers.logs_since(marks, "w2")))
    report(
        files=counts.files,
        duplicate_messages_sent=sent,
        transcribe_deliveries=deliveries,
        transcribe_deliveries_on_w2=by_w2,
        files_transcribed_twice_during_run=len(doubled),
        versions=counts.versions,
        analyses=counts.analyses,
        lost=counts.lost,
        duplicates=counts.versions - counts.files,
        seconds=round(seconds, 1),
    )
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
    assert counts.analyses == len(oracle.ANALYSIS_TYPES) * counts.files
    assert deliveries >= 2 * counts.files, "the duplicates were not delivered"
    assert by_w2 > 0, "the second worker process never received a transcription"


def test_stalled_writer_is_fenced_out_after_takeover(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    """Freeze a child mid-transcription (SIGSTOP) until its lease expires and another worker
    finishes the file, then let it run on: its late result must not become a second version."""
    workers.start_worker("w2", queues="transcribe", concurrency=1)
    marks = workers.log_marks()
    started = time.monotonic()
    ids = workers.submit_ok(*corpus.batch(tmp_path / "in", 8, prefix="stall", long=True))
    victim: tuple[str, str, int] | None = None

    def w2_transcribes_first_claim() -> bool:
        nonlocal victim
        for task_id, file_id, pid in workers.transcribing("w2"):
            if workers.row(file_id) == ("processing", "transcribe", 1):
                os.kill(pid, signal.SIGSTOP)
                victim = (task_id, file_id, pid)
                return True
        return False

    wait_until(w2_transcribes_first_claim, 180, "w2 to run a transcription", every=0.2)
    assert victim is not None
    task_id, file_id, pid = victim
    stopped = time.monotonic()
    try:
        wait_until(lambda: workers.row(file_id)[0] == "completed", 120, "another worker to finish")
        takeover = time.monotonic() - stopped
    finally:
        os.kill(pid, signal.SIGCONT)
    finished = re.compile(rf"Task teleai\.transcribe\[{task_id}\] succeeded in [^:]+: (.*)")

    def zombie_result() -> str | None:
        match = finished.search(workers.logs_since(marks, "w2"))
        return match.group(1) if match else None

    wait_until(lambda: zombie_result() is not None, 120, "the stalled child to finish its task")
    workers.wait_settled(ids, timeout=240)
    counts = oracle.check(workers.database_url, ids)
    report(
        files=counts.files,
        stalled_children=1,
        takeover_seconds=round(takeover, 1),
        lost=counts.lost,
        duplicates=counts.versions - counts.files,
        seconds=round(time.monotonic() - started, 1),
    )
    assert "'transcription_id': None" in (zombie_result() or ""), zombie_result()
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
    [(versions,)] = workers.query(
        "SELECT count(*) FROM transcriptions WHERE audio_file_id = %s", (file_id,)
    )
    assert versions == 1
