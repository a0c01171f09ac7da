"""The recovery sweep against real PostgreSQL and the real Redis: what it re-sends, what it leaves.

No worker runs here: the test reads the Redis lists and the ``unacked`` hash the way Celery's
Redis transport writes them, after sending through the project's own Celery app.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
from sqlalchemy import Engine, text

from db.engine import unit_of_work
from db.files import record_upload
from db.models import Stage
from db.transcripts import add_transcription_version
from db.users import create_user
from pipeline import jobs
from workers.app import app
from workers.recovery import Broker, message_key, message_keys, sweep

SETTLE = 15


@pytest.fixture
def broker(redis_url: str) -> Iterator[Broker]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    found = Broker(app, redis_url)
    try:
        yield found
    finally:
        found.close()
        client.flushdb()
        client.close()


@pytest.fixture
def owner(engine: Engine) -> uuid.UUID:
    with unit_of_work(engine) as session:
        return create_user(
            session, email="rec@example.com", username="rec", password="pw-123456"
        ).id


def _queued_file(engine: Engine, owner: uuid.UUID, *, stage: str = "ingest") -> uuid.UUID:
    """A row queued at ``stage`` for a minute (updated_at back-dated, trigger off)."""
    with unit_of_work(engine) as session:
        file_id = record_upload(
            session,
            user_id=owner,
            file_name="call.wav",
            file_path=f"/storage/{uuid.uuid4()}.wav",
            file_size=10,
            file_format="wav",
        ).id
        if stage == "analyze":
            add_transcription_version(
                session, file_id, text="hello", language_code="en", confidence_score=0.9,
                engine="x", engine_version="1", model_name="m", segments=[], word_count=1,
                processing_time_seconds=0.1,
            )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text(
                "UPDATE audio_files SET stage = :s, status = 'processing',"
                " updated_at = now() - interval '1 minute' WHERE id = :i"
            ),
            {"i": file_id, "s": stage},
        )
    return file_id


def _uow(engine: Engine) -> Callable[[], Any]:
    return lambda: unit_of_work(engine)


def _keys(broker: Broker, queue: str) -> list[tuple[str, str] | None]:
    return [message_key(raw) for raw in cast(list[bytes], broker.client.lrange(queue, 0, -1))]


def _send(broker: Broker, file_id: uuid.UUID, stage: Stage = Stage.INGEST) -> None:
    """Send a stage message the way the pipeline does (through the project's Celery app)."""
    broker.send([jobs.Queued(file_id, stage, file_id)])


def test_a_lost_message_is_sent_once_and_a_waiting_one_is_left_alone(
    engine: Engine, owner: uuid.UUID, broker: Broker
) -> None:
    lost = _queued_file(engine, owner)
    waiting = _queued_file(engine, owner)
    _send(broker, waiting)  # still queued behind a backlog: its message is in the list

    result = sweep(_uow(engine), broker, settled_seconds=SETTLE)

    assert (result.waiting, result.reconciled) == (2, 1)
    keys = _keys(broker, "ingest")
    assert keys.count(("teleai.ingest", str(lost))) == 1
    assert keys.count(("teleai.ingest", str(waiting))) == 1, "a waiting message was copied"
    # The next sweep finds every message where it should be and sends nothing.
    assert sweep(_uow(engine), broker, settled_seconds=0).reconciled == 0
    assert len(_keys(broker, "ingest")) == 2


def test_a_delivered_unacknowledged_message_counts_as_present(
    engine: Engine, owner: uuid.UUID, broker: Broker
) -> None:
    file_id = _queued_file(engine, owner, stage="transcribe")
    _send(broker, file_id, Stage.TRANSCRIBE)
    # What kombu does when a worker takes it (task_acks_late): list -> unacked hash.
    raw = cast(bytes, broker.client.rpop("transcribe"))
    broker.client.hset(
        "unacked", "tag-1", json.dumps([json.loads(raw), "transcribe", "transcribe"])
    )

    assert sweep(_uow(engine), broker, settled_seconds=SETTLE).reconciled == 0
    assert broker.client.llen("transcribe") == 0


def test_analyze_rows_are_matched_by_their_latest_version(
    engine: Engine, owner: uuid.UUID, broker: Broker
) -> None:
    file_id = _queued_file(engine, owner, stage="analyze")
    with unit_of_work(engine) as session:
        [queued] = jobs.waiting(session, settled_seconds=SETTLE)
    assert queued.stage is Stage.ANALYZE and queued.message_arg not in (None, file_id)

    assert sweep(_uow(engine), broker, settled_seconds=SETTLE).reconciled == 1
    assert _keys(broker, "analyze") == [("teleai.analyze", str(queued.message_arg))]


def test_an_emptied_redis_gets_its_bindings_back_with_the_resent_messages(
    engine: Engine, owner: uuid.UUID, broker: Broker
) -> None:
    """After Redis lost everything, a message published to an exchange without a bound queue
    is dropped by kombu; the sweep declares the queues first, so its messages arrive."""
    file_id = _queued_file(engine, owner)
    broker.client.flushdb()
    assert sweep(_uow(engine), broker, settled_seconds=0).reconciled == 1
    assert broker.client.sismember("_kombu.binding.ingest", "ingest\x06\x16\x06\x16ingest")
    assert _keys(broker, "ingest") == [("teleai.ingest", str(file_id))]


def test_expired_leases_are_sent_again_even_if_unacknowledged(
    engine: Engine, owner: uuid.UUID, broker: Broker
) -> None:
    """A dead worker's message stays in ``unacked`` until the visibility timeout: not waited for."""
    file_id = _queued_file(engine, owner)
    _send(broker, file_id)
    raw = cast(bytes, broker.client.rpop("ingest"))
    broker.client.hset("unacked", "tag-2", json.dumps([json.loads(raw), "ingest", "ingest"]))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audio_files SET lease_expires_at = now() - interval '1 s' WHERE id = :i"),
            {"i": file_id},
        )
    result = sweep(_uow(engine), broker, settled_seconds=SETTLE)
    assert (result.released, result.reconciled) == (1, 0)
    assert _keys(broker, "ingest") == [("teleai.ingest", str(file_id))]


