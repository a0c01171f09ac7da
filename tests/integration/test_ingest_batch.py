"""Batched ingest messages (``teleai.ingest_batch``) with a real worker on the real Redis.

``teleai ingest`` of a folder sends several files to one ingest message. These tests check
that each file of a batch still has its own fate: a damaged file fails alone, a transient
error sends only that file again (on its own, under the retry policy), and two deliveries of
the same batch hand every file over once. Only an ingest worker runs, so the files that moved
on wait in the ``transcribe`` queue, where their messages are counted.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
import time
import uuid
import wave
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
import redis

from db.engine import libpq_url
from tests.conftest import PgAdmin
from tests.integration.conftest import Pipeline, module_pipeline
from workers.recovery import message_key

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 120.0


@pytest.fixture(scope="module")
def ingest_only(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """A database clone and an ingest-only worker (two processes): nothing transcribes. No
    recovery sweep runs: the tests empty the ``transcribe`` queue, and a sweep would send the
    messages of the earlier tests' rows again."""
    root = tmp_path_factory.mktemp("ingest-batch")
    with module_pipeline(
        pg_admin,
        template_database,
        redis_url,
        root,
        "ingb",
        settings={"TELEAI_PERIODIC_JOBS": "false"},
        queues="ingest",
        concurrency=2,
    ) as found:
        yield found


