"""Redis restarted empty mid-run, with the DEFAULT settings and the README's worker commands.

No ``celery beat`` and none of the package's shortened timings: two ``teleai worker`` processes
(``--queues ingest,analyze --concurrency 2`` and ``--queues transcribe --concurrency 1``) with
the default lease, sweep interval and queued grace. Redis is killed (no persistence: every
queued and unacknowledged message is gone) in the middle of a 40-file run and started again.
The elected worker notices the new Redis ``run_id`` and re-sends what PostgreSQL holds as
queued but Redis does not; the promise is "within 30 s of Redis answering again", and then
every file completed with exactly one version.

This module runs last in the package (it stops the package's tuned worker and does not
restart it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery

from db.models import Stage
from tests.integration import oracle
from tests.integration.faults.conftest import Cluster, SpeechCorpus, wait_until
from workers.recovery import STAGE_TASKS, Broker

pytestmark = pytest.mark.slow

FILES = 40
RESENT_WITHIN_SECONDS = 30  # the promise (README, docs/reliability.md)
OUTAGE_SECONDS = 5  # long enough that running tasks finish and fail to send their next message
BROKER_LOST = re.compile(r"Connection to broker lost|Cannot connect to redis|Error while reading")
RECONCILED = re.compile(r"reconciled\b.*?count[=\"': ]+(\d+).*?broker_restarted")


def _lost_rows_covered(cluster: Cluster, broker: Broker, lost: dict[str, tuple[str, str]]) -> int:
    """How many of the ``lost`` rows (file id -> (stage, message arg)) are covered again: their
    message is back in Redis (queued or delivered), or a worker already moved the row on."""
    rows = cluster.query(
        "SELECT f.id::text, f.stage, f.status, f.lease_expires_at IS NULL"
        " FROM audio_files f WHERE f.id = ANY(%s::uuid[])",
        (list(lost),),
    )
    present = broker.messages()
    covered = 0
    for file_id, stage, status, queued in rows:
        was_stage, arg = lost[file_id]
        moved_on = stage != was_stage or status not in ("pending", "processing") or not queued
        if moved_on or (STAGE_TASKS[Stage(was_stage)], arg) in present:
            covered += 1
    return covered


def _queued_rows(cluster: Cluster, ids: list[str]) -> dict[str, tuple[str, str]]:
    """Rows queued now (unfinished, no lease): file id -> (stage, id their message carries)."""
    rows = cluster.query(
        "SELECT f.id::text, f.stage, coalesce(t.id, f.id)::text FROM audio_files f"
        " LEFT JOIN transcriptions t ON t.audio_file_id = f.id AND t.is_latest"
        " AND f.stage = 'analyze'"
        " WHERE f.id = ANY(%s::uuid[]) AND f.status IN ('pending', 'processing')"
        " AND f.lease_expires_at IS NULL",
        (ids,),
    )
    return {str(f): (str(stage), str(arg)) for f, stage, arg in rows}


def test_redis_restart_with_default_timings_resends_within_30_s(
    cluster: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    cluster.stop_workers()  # the package's tuned w1 must not run the sweep for this one
    cluster.start_worker("ia", queues="ingest,analyze", concurrency=2, teleai=True,
                         default_timings=True)  # fmt: skip
    cluster.start_worker("tx", queues="transcribe", concurrency=1, teleai=True,
                         default_timings=True)  # fmt: skip
    probe = Celery("recovery-probe", broker=cluster.redis.url)
    probe.config_from_object("workers.celeryconfig")  # the project's queues and key names
    broker = Broker(probe, cluster.redis.url)
    try:
        started = time.monotonic()
        ids = cluster.submit_ok(*corpus.batch(tmp_path / "in", FILES, prefix="dflt"))
        wait_until(lambda: cluster.count(ids, "completed") >= 4, 300, "the first files to finish")
        marks = cluster.log_marks()
        queued_messages = sum(cluster.redis.queued().values())
        cluster.redis.kill()
        down = time.monotonic()
        wait_until(
            lambda: len(BROKER_LOST.findall(cluster.logs_since(marks))) >= 2,
            60,
            "both workers to notice that Redis is gone",
        )
        time.sleep(max(OUTAGE_SECONDS - (time.monotonic() - down), 0))  # the fault's length
        cluster.redis.start()
        answering = time.monotonic()
        lost = _queued_rows(cluster, ids)  # Redis is empty: every queued row lost its message
        assert lost, "nothing was queued when Redis restarted: the test proves nothing"
        wait_until(
            lambda: _lost_rows_covered(cluster, broker, lost) == len(lost),
            RESENT_WITHIN_SECONDS + 30,
            "every lost message to be sent again",
            every=0.25,
        )
        resent_after = time.monotonic() - answering
        settle = cluster.wait_settled(ids, timeout=400)
        counts = oracle.check(cluster.database_url, ids)
        logs = cluster.logs_since(marks)
        reconciled = sum(int(n) for n in RECONCILED.findall(logs))
        report(
            files=counts.files,
            redis_restarts=1,
            queued_messages_lost=queued_messages,
            queued_rows_at_restart=len(lost),
            outage_seconds=round(answering - down, 1),
            resent_after_redis_answered_seconds=round(resent_after, 1),
            reconciled_logged=reconciled,
            settled_after_restart_seconds=round(settle, 1),
            **counts.outcome(),
            seconds=round(time.monotonic() - started, 1),
        )
        assert counts.completed == counts.files, counts.failures
        assert counts.versions == counts.files
        assert resent_after <= RESENT_WITHIN_SECONDS, resent_after
        assert reconciled >= 1, "no `reconciled ... reason=broker_restarted` line was logged"
        assert "celery beat" not in logs and "beat: Starting" not in logs
    finally:
        broker.close()
        probe.close()
        cluster.stop_workers()