def test_message_key_ignores_what_is_not_a_task_message() -> None:
    assert message_key(b"not json") is None
    assert message_key(json.dumps({"headers": {}, "body": "e30="})) is None
    assert message_key(json.dumps({"headers": {"task": "t"}, "body": "[[], {}, {}]"})) is None
    assert message_key(json.dumps({"headers": {"task": "t"}, "body": '[["a"], {}, {}]'})) == (
        "t",
        "a",
    )


def test_files_listed_in_a_batch_message_count_as_present_until_it_is_lost(
    engine: Engine, owner: uuid.UUID, broker: Broker
) -> None:
    """A ``teleai.ingest_batch`` message stands for the ingest message of each file it lists,
    queued or delivered-unacknowledged; once it is lost, each file is sent again on its own."""
    first, second = _queued_file(engine, owner), _queued_file(engine, owner)
    broker.send([])  # declares the queues' bindings, as before any send
    with app.connection_for_write(broker.url) as connection:
        app.send_task(
            "teleai.ingest_batch",
            args=([str(first), str(second)],),
            producer=app.amqp.Producer(connection),
        )
    assert [message_keys(raw) for raw in broker.client.lrange("ingest", 0, -1)] == [
        [("teleai.ingest", str(first)), ("teleai.ingest", str(second))]
    ]
    assert _keys(broker, "ingest") == [None]  # not a one-file message
    assert sweep(_uow(engine), broker, settled_seconds=SETTLE).reconciled == 0

    raw = cast(bytes, broker.client.rpop("ingest"))  # a worker took it (task_acks_late)
    broker.client.hset("unacked", "tag-3", json.dumps([json.loads(raw), "ingest", "ingest"]))
    assert sweep(_uow(engine), broker, settled_seconds=SETTLE).reconciled == 0

    broker.client.delete("unacked")  # the batch is lost (Redis emptied, say)
    assert sweep(_uow(engine), broker, settled_seconds=0).reconciled == 2
    assert sorted(k for k in _keys(broker, "ingest") if k) == sorted(
        [("teleai.ingest", str(first)), ("teleai.ingest", str(second))]
    )


def test_message_keys_of_a_batch_without_a_list_are_none() -> None:
    body = '[["not-a-list"], {}, {}]'
    assert (
        message_keys(json.dumps({"headers": {"task": "teleai.ingest_batch"}, "body": body})) == []
    )
    assert message_keys(json.dumps({"headers": {"task": "t"}, "body": '[["a"], {}, {}]'})) == [
        ("t", "a")
    ]
