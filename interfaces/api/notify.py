"""File status changes from PostgreSQL (LISTEN/NOTIFY) for the live-status streams.

Migration 009's trigger sends ``NOTIFY teleai_file_status, '<file id>'`` when a file is inserted
or its status, stage or deleted_at changes; PostgreSQL delivers it when the writing transaction
commits, so a stream that wakes on it reads the committed row. One connection per API process
listens (a daemon thread: psycopg's blocking ``notifies()``), and wakes the streams waiting for
that file id, or for any file (the queue stream), on their own event loops. The payload is an id
only: a woken stream re-reads the row as its caller, under the policies, exactly as before.

Nothing depends on a notification arriving: streams wait at most
``TELEAI_API_SSE_POLL_SECONDS`` and then read anyway (a dropped listener connection, a
database restart), and the listener reconnects on its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import psycopg
import structlog

from db.engine import libpq_url

log = structlog.get_logger(__name__)

CHANNEL: Final = "teleai_file_status"
RECONNECT_SECONDS: Final = 2.0
ANY: Final = None  # waiters on every file (the queue stream)


@dataclass(eq=False)
class Waiter:
    """One waiting stream: woken on its own loop, from the listener thread."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


class StatusListener:
    """LISTEN on :data:`CHANNEL` in a daemon thread; dispatch each file id to its waiters."""

    def __init__(self, database_url: str) -> None:
        self._url = libpq_url(database_url)
        self._lock = threading.Lock()
        self._waiters: dict[uuid.UUID | None, set[Waiter]] = {}
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="teleai-status-listener", daemon=True
                )
                self._thread.start()

    @contextmanager
    def waiting(self, file_id: uuid.UUID | None) -> Iterator[Waiter]:
        """A waiter for ``file_id`` (None: any file) while the block runs."""
        self.start()
        waiter = Waiter(asyncio.get_running_loop())
        with self._lock:
            self._waiters.setdefault(file_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                waiters = self._waiters.get(file_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[file_id]

    def dispatch(self, payload: str) -> None:
        try:
            file_id: uuid.UUID | None = uuid.UUID(payload)
        except ValueError:
            return
        with self._lock:
            woken = [*self._waiters.get(file_id, ()), *self._waiters.get(ANY, ())]
        for waiter in woken:
            waiter.wake()

    def _run(self) -> None:
        while True:
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    # The timeout only lets the loop notice a closed connection now and then.
                    while True:
                        for note in conn.notifies(timeout=30.0):
                            self.dispatch(note.payload)
                        conn.execute("SELECT 1")
            except psycopg.Error as error:
                self.connected.clear()
                log.warning("status_listener_reconnecting", error=type(error).__name__)
                time.sleep(RECONNECT_SECONDS)


_listener: StatusListener | None = None
_listener_lock = threading.Lock()


def get_listener(database_url: str) -> StatusListener:
    """The process's listener (one connection however many streams are open)."""
    global _listener
    with _listener_lock:
        if _listener is None:
            _listener = StatusListener(database_url)
        return _listener


async def wait_for(waiter: Waiter, seconds: float) -> bool:
    """Sleep until ``waiter`` is woken or ``seconds`` passed; True when woken."""
    try:
        await asyncio.wait_for(waiter.event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    waiter.event.clear()
    return True
