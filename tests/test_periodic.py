"""Leader election for the periodic jobs on real PostgreSQL: one leader, fast take-over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from db.engine import libpq_url
from workers.periodic import Job, Leadership, Scheduler


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_one_leader_and_the_next_takes_over_when_it_goes(database_url: str) -> None:
    first, second = Leadership(database_url), Leadership(database_url)
    try:
        assert first.check() and not second.check()
        assert first.check() and not second.check()  # holding it is stable
        first.close()  # a stopping worker gives the lock up at once
        assert second.check() and not first.check()
        # The leader's session dies (server restart, network, pg_terminate_backend).
        with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'teleai-periodic' AND datname = current_database()"
            )
        # first may have grabbed the lock back meanwhile; either way exactly one leads.
        assert not second.check() or not first.check()
        _wait(lambda: first.check() != second.check())
    finally:
        first.close()
        second.close()


def test_only_the_leaders_scheduler_runs_jobs_and_a_follower_takes_over(
    database_url: str,
) -> None:
    runs: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    def job(name: str) -> Callable[[], None]:
        def run() -> None:
            with lock:
                runs[name] += 1

        return run

    a = Scheduler(Leadership(database_url), [Job("count", 0.05, job("a"))], tick=0.02)
    b = Scheduler(Leadership(database_url), [Job("count", 0.05, job("b"))], tick=0.02)
    a.start()
    try:
        _wait(lambda: runs["a"] >= 2)
        b.start()
        time.sleep(0.5)
        assert runs["b"] == 0, "a follower ran a job while another worker led"
        a.stop()
        _wait(lambda: runs["b"] >= 2)  # the lock went with a's session: b leads now
    finally:
        a.stop()
        b.stop()


def test_a_slow_job_never_overlaps_itself_or_delays_another(database_url: str) -> None:
    slow_running = threading.Event()
    release = threading.Event()
    overlaps: list[int] = []
    fast_runs: list[float] = []
    active = [0]

    def slow() -> None:
        active[0] += 1
        overlaps.append(active[0])
        slow_running.set()
        release.wait(5)
        active[0] -= 1

    scheduler = Scheduler(
        Leadership(database_url),
        [Job("slow", 0.0, slow), Job("fast", 0.0, lambda: fast_runs.append(time.monotonic()))],
        tick=0.02,
    )
    scheduler.start()
    try:
        assert slow_running.wait(5)
        _wait(lambda: len(fast_runs) >= 5)
    finally:
        release.set()
        scheduler.stop()
    assert max(overlaps) == 1
