"""Baseline: many short files through one worker with two pool processes, nothing broken."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import Cluster, SpeechCorpus

pytestmark = pytest.mark.slow

# 100 keeps the whole package near 7 minutes on 2 cores; TELEAI_FAULT_BASELINE_FILES=200 ran in
# about 3 minutes on its own there (64 files a minute).
FILES = int(os.environ.get("TELEAI_FAULT_BASELINE_FILES", "100"))


def test_baseline_loses_nothing(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path, report: Callable[..., None]
) -> None:
    paths = corpus.batch(tmp_path / "in", FILES, prefix="base")
    workers.start_worker("w1", concurrency=2)
    started = time.monotonic()
    ids = workers.submit_ok(tmp_path / "in")
    submitted = time.monotonic() - started
    assert len(ids) == len(paths)
    workers.wait_settled(ids, timeout=900)
    seconds = time.monotonic() - started
    counts = oracle.check(workers.database_url, ids)
    report(
        files=counts.files,
        completed=counts.completed,
        failed=counts.failed,
        lost=counts.lost,
        duplicates=0,
        submit_seconds=round(submitted, 1),
        seconds=round(seconds, 1),
        files_per_minute=round(counts.files / seconds * 60, 1),
    )
    assert counts.completed == counts.files, counts.failures
