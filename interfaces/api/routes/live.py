"""Native API: live status as Server-Sent Events, per file and for the caller's queue.

The streams wake on PostgreSQL notifications (:mod:`interfaces.api.notify`: migration 009's
trigger NOTIFYs a file's id when its status, stage or deletion changes, at commit), re-read the
row as the caller, through the same policies as every other read, and send an event only when
something changed. Workers write nothing extra: the trigger sits on the row they update anyway.
Without a notification a stream still re-reads every ``TELEAI_API_SSE_POLL_SECONDS`` (the
fallback: a lost listener connection, a change the trigger does not signal). A stream re-checks
the credential on every read: a revoked token or key ends it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from db.models import AudioFile, FileStatus
from interfaces.api import views
from interfaces.api.deps import Caller, Reader, app_engine, resolve, unit
from interfaces.api.errors import not_found
from interfaces.api.notify import StatusListener, get_listener, wait_for
from interfaces.api.settings import get_api_settings

router = APIRouter(prefix="/api/v1", tags=["live"])

TERMINAL = frozenset({FileStatus.COMPLETED.value, FileStatus.FAILED.value})
QUEUE_BATCH = 200


def _listener() -> StatusListener:
    return get_listener(app_engine().url.render_as_string(hide_password=False))


def _state(row: AudioFile | None) -> dict[str, Any] | None:
    if row is None or row.deleted_at is not None:
        return None
    return views.file_summary(row) | {
        "error": row.error_message,
        "stage_seconds": row.metadata_.get("stage_seconds", {}),
    }


def _file_state(who: Caller, file_id: uuid.UUID) -> dict[str, Any] | None:
    """A later poll: the request's transaction is over, so the credential is checked again in
    a transaction of its own (a revoked one ends the stream)."""
    if resolve(who.credential) is None:
        return None
    with unit(who) as session:
        return _state(session.get(AudioFile, file_id))


@router.get("/files/{file_id}/events", summary="Live status of one file (text/event-stream)")
async def file_events(who: Reader, file_id: uuid.UUID, request: Request) -> EventSourceResponse:
    # The first look is in the request's own transaction (which may hold the credential's
    # row lock from touching it: a second transaction must not wait on it).
    first = await run_in_threadpool(lambda: _state(who.session.get(AudioFile, file_id)))
    if first is None:
        raise not_found()
    poll = get_api_settings().sse_poll_seconds

    async def stream() -> AsyncIterator[dict[str, str]]:
        state: dict[str, Any] | None = first
        sent: tuple[Any, ...] | None = None
        with _listener().waiting(file_id) as waiter:
            if state is not None and state["status"] not in TERMINAL:
                # A change between the first read and the waiter's registration is not missed.
                state = await run_in_threadpool(_file_state, who, file_id)
            while state is not None:
                key = (state["status"], state["stage"], state["updated_at"])
                if key != sent:
                    sent = key
                    yield {"event": "status", "id": state["updated_at"], "data": json.dumps(state)}
                if state["status"] in TERMINAL:
                    yield {"event": "end", "data": json.dumps({"status": state["status"]})}
                    return
                if await request.is_disconnected():
                    return
                await wait_for(waiter, poll)
                state = await run_in_threadpool(_file_state, who, file_id)
        yield {"event": "end", "data": json.dumps({"status": "gone"})}

    return EventSourceResponse(stream(), ping=15)


def _queue_changes(who: Caller, since: dt.datetime) -> list[dict[str, Any]] | None:
    if resolve(who.credential) is None:
        return None
    with unit(who) as session:
        rows = session.scalars(
            select(AudioFile)
            .where(AudioFile.user_id == who.user_id, AudioFile.updated_at > since)
            .order_by(AudioFile.updated_at, AudioFile.id)
            .limit(QUEUE_BATCH)
        )
        return [views.file_summary(r) | {"deleted": r.deleted_at is not None} for r in rows]


@router.get("/events", summary="Live status of the caller's files (text/event-stream)")
async def queue_events(who: Reader, request: Request) -> EventSourceResponse:
    poll = get_api_settings().sse_poll_seconds
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)

    async def stream() -> AsyncIterator[dict[str, str]]:
        nonlocal since
        # Woken by a change of any file (the payload does not say whose): one indexed read of
        # the caller's own changed rows tells.
        with _listener().waiting(None) as waiter:
            while not await request.is_disconnected():
                changes = await run_in_threadpool(_queue_changes, who, since)
                if changes is None:
                    reason = {"reason": "credential no longer live"}
                    yield {"event": "end", "data": json.dumps(reason)}
                    return
                for change in changes:
                    yield {
                        "event": "status",
                        "id": change["updated_at"],
                        "data": json.dumps(change),
                    }
                if changes:
                    since = dt.datetime.fromisoformat(changes[-1]["updated_at"])
                if len(changes) < QUEUE_BATCH:
                    await wait_for(waiter, poll)

    return EventSourceResponse(stream(), ping=15)
