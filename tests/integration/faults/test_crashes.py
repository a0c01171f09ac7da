"""Worker processes die mid-transcription: ``kill -9`` of pool children, then of a whole worker.

The transcription worker is a separate ``-Q transcribe`` worker (as in docker-compose.yml);
``w1`` stops consuming that queue for these tests so every transcription runs where the kills
land, and keeps running ingest and analyze; whichever worker leads runs the recovery sweep.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import (
    LEASE_SECONDS,
    REAPER_SECONDS,
    Cluster,
    SpeechCorpus,
    wait_until,
)

pytestmark = pytest.mark.slow

CHILD_KILLS = 10
# Scheduling slack on a busy 2-core machine: scheduler tick, leader take-over, message latency.
SLACK_SECONDS = 8


def _waiting(cluster: Cluster, ids: list[str]) -> int:
    """Files not yet past transcription."""
    states = cluster.states(ids)
    return sum(
        n
        for (status, stage), n in states.items()
        if status in ("pending", "processing") and stage in ("ingest", "transcribe")
    )


def _completion_epochs(cluster: Cluster, ids: list[str]) -> dict[str, float]:
    rows = cluster.query(
        "SELECT id::text, extract(epoch FROM processing_completed_at) FROM audio_files"
        " WHERE id = ANY(%s::uuid[])",
        (ids,),
    )
    return {str(i): float(t) for i, t in rows}


def test_kill_9_of_busy_children_loses_nothing(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    """Ten and more pool children die mid-transcription; every file still ends completed once."""
    workers.consume("w1", "transcribe", enabled=False)
    workers.start_worker("tx", queues="transcribe", concurrency=2)
    batches = itertools.count()

    def more(count: int) -> list[str]:
        batch = next(batches)
        return workers.submit_ok(
            *corpus.batch(tmp_path / f"in{batch}", count, prefix=f"kill{batch}", long=True)
        )

    started = time.monotonic()
    ids = more(20)
    killed_at: dict[str, float] = {}  # file id -> wall-clock time its transcription was killed
    kills = 0
    while len(killed_at) < CHILD_KILLS:
        assert time.monotonic() - started < 480, f"only {len(killed_at)} kills landed in 480 s"
        if _waiting(workers, ids) < 4:  # keep transcriptions coming until enough kills landed
            ids += more(6)
        for _task, file_id, pid in workers.transcribing("tx"):
            if file_id in killed_at or workers.row(file_id) != ("processing", "transcribe", 1):
                continue
            os.kill(pid, signal.SIGKILL)
            kills += 1
            # A dead child cannot move its row on: still at its first claim means the kill
            # landed before the transcription was written.
            if workers.row(file_id)[1:] == ("transcribe", 1):
                killed_at[file_id] = time.time()
            break
        time.sleep(0.2)
    killing = time.monotonic() - started
    workers.wait_settled(ids, timeout=300)
    seconds = time.monotonic() - started
    counts = oracle.check(workers.database_url, ids)
    done = _completion_epochs(workers, list(killed_at))
    recovery = max(done[f] - t for f, t in killed_at.items())
    lost_children = workers.log_text("tx").count("exited with 'signal 9 (SIGKILL)'")
    report(
        files=counts.files,
        kills=kills,
        kills_mid_transcription=len(killed_at),
        **counts.outcome(),
        max_kill_to_completed_seconds=round(recovery, 1),
        killing_seconds=round(killing, 1),
        seconds=round(seconds, 1),
    )
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
    assert lost_children >= kills, "Celery did not notice every child it lost"


def test_whole_worker_killed_and_restarted_recovers_orphans(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    """SIGKILL to the transcription worker's process group while both children transcribe."""
    workers.consume("w1", "transcribe", enabled=False)
    workers.start_worker("tx", queues="transcribe", concurrency=2)
    started = time.monotonic()
    ids = workers.submit_ok(*corpus.batch(tmp_path / "in", 8, prefix="whole", long=True))
    wait_until(lambda: len(workers.transcribing("tx")) == 2, 180, "two running transcriptions")
    orphans = {
        str(file_id): int(attempts)
        for file_id, attempts in workers.query(
            "SELECT id::text, attempts FROM audio_files WHERE id = ANY(%s::uuid[])"
            " AND status = 'processing' AND stage = 'transcribe' AND lease_expires_at > now()",
            (ids,),
        )
    }
    assert orphans, "no transcription was claimed when the worker was killed"
    workers.kill_worker("tx")
    killed = time.monotonic()
    # Recovered = handed out again: re-enqueued by the reaper (lease cleared, same attempt)
    # or already claimed anew. When it is claimed depends on the backlog ahead of it.
    recovered: dict[str, float] = {}

    def all_recovered() -> bool:
        rows = workers.query(
            "SELECT id::text, attempts, stage, lease_expires_at IS NULL FROM audio_files"
            " WHERE id = ANY(%s::uuid[])",
            (list(orphans),),
        )
        for file_id, attempts, stage, lease_cleared in rows:
            moved_on = stage != "transcribe" or attempts > orphans[file_id]
            if file_id not in recovered and (moved_on or lease_cleared):
                recovered[file_id] = time.monotonic() - killed
        return len(recovered) == len(orphans)

    def restart_worker() -> float:
        workers.start_worker("tx", queues="transcribe", concurrency=2)
        return time.monotonic() - killed

    with ThreadPoolExecutor(1) as pool:  # restarted at once, as a supervisor would
        restarted = pool.submit(restart_worker)
        wait_until(all_recovered, 120, "the reaper to hand the orphans out again", every=0.1)
        restart = restarted.result()
    workers.wait_settled(ids, timeout=300)
    seconds = time.monotonic() - started
    counts = oracle.check(workers.database_url, ids)
    report(
        files=counts.files,
        kills=1,
        restarts=1,
        orphans=len(orphans),
        restart_seconds=round(restart, 1),
        orphans_reenqueued_after_kill_seconds=round(max(recovered.values()), 1),
        **counts.outcome(),
        seconds=round(seconds, 1),
    )
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
    bound = LEASE_SECONDS + REAPER_SECONDS + SLACK_SECONDS
    assert max(recovered.values()) <= bound, (recovered, bound)
