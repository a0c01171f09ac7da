"""The in-task memory budget: growth is stopped with a clear error, one huge allocation is
refused, broad ``except Exception`` cannot swallow the interrupt, and nothing leaks out of the
block afterwards."""

from __future__ import annotations

import contextlib
import resource
import time

import numpy as np
import pytest

from pipeline.errors import PermanentError
from pipeline.memguard import MemoryBudgetExceeded, memory_budget


def test_growth_past_the_budget_is_stopped_inside_the_block() -> None:
    keep: list[np.ndarray] = []
    started = time.perf_counter()
    with pytest.raises(MemoryBudgetExceeded) as caught, memory_budget(64, what="testing"):
        while True:
            keep.append(np.ones(1_000_000))  # 8 MB, touched
    keep.clear()
    assert time.perf_counter() - started < 5
    assert isinstance(caught.value, PermanentError)
    assert caught.value.message.startswith("testing needed more than its memory budget of 64 MiB")


def test_broad_except_in_library_code_cannot_swallow_it() -> None:
    keep: list[np.ndarray] = []
    with pytest.raises(MemoryBudgetExceeded), memory_budget(64) as budget:
        for _ in range(10_000):
            with contextlib.suppress(Exception):  # what a careless library does
                keep.append(np.ones(1_000_000))
            budget.check()
    keep.clear()


def test_one_huge_allocation_is_refused() -> None:
    soft_before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryBudgetExceeded, match="memory budget of 64 MiB"), memory_budget(64):
        np.ones(64 * 1024**3 // 8)  # 64 GiB
    assert resource.getrlimit(resource.RLIMIT_AS) == soft_before  # restored


def test_a_block_within_budget_runs_and_nothing_fires_later() -> None:
    with memory_budget(64) as budget:
        data = np.ones(1000)
        budget.check()
    time.sleep(0.3)  # a late watchdog would raise here
    assert data.sum() == 1000


def test_zero_turns_the_guard_off() -> None:
    with memory_budget(0) as budget:
        budget.check()
