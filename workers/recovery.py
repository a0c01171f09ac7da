"""The recovery sweep: send again every message that PostgreSQL says should exist but Redis lost.

Two kinds of rows lost their message:

- a row whose lease expired: its worker died (``kill -9``, OOM, host gone). The lease is
  cleared and the message sent again (``pipeline.jobs.release_expired``).
- a queued row (unfinished, no lease) whose message is in no Redis queue and not
  delivered-unacknowledged: Redis restarted empty, or the send after a commit failed (broker
  down). It is sent again; a row whose message still waits behind a backlog is left alone,
  so a long queue does not grow with copies.

Celery's Redis transport keeps each queue as a list of JSON envelopes (priority steps as extra
lists ``<queue>\\x06\\x16<n>``) and every delivered, not yet acknowledged message in the
``unacked`` hash (``task_acks_late``: until the task returns). The envelope's ``headers.task``
names the task; its base64 ``body`` is ``[args, kwargs, embed]``, and ``args[0]`` is the id the
row is compared with (``pipeline.jobs.Queued.message_arg``).

Reading order closes the races: the database first (rows unchanged for
``TELEAI_QUEUED_GRACE_SECONDS``, so a message on its way is not counted as lost), then the
queues, then ``unacked`` (a message a worker takes during the scan leaves a list before it
lands in the hash, so it is seen in one of them), and finally ``jobs.mark_resent`` re-checks
each row in one conditional UPDATE, so a row a worker claimed meanwhile is not sent again.

The sweep runs inside every worker (``workers.periodic``; one elected worker at a time), and a
Redis restart (its ``run_id`` changed) triggers one at once, without the settle time: every
row queued then lost its message.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import structlog
from celery import Celery
from kombu.transport.redis import PRIORITY_STEPS, Channel

from db.engine import get_engine, unit_of_work
from db.models import Stage
from pipeline import jobs
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

STAGE_TASKS = {
    Stage.INGEST: "teleai.ingest",
    Stage.TRANSCRIBE: "teleai.transcribe",
    Stage.ANALYZE: "teleai.analyze",
}
SCAN_CHUNK = 500
"""Messages read per LRANGE/HSCAN call, so a long queue is read in bounded pieces."""

BATCH_TASKS = {"teleai.ingest_batch": STAGE_TASKS[Stage.INGEST]}
"""Tasks whose first argument is a list of ids, each standing for one message of the task
named here (``workers.tasks.ingest_batch``: the ingest of every file it lists)."""

MessageKey = tuple[str, str]
"""(task name, first argument) of one message."""


def _task_args(raw: bytes | str) -> tuple[str, list[Any]] | None:
    """The task name and positional arguments of one kombu Redis envelope (None if it is not
    a Celery task message, or has no argument)."""
    try:
        envelope = json.loads(raw)
        task = envelope["headers"]["task"]
        body: Any = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        return None
    if not isinstance(task, str) or not isinstance(args, list) or not args:
        return None
    return task, args


def message_key(raw: bytes | str) -> MessageKey | None:
    """The (task, first argument) of one kombu Redis envelope; None if it is not a Celery task
    message, or is a batch message (see :func:`message_keys`)."""
    found = _task_args(raw)
    if found is None or found[0] in BATCH_TASKS:
        return None
    return found[0], str(found[1][0])


def message_keys(raw: bytes | str) -> list[MessageKey]:
    """The (task, argument) pairs one kombu Redis envelope stands for: one for a plain task
    message; one per listed id for a batch message, keyed as the single-file task's message,
    so a file in a queued or unacknowledged batch counts as having its message; none for
    what is not a Celery task message."""
    found = _task_args(raw)
    if found is None:
        return []
    task, args = found
    if task not in BATCH_TASKS:
        return [(task, str(args[0]))]
    ids = args[0] if isinstance(args[0], list) else []
    return [(BATCH_TASKS[task], str(file_id)) for file_id in ids]


@dataclass
class Broker:
    """What the sweep needs from Redis: its identity, the messages it holds, and sending."""

    app: Celery
    url: str
    _client: redis.Redis | None = field(default=None, repr=False)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run_id(self) -> str:
        """Changes whenever the Redis server restarts (``INFO server``)."""
        return str(self.client.info("server")["run_id"])

    def _keys(self) -> tuple[list[str], str]:
        options = self.app.conf.broker_transport_options or {}
        prefix = str(options.get("global_keyprefix", ""))
        lists = [
            prefix + (name if step == 0 else f"{name}{Channel.sep}{step}")
            for name in self.app.amqp.queues
            for step in options.get("priority_steps", PRIORITY_STEPS)
        ]
        return lists, prefix + str(options.get("unacked_key", "unacked"))

    def messages(self) -> set[MessageKey]:
        """Every task message queued or delivered-unacknowledged right now (queues first)."""
        lists, unacked = self._keys()
        found: set[MessageKey] = set()
        for key in lists:
            for start in range(0, 1 << 62, SCAN_CHUNK):
                chunk = cast(list[bytes], self.client.lrange(key, start, start + SCAN_CHUNK - 1))
                for raw in chunk:
                    found.update(message_keys(raw))
                if len(chunk) < SCAN_CHUNK:
                    break
        for _tag, value in self.client.hscan_iter(unacked, count=SCAN_CHUNK):
            try:
                envelope = json.loads(value)[0]  # [message, exchange, routing_key]
            except (ValueError, IndexError, TypeError):
                continue
            found.update(message_keys(json.dumps(envelope)))
        return found

    def send(self, rows: Iterable[jobs.Queued]) -> int:
        """Send each row's stage message; returns how many went out.

        The queues' bindings are declared first on purpose: a Redis that restarted empty has
        lost them too, and kombu silently drops a message published to an exchange with no
        bound queue until some consumer declares its queue again.
        """
        sent = 0
        with self.app.connection_for_write(self.url) as connection:
            channel = connection.default_channel
            for queue in self.app.amqp.queues.values():
                queue.bind(channel).declare()
            producer = self.app.amqp.Producer(connection)
            for row in rows:
                if row.message_arg is None:
                    continue
                self.app.send_task(
                    STAGE_TASKS[row.stage], args=(str(row.message_arg),), producer=producer
                )
                sent += 1
        return sent


@dataclass(frozen=True)
class SweepResult:
    released: int  # expired leases, their message sent again
    waiting: int  # queued rows old enough to check
    reconciled: int  # queued rows whose message was lost, sent again


UnitOfWork = Callable[[], Any]


def sweep(
    uow: UnitOfWork, broker: Broker, *, settled_seconds: float, reason: str = "scheduled"
) -> SweepResult:
    """One recovery sweep (see the module docstring). Raises if PostgreSQL or Redis is down;
    the caller tries again at its next tick."""
    started = time.monotonic()
    with uow() as session:
        expired = jobs.release_expired(session)
    if expired:
        broker.send(expired)
        log.warning("reaped_orphans", count=len(expired), stages=_by_stage(expired), reason=reason)
    with uow() as session:
        waiting = jobs.waiting(session, settled_seconds=settled_seconds)
    lost: list[jobs.Queued] = []
    if waiting:
        present = broker.messages()
        candidates = [
            row
            for row in waiting
            if row.message_arg is not None
            and (STAGE_TASKS[row.stage], str(row.message_arg)) not in present
        ]
        if candidates:
            with uow() as session:
                lost = jobs.mark_resent(session, candidates, settled_seconds=settled_seconds)
            broker.send(lost)
    if lost or reason != "scheduled":
        log.warning(
            "reconciled",
            count=len(lost),
            waiting=len(waiting),
            stages=_by_stage(lost),
            reason=reason,
            seconds=round(time.monotonic() - started, 3),
        )
    return SweepResult(len(expired), len(waiting), len(lost))


def _by_stage(rows: list[jobs.Queued]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.stage.value] = counts.get(row.stage.value, 0) + 1
    return counts


class Recovery:
    """The recovery job as ``workers.periodic`` runs it: called every tick on the leader.

    Cheap when nothing is due (one ``INFO server``): it sweeps every
    ``TELEAI_REAPER_INTERVAL_SECONDS``, and at once, without the settle time, when the Redis
    ``run_id`` changed (Redis restarted: every queued message is gone). A sweep that failed
    (a service down) is tried again at the next tick.
    """

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.settings = settings
        self.broker = Broker(app, str(app.conf.broker_url))
        engine_url = settings.sqlalchemy_url()
        self.uow: UnitOfWork = lambda: unit_of_work(get_engine(engine_url))
        self._run_id: str | None = None
        self._restart_pending = False  # a restart was seen but its sweep has not succeeded yet
        self._next_sweep = 0.0  # due at once: a new leader sweeps when it takes over
        self._can_watch = self.broker.url.startswith(("redis://", "rediss://", "unix://"))

    def __call__(self) -> None:
        if self._restarted():
            self._restart_pending = True
        reason = "broker_restarted" if self._restart_pending else None
        now = time.monotonic()
        if reason is None and now < self._next_sweep:
            return
        settled = 0.0 if reason == "broker_restarted" else self.settings.queued_grace_seconds
        try:
            sweep(self.uow, self.broker, settled_seconds=settled, reason=reason or "scheduled")
        except Exception as error:
            log.warning("recovery_sweep_failed", error=f"{type(error).__name__}: {error}")
            self.broker.close()
            return  # tried again at the next tick (a pending restart sweep stays pending)
        interval = self.settings.reaper_interval_seconds
        if self._restart_pending:
            # One more pass once the settle time is over: a row handed over in the second
            # before the restart was noticed may have sent its message into the emptied Redis.
            interval = min(interval, self.settings.queued_grace_seconds + 1)
        self._restart_pending = False
        self._next_sweep = now + interval

    def _restarted(self) -> bool:
        """True once per Redis restart (its ``run_id`` differs from the last one seen)."""
        if not self._can_watch:
            return False
        try:
            run_id = self.broker.run_id()
        except redis.exceptions.RedisError:
            self.broker.close()
            return False
        previous, self._run_id = self._run_id, run_id
        if previous is not None and previous != run_id:
            log.warning("broker_restarted", run_id=run_id)
            return True
        return False

    def close(self) -> None:
        self.broker.close()
