"""``/queue``: the operators' dashboard, updated live over Server-Sent Events.

The numbers are those of ``teleai stats`` and ``GET /api/v1/stats`` (one function,
:func:`interfaces.cli.stats.collect_stats`: files by status, unfinished files and queued audio
seconds per stage, Celery queue depths, workers and what they run, the last hour's throughput
and stage times), plus a per-five-minute history of the last hour read as the signed-in user
(row-level security: staff roles see every file). A snapshot is shared by every open dashboard
of the process for :data:`SNAPSHOT_SECONDS`, so ten operators cost one collection, not ten.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from db.models import Stage
from interfaces.api.deps import Caller, resolve, unit
from interfaces.api.errors import ApiError
from interfaces.web.render import WebRoute, page
from interfaces.web.session import PageUser, StreamUser
from pipeline import jobs

router = APIRouter(route_class=WebRoute, include_in_schema=False)

SNAPSHOT_SECONDS: Final = 2.0
BUCKET_SECONDS: Final = 300
BUCKETS: Final = 12  # one hour
# The steps shown (metadata.stage_seconds holds finer ones too: fetch, model_load, db writes).
STEPS: Final = ("ingest", "decode", "transcribe", "diarize", "analyze")


def require_staff(who: Caller) -> None:
    if not who.is_staff:
        raise ApiError(403, "the queue dashboard is for operators (admin, manager, analyst)")


def history(session: Session) -> dict[str, Any]:
    """The last hour in five-minute buckets: files completed and failed, mean seconds per step."""
    now = time.time()
    first = (int(now) // BUCKET_SECONDS - (BUCKETS - 1)) * BUCKET_SECONDS
    times = [first + i * BUCKET_SECONDS for i in range(BUCKETS)]
    index = {t: i for i, t in enumerate(times)}
    completed = [0] * BUCKETS
    failed = [0] * BUCKETS
    steps: dict[str, list[float | None]] = {}
    found = jobs.finished_buckets(
        session, seconds=BUCKETS * BUCKET_SECONDS, bucket_seconds=BUCKET_SECONDS
    )
    for bucket in found:
        i = index.get(bucket.start)
        if i is None:  # the oldest bucket's start is just before the window's
            continue
        completed[i] = bucket.completed
        failed[i] = bucket.failed
        for step, seconds in bucket.step_means.items():
            steps.setdefault(step, [None] * BUCKETS)[i] = round(seconds, 3)
    ordered = {s: steps[s] for s in STEPS if s in steps}
    return {"times": times, "completed": completed, "failed": failed, "steps": ordered}


class _Shared:
    """The last ``collect_stats`` result, refreshed at most every SNAPSHOT_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._value: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        from interfaces.cli.stats import collect_stats

        with self._lock:
            if time.monotonic() - self._at >= SNAPSHOT_SECONDS:
                self._value = collect_stats(inspect_timeout=1.0)
                self._at = time.monotonic()
            return self._value


_shared = _Shared()


def _per_stage(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Queue depth per pipeline stage: unfinished files (queued, running, stalled), audio s."""
    rows = []
    for stage in Stage:
        states = {
            state: int(count)
            for label, count in stats.get("unfinished_by_stage", {}).items()
            for name, _, state in [label.partition(",")]
            if name == stage.value
        }
        rows.append(
            {
                "stage": stage.value,
                "queued": states.get("queued", 0),
                "running": states.get("running", 0),
                "stalled": states.get("stalled", 0),
                "audio_seconds": round(float(stats.get("queued_audio_seconds", {})
                                             .get(stage.value, 0.0)), 1),
            }
        )  # fmt: skip
    return rows


def snapshot(who: Caller) -> dict[str, Any]:
    stats = _shared.get()
    averages = stats.get("avg_stage_seconds_last_hour", {})
    with unit(who) as session:
        hour = history(session)
    return {
        "at": time.time(),
        "files_by_status": {k: int(v) for k, v in stats.get("files_by_status", {}).items()},
        "stages": _per_stage(stats),
        "queues": {k: int(v) for k, v in stats.get("queue_depth", {}).items()},
        "unacked": int(stats.get("unacked_messages", 0)),
        "workers": stats.get("workers", []),
        "finished_last_hour": {k: int(v) for k, v in stats.get("finished_last_hour", {}).items()},
        "avg_stage_seconds": {
            step: round(float(averages[step]), 3) for step in STEPS if step in averages
        },
        "sources_up": stats.get("sources_up", {}),
        "history": hour,
    }


@router.get("/queue")
async def queue_page(request: Request, who: PageUser) -> HTMLResponse:
    require_staff(who)
    first = await run_in_threadpool(snapshot, who)
    return page(request, "queue.html", {"snap": first}, who=who)


@router.get("/queue/events")
async def queue_stream(request: Request, who: StreamUser) -> EventSourceResponse:
    """A snapshot every SNAPSHOT_SECONDS; the credential is checked again on each one."""
    require_staff(who)

    async def stream() -> AsyncIterator[dict[str, str]]:
        while not await request.is_disconnected():
            if await run_in_threadpool(resolve, who.credential) is None:
                yield {"event": "end", "data": json.dumps({"reason": "signed out"})}
                return
            value = await run_in_threadpool(snapshot, who)
            yield {"event": "snapshot", "data": json.dumps(value)}
            await asyncio.sleep(SNAPSHOT_SECONDS)

    return EventSourceResponse(stream(), ping=15)
