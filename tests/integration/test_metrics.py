"""`teleai metrics` against a real pipeline: one spoken file in, Prometheus text out.

The module empties the test Redis database (``TELEAI_TEST_REDIS_URL``) before and after it, so
the queue depths it reads are its own, not messages another module left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from prometheus_client.parser import text_string_to_metric_families

from db.engine import get_engine, unit_of_work
from interfaces.metrics import PipelineCollector, queue_keys
from pipeline.joblog import JobOutcome, job_summary_fields, log_job_summary
from tests.harness import free_port
from tests.integration.conftest import VENV_BIN, Pipeline
from tests.speech import speech_file
from workers.celeryconfig import QUEUES

SENTENCE = "Please send the signed contract to our office in Madrid before Monday."
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def redis_url(redis_url: str) -> Iterator[str]:
    """The session's test broker database (which fails loudly when Redis is down), emptied
    before and after this module."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    client.flushdb()
    yield redis_url
    client.flushdb()


@pytest.fixture(scope="module")
def completed_file(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> str:
    audio = speech_file(SENTENCE, "wav", tmp_path_factory.mktemp("speech"), stem="contract")
    rows = pipeline.ingest(audio, extra=("--force",))
    assert [row["status"] for row in rows] == ["completed"], (rows, pipeline.worker_logs()[-3000:])
    file_id: str = rows[0]["id"]
    return file_id


def scrape(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> str:
    """The endpoint's text once it answers; fails with the server's output if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"teleai metrics exited {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  (http://127.0.0.1)
                body: bytes = response.read()
                return body.decode()
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError(f"no answer from {url} after {timeout} s:\n{log.read_text()}")


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in found, f"{name}{labels} not exported; have {sorted({n for n, _ in found})}"
    return found[key]


@pytest.fixture(scope="module")
def exported(
    pipeline: Pipeline, completed_file: str, tmp_path_factory: pytest.TempPathFactory
) -> Samples:
    """Start `teleai metrics` on a free port, scrape it once, stop it with SIGTERM."""
    port = free_port()
    log = tmp_path_factory.mktemp("metrics") / "metrics.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "teleai"), "metrics", "--port", str(port)],
            env=pipeline.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = scrape(f"http://127.0.0.1:{port}/metrics", proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return samples(text)


def test_files_by_status_and_sources_up(exported: Samples) -> None:
    assert value(exported, "teleai_up", source="postgresql") == 1
    assert value(exported, "teleai_up", source="redis") == 1
    assert value(exported, "teleai_files", status="completed") >= 1
    assert value(exported, "teleai_files", status="failed") == 0
    assert value(exported, "teleai_files_finished_last_hour", status="completed") >= 1
    for stage in QUEUES:
        assert value(exported, "teleai_files_unfinished", stage=stage, state="queued") == 0
        assert value(exported, "teleai_queued_audio_seconds", stage=stage) == 0


def test_queue_depths_are_empty_after_completion(exported: Samples) -> None:
    for queue in QUEUES:
        assert value(exported, "teleai_queue_messages", queue=queue) == 0
    assert value(exported, "teleai_queue_unacked_messages") == 0


def test_stage_seconds_from_the_last_hour(exported: Samples) -> None:
    for step in ("probe", "decode", "transcribe", "analyze"):
        assert value(exported, "teleai_stage_seconds_avg", step=step) > 0
        count = value(exported, "teleai_stage_seconds_bucket", step=step, le="+Inf")
        assert count >= 1
        assert value(exported, "teleai_stage_seconds_gcount", step=step) == count
        assert value(exported, "teleai_stage_seconds_gsum", step=step) > 0


def test_queue_depth_counts_every_priority_list(redis_url: str) -> None:
    """kombu keeps one list per priority step; a depth must add them all up."""
    queue = f"probe-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    client = redis.Redis.from_url(redis_url)
    plain, priority_3 = queue_keys(queue)[:2]
    client.rpush(plain, "a", "b")
    client.rpush(priority_3, "c")
    try:
        collector = PipelineCollector(
            "postgresql+psycopg://nobody@127.0.0.1:1/x", redis_url, [queue]
        )
        found = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in collector.collect()
            for sample in family.samples
        }
    finally:
        client.delete(plain, priority_3)
    assert value(found, "teleai_queue_messages", queue=queue) == 3
    assert value(found, "teleai_up", source="redis") == 1
    assert value(found, "teleai_up", source="postgresql") == 0  # reported, not raised


def test_one_summary_line_per_finished_job(pipeline: Pipeline, completed_file: str) -> None:
    with (
        structlog.testing.capture_logs() as logs,
        unit_of_work(get_engine(pipeline.database_url)) as session,
    ):
        fields: dict[str, Any] | None = log_job_summary(session, uuid.UUID(completed_file))
    assert [entry["event"] for entry in logs] == ["job_finished"]
    assert fields is not None and logs[0]["file_id"] == completed_file
    assert fields["outcome"] == "completed" and fields["stage"] == "analyze"
    assert fields["attempt"] >= 1 and fields["audio_seconds"] > 0
    assert {"validate", "probe", "decode", "transcribe", "analyze"} <= set(fields["stage_seconds"])
    assert fields["wall_seconds"] > 0 and "error" not in fields


def test_summary_of_a_failed_job_carries_the_error() -> None:
    started = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    outcome = JobOutcome(
        file_id=uuid.uuid4(),
        status="failed",
        stage="ingest",
        attempts=1,
        file_format="mp3",
        duration_seconds=None,
        stage_seconds={"validate": 0.00123},
        started_at=started,
        completed_at=started + dt.timedelta(seconds=2),
        error_message="ingest failed: looks like a PDF document, not audio",
    )
    fields = job_summary_fields(outcome)
    assert fields["outcome"] == "failed" and fields["error"].startswith("ingest failed")
    assert fields["wall_seconds"] == 2.0 and fields["audio_seconds"] is None
    assert fields["stage_seconds"] == {"validate": 0.001}
    assert "realtime_factor" not in fields
