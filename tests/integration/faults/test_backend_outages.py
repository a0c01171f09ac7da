"""The services go away mid-run: PostgreSQL drops every connection.

(Redis restarting empty is ``test_recovery_default_timings.py``: it runs with the default
timings, as a deployment would.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import Cluster, SpeechCorpus

pytestmark = pytest.mark.slow

FILES = 36
MIN_CUT_TRANSACTIONS = 3
MIN_ROUNDS = 10


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
        **counts.outcome(),
        seconds=round(time.monotonic() - started, 1),
    )
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