@pytest.fixture
def tones(tmp_path: Path) -> Callable[[int, str], list[Path]]:
    """``count`` distinct 0.3-s WAV files (a pitch per file and test: never duplicates)."""
    base = 100 + (uuid.uuid4().int % 5000)

    def make(count: int, prefix: str) -> list[Path]:
        folder = tmp_path / prefix
        folder.mkdir()
        paths = []
        for index in range(count):
            rate, pitch = 8000, base + 7 * index
            frames = b"".join(
                struct.pack("<h", round(9000 * math.sin(2 * math.pi * pitch * n / rate)))
                for n in range(rate * 3 // 10)
            )
            path = folder / f"{prefix}-{index:03d}.wav"
            with wave.open(str(path), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(rate)
                out.writeframes(frames)
            paths.append(path)
        return paths

    return make


def _query(pipe: Pipeline, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(pipe.database_url), autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


def _submit(pipe: Pipeline, paths: list[Path]) -> list[str]:
    """``teleai ingest PATHS --json`` (no --wait); the new rows' ids, in order."""
    result = pipe.cli("ingest", *map(str, paths), "--json", check=True)
    rows = json.loads(result.stdout)
    assert [(r["status"], r["queued"]) for r in rows] == [("pending", True)] * len(paths), rows
    return [str(r["id"]) for r in rows]


def _states(pipe: Pipeline, ids: list[str]) -> dict[str, tuple[str, str, int]]:
    rows = _query(
        pipe,
        "SELECT id::text, status, stage, attempts FROM audio_files WHERE id = ANY(%s::uuid[])",
        (ids,),
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _wait(pipe: Pipeline, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():
        pipe.assert_workers_alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _transcribe_messages(pipe: Pipeline) -> Counter[str]:
    """File id -> number of ``teleai.transcribe`` messages waiting in Redis."""
    client = redis.Redis.from_url(pipe.env["TELEAI_BROKER_URL"])
    try:
        raw = cast(list[bytes], client.lrange("transcribe", 0, -1))
    finally:
        client.close()
    keys = [message_key(r) for r in raw]
    return Counter(k[1] for k in keys if k is not None and k[0] == "teleai.transcribe")


def _wait_for_transcribe_messages(pipe: Pipeline, count: int) -> None:
    """The hand-over commits first and sends the ``transcribe`` messages after it, so a row
    already at the transcribe stage may still have its message on the way."""
    _wait(
        pipe,
        lambda: sum(_transcribe_messages(pipe).values()) >= count,
        f"{count} transcribe messages",
    )
    time.sleep(0.5)  # a duplicate would add one now


def _received(pipe: Pipeline, task: str, since: int) -> list[str]:
    """Task ids of the ``task`` deliveries the worker logged after byte ``since`` of its log."""
    text = (pipe.log_dir / "worker.log").read_bytes()[since:].decode(errors="replace")
    return re.findall(rf"Task {re.escape(task)}\[([^\]]+)\] received", text)


def _log_size(pipe: Pipeline) -> int:
    return (pipe.log_dir / "worker.log").stat().st_size


def _clear_transcribe(pipe: Pipeline) -> None:
    client = redis.Redis.from_url(pipe.env["TELEAI_BROKER_URL"])
    try:
        client.delete("transcribe")
    finally:
        client.close()


def test_one_message_ingests_the_folder_and_a_damaged_file_fails_alone(
    ingest_only: Pipeline, tones: Callable[[int, str], list[Path]]
) -> None:
    pipe = ingest_only
    _clear_transcribe(pipe)
    good = tones(12, "ok")
    damaged = good[0].parent / "ok-damaged.wav"
    damaged.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    mark = _log_size(pipe)
    ids = _submit(pipe, [*good[:6], damaged, *good[6:]])
    bad_id = ids[6]

    _wait(
        pipe,
        lambda: all(s[1] == "transcribe" or s[0] == "failed" for s in _states(pipe, ids).values()),
        "every file to be ingested",
    )
    states = _states(pipe, ids)
    assert states.pop(bad_id)[:2] == ("failed", "ingest")
    assert set(states.values()) == {("processing", "transcribe", 0)}
    # One delivery for the 13 files, no one-file message, and one transcribe message each.
    assert len(_received(pipe, "teleai.ingest_batch", mark)) == 1
    assert _received(pipe, "teleai.ingest", mark) == []
    _wait_for_transcribe_messages(pipe, len(states))
    assert _transcribe_messages(pipe) == Counter(dict.fromkeys(states, 1))
    # Each row carries its own probe results.
    rows = _query(
        pipe,
        "SELECT duration_seconds, sample_rate, codec, metadata->'stage_seconds' ? 'ingest'"
        " FROM audio_files WHERE id = ANY(%s::uuid[]) AND status <> 'failed'",
        (ids,),
    )
    assert {(float(d), r, c, t) for d, r, c, t in rows} == {(0.3, 8000, "pcm_s16le", True)}
    [(message,)] = _query(pipe, "SELECT error_message FROM audio_files WHERE id = %s", (bad_id,))
    assert message.startswith("ingest failed: could not read the WAV stream")


def test_a_transient_error_sends_only_that_file_again(
    ingest_only: Pipeline, tones: Callable[[int, str], list[Path]]
) -> None:
    """The hand-over of one file of the batch fails once as a serialization failure (a
    trigger in the real database): the others move on in the same delivery, and only that
    file comes back, as a ``teleai.ingest`` message of its own."""
    pipe = ingest_only
    _clear_transcribe(pipe)
    paths = tones(8, "tr")
    # A trigger that refuses the hand-over of the file named tr-003.wav twice: in the batch's
    # one statement, then in its own transaction (a sequence counts: nextval is never rolled
    # back with the refused statement).
    _query(
        pipe,
        """
        CREATE SEQUENCE test_refusals;
        CREATE FUNCTION test_refuse_twice() RETURNS trigger AS $$
        BEGIN
            IF NEW.file_name = 'tr-003.wav' THEN  -- nested: SQL's AND has no fixed order
                IF nextval('test_refusals') <= 2 THEN
                    RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
                END IF;
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER test_refuse_twice BEFORE UPDATE ON audio_files
        FOR EACH ROW WHEN (NEW.stage = 'transcribe' AND OLD.stage = 'ingest')
        EXECUTE FUNCTION test_refuse_twice();
        """,
    )
    try:
        mark = _log_size(pipe)
        ids = _submit(pipe, paths)
        _wait(
            pipe,
            lambda: all(s[1] == "transcribe" for s in _states(pipe, ids).values()),
            "every file to be handed over",
        )
        [(asked,)] = _query(pipe, "SELECT last_value FROM test_refusals")
        assert asked == 3, "refused twice, then handed over"
    finally:
        _query(pipe, "DROP TRIGGER IF EXISTS test_refuse_twice ON audio_files")
    assert len(_received(pipe, "teleai.ingest_batch", mark)) == 1
    assert len(_received(pipe, "teleai.ingest", mark)) == 1  # the one file, on its own
    states = _states(pipe, ids)
    assert set(states.values()) == {("processing", "transcribe", 0)}
    _wait_for_transcribe_messages(pipe, len(ids))
    assert _transcribe_messages(pipe) == Counter(dict.fromkeys(ids, 1))
    logs = (pipe.log_dir / "worker.log").read_bytes()[mark:].decode(errors="replace")
    assert re.findall(r"\] retry_alone\s.*\bitem=(\S+)", logs) == [ids[3]]


def test_two_deliveries_of_one_batch_hand_every_file_over_once(
    ingest_only: Pipeline, tones: Callable[[int, str], list[Path]]
) -> None:
    """At-least-once delivery: the same batch twice at once (and a one-file copy of some of
    its files) while the rows are queued; the claims let one delivery take each file."""
    pipe = ingest_only
    ids = _submit(pipe, tones(20, "dup"))
    _wait(
        pipe,
        lambda: all(s[1] == "transcribe" for s in _states(pipe, ids).values()),
        "the first ingest",
    )
    # Queue the rows at ingest again (as before their first delivery) and send duplicates.
    _query(
        pipe,
        "UPDATE audio_files SET stage = 'ingest', status = 'pending', attempts = 0,"
        " lease_expires_at = NULL WHERE id = ANY(%s::uuid[])",
        (ids,),
    )
    _clear_transcribe(pipe)
    code = (
        "import sys, workers.tasks as t\n"
        "ids = sys.argv[1:]\n"
        "t.ingest_batch.delay(ids)\n"
        "t.ingest_batch.delay(ids)\n"
        "for i in ids[::4]:\n"
        "    t.ingest.delay(i)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, *ids], env=pipe.env, cwd=REPO, check=True, timeout=120
    )
    _wait(
        pipe,
        lambda: (
            sum(_transcribe_messages(pipe).values()) >= len(ids)
            and all(s[1] == "transcribe" for s in _states(pipe, ids).values())
        ),
        "the duplicates to be handled",
    )
    time.sleep(2)  # any late duplicate would add a message now
    assert _transcribe_messages(pipe) == Counter(dict.fromkeys(ids, 1))
    assert set(_states(pipe, ids).values()) == {("processing", "transcribe", 0)}
