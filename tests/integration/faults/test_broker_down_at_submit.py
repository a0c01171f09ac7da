"""A file submitted while the broker is unreachable is recorded, and the workers send it later.

The submit path commits the row first and then sends the message (``workers/submit.py``). With
Redis unreachable for the submitting process the row stays queued at ingest without a message;
the workers' recovery sweep sees a queued row whose message is in no queue and sends it, with no
restart of Redis to trigger it (the scheduled sweep after the settle time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import (
    QUEUED_GRACE_SECONDS,
    REAPER_SECONDS,
    Cluster,
    SpeechCorpus,
    free_port,
)

pytestmark = pytest.mark.slow

FILES = 3
SLACK_SECONDS = 60  # the files' own processing on a busy 2-core machine


def test_files_submitted_while_redis_is_unreachable_are_sent_by_the_sweep(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    rows = workers.submit(
        *corpus.batch(tmp_path / "in", FILES, prefix="down"),
        env={"TELEAI_BROKER_URL": unreachable, "TELEAI_RESULT_BACKEND": unreachable},
    )
    ids = [str(row["id"]) for row in rows]
    assert len(ids) == FILES and all(row["status"] == "pending" for row in rows), rows
    assert not any(row.get("queued") for row in rows), rows
    assert sum(workers.redis.queued().values()) == 0, "a message reached Redis after all"

    settled = workers.wait_settled(
        ids, timeout=QUEUED_GRACE_SECONDS + REAPER_SECONDS + SLACK_SECONDS
    )
    counts = oracle.check(workers.database_url, ids)
    report(
        files=counts.files,
        submitted_without_message=FILES,
        settled_seconds=round(settled, 1),
        lost=counts.lost,
        duplicates=counts.versions - counts.files,
        seconds=round(time.monotonic() - started, 1),
    )
    assert counts.completed == counts.files, counts.failures
    assert counts.versions == counts.files
