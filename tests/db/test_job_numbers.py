"""The operators' numbers of :mod:`pipeline.jobs` on real PostgreSQL, and the metrics collector
reading them inside a caller's transaction (the HTTP API's ``/stats``).

The shared test database may hold other tests' rows, so each check compares the numbers before
and after this test's own rows (all inside the rolled-back ``session``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from sqlalchemy import text
from sqlalchemy.orm import Session

from interfaces.metrics import STATEMENT_TIMEOUT_MS, PipelineCollector
from pipeline import jobs
from tests.db.factories import make_file, make_user
from workers.celeryconfig import QUEUES

BUCKET = 300
WINDOW = 12 * BUCKET
NO_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: the broker part reads 0


def _finished(
    session: Session,
    owner: Any,
    *,
    status: str,
    seconds_ago: float,
    stage_seconds: Any = None,
    deleted: bool = False,
) -> uuid.UUID:
    """A file that finished ``seconds_ago`` before the transaction's ``now()``."""
    audio = make_file(session, owner, "call.wav")
    session.execute(
        text(
            """
            UPDATE audio_files
            SET status = CAST(:status AS text), stage = 'analyze',
                error_message = CASE WHEN CAST(:status AS text) = 'failed'
                                     THEN 'decoder said no' END,
                processing_started_at = now()
                    - make_interval(secs => CAST(:ago AS double precision) + 5),
                processing_completed_at = now()
                    - make_interval(secs => CAST(:ago AS double precision)),
                metadata = CAST(:metadata AS jsonb),
                deleted_at = CASE WHEN CAST(:deleted AS boolean) THEN now() END
            WHERE id = :id
            """
        ),
        {
            "id": audio.id,
            "status": status,
            "ago": seconds_ago,
            "metadata": json.dumps(
                {} if stage_seconds is None else {"stage_seconds": stage_seconds}
            ),
            "deleted": deleted,
        },
    )
    return audio.id


def _bucket_ago(session: Session, seconds_ago: float) -> int:
    started = session.execute(
        text("SELECT floor((extract(epoch FROM now()) - :ago) / :step)::bigint * :step"),
        {"ago": seconds_ago, "step": BUCKET},
    ).scalar_one()
    return int(started)


def _by_start(session: Session) -> dict[int, jobs.FinishedBucket]:
    found = jobs.finished_buckets(session, seconds=WINDOW, bucket_seconds=BUCKET)
    assert [b.start for b in found] == sorted(b.start for b in found), "oldest first"
    assert all(b.start % BUCKET == 0 for b in found)
    return {b.start: b for b in found}


def test_finished_buckets_count_outcomes_and_average_steps(session: Session) -> None:
    owner = make_user(session)
    before = _by_start(session)
    # Two buckets: 10-ish and 30-ish minutes ago (positions inside a bucket vary with now()).
    near, far = 600.0, 1800.0
    _finished(session, owner, status="completed", seconds_ago=near,
              stage_seconds={"transcribe": 2.0, "decode": 1.0})  # fmt: skip
    _finished(session, owner, status="completed", seconds_ago=near,
              stage_seconds={"transcribe": 4.0, "note": "not a number"})  # fmt: skip
    _finished(session, owner, status="failed", seconds_ago=near, stage_seconds={"decode": 99.0})
    _finished(session, owner, status="completed", seconds_ago=far, stage_seconds="not an object")
    _finished(session, owner, status="completed", seconds_ago=near, deleted=True,
              stage_seconds={"transcribe": 100.0})  # fmt: skip
    _finished(session, owner, status="completed", seconds_ago=WINDOW + 600,
              stage_seconds={"transcribe": 100.0})  # fmt: skip
    after = _by_start(session)

    changed = {start for start in after if after[start] != before.get(start)}
    assert changed == {_bucket_ago(session, near), _bucket_ago(session, far)}
    if not before:  # the usual case: nobody else's rows in the window
        recent = after[_bucket_ago(session, near)]
        assert (recent.completed, recent.failed) == (2, 1)
        # Only completed files' numeric steps; the failed file's 99 s and the deleted file's
        # 100 s are left out.
        assert recent.step_means == {"transcribe": 3.0, "decode": 1.0}
        older = after[_bucket_ago(session, far)]
        assert (older.completed, older.failed, dict(older.step_means)) == (1, 0, {})
    else:
        recent = after[_bucket_ago(session, near)]
        was = before.get(_bucket_ago(session, near))
        assert recent.completed - (was.completed if was else 0) == 2
        assert recent.failed - (was.failed if was else 0) == 1


def test_collect_in_leaves_the_callers_transaction_writable(session: Session) -> None:
    """What ``/stats`` does: read the numbers in the request's transaction, which may still
    write afterwards and keeps its own statement timeout."""
    owner = make_user(session)
    _finished(session, owner, status="completed", seconds_ago=60, stage_seconds={"decode": 0.5})
    session.execute(text("SET LOCAL statement_timeout = '42s'"))
    collector = PipelineCollector("postgresql+psycopg://unused@127.0.0.1:1/x", NO_BROKER, QUEUES)

    families = {family.name: family for family in collector.collect_in(session)}

    up = {s.labels["source"]: s.value for s in families["teleai_up"].samples}
    assert up == {"postgresql": 1, "redis": 0}
    files = {s.labels["status"]: s.value for s in families["teleai_files"].samples}
    assert files["completed"] >= 1
    assert "teleai_queue_messages" not in families, "the broker did not answer"
    assert session.execute(text("SHOW transaction_read_only")).scalar_one() == "off"
    assert session.execute(text("SHOW statement_timeout")).scalar_one() == "42s"
    make_file(session, owner, "after-the-numbers.wav")  # a write in the same transaction
    session.flush()


class _Timed(PipelineCollector):
    """The collector, noting the statement timeout its database reads run under."""

    seen: list[str]

    def _database_metrics(
        self, session: Session
    ) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        self.seen = [str(session.execute(text("SHOW statement_timeout")).scalar_one())]
        yield from super()._database_metrics(session)


def test_collect_in_bounds_its_own_reads(session: Session) -> None:
    """Inside ``collect_in`` the reads give up after the collector's scrape timeout."""
    collector = _Timed("postgresql+psycopg://unused@127.0.0.1:1/x", NO_BROKER, QUEUES)
    list(collector.collect_in(session))
    assert collector.seen == [f"{STATEMENT_TIMEOUT_MS // 1000}s"]
