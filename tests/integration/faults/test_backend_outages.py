"""The services go away mid-run: Redis restarts empty, PostgreSQL drops every connection."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import Cluster, SpeechCorpus, wait_until

pytestmark = pytest.mark.slow

FILES = 36
MIN_CUT_TRANSACTIONS = 3
MIN_ROUNDS = 10
BROKER_LOST = re.compile(r"Connection to broker lost|Cannot connect to redis|Error while reading")


def test_redis_restart_loses_messages_not_files(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    """Redis is killed (no persistence: every queued message is gone) and started again."""
    workers.standard(pristine=True)
    started = time.monotonic()
    ids = workers.submit_ok(*corpus.batch(tmp_path / "in", FILES, prefix="redis"))
    wait_until(lambda: workers.count(ids, "completed") >= 6, 300, "the first files to finish")
    marks = workers.log_marks()
    queued = sum(workers.redis.queued().values())
    workers.redis.kill()
    down = time.monotonic()
    wait_until(
        lambda: BROKER_LOST.search(workers.logs_since(marks, "w1")) is not None,
        60,
        "the worker to notice that Redis is gone",
    )
    workers.redis.start()
    outage = time.monotonic() - down
    settle = workers.wait_settled(ids, timeout=300)
    counts = oracle.check(workers.database_url, ids)
    report(
        files=counts.files,
        redis_restarts=1,
        messages_lost_in_restart=queued,
        outage_seconds=round(outage, 1),
        settled_after_restart_seconds=round(settle, 1),
        lost=counts.lost,
        failed=counts.failed,
        duplicates=counts.versions - counts.files,
        seconds=round(time.monotonic() - started, 1),
    )
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
    assert workers.beat is not None and workers.beat.poll() is None, "beat died with Redis"


def test_postgres_connections_terminated_mid_run(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    """Every connection to the database is terminated twice a second while files move through,
    until some were cut inside a transaction (mid-write); then the pipeline must recover."""
    marks = workers.log_marks()
    started = time.monotonic()
    ids = workers.submit_ok(*corpus.batch(tmp_path / "in", FILES, prefix="pg"))
    terminated = in_transaction = rounds = 0
    while rounds < MIN_ROUNDS or in_transaction < MIN_CUT_TRANSACTIONS:
        assert time.monotonic() - started < 180, f"{in_transaction} cut transactions in 180 s"
        if not workers.unfinished(ids):  # all done before enough writes were cut: more work
            ids += workers.submit_ok(*corpus.batch(tmp_path / f"more{rounds}", 8, prefix="pg"))
        killed = workers.query(
            "SELECT pg_terminate_backend(pid), state <> 'idle' FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        terminated += sum(1 for ok, _ in killed if ok)
        in_transaction += sum(1 for ok, busy in killed if ok and busy)
        rounds += 1
        time.sleep(0.5)
    disrupted = time.monotonic() - started
    workers.wait_settled(ids, timeout=300)
    counts = oracle.check(workers.database_url, ids)
    logs = workers.logs_since(marks, "w1")
    report(
        files=counts.files,
        termination_rounds=rounds,
        connections_terminated=terminated,
        terminated_inside_a_transaction=in_transaction,
        disruption_seconds=round(disrupted, 1),
        task_errors_from_the_database=logs.count("raised unexpected: OperationalError"),
        lost=counts.lost,
        failed=counts.failed,
        duplicates=counts.versions - counts.files,
        seconds=round(time.monotonic() - started, 1),
    )
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
