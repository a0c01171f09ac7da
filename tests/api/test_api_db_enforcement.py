"""Migration 009 through a real API server: uploads recorded as the caller, live status woken by
PostgreSQL notifications, queue statistics read under the caller's policies.

The server here re-reads a stream only every 30 s without a notification
(``TELEAI_API_SSE_POLL_SECONDS``), so an event that arrives within a few seconds of a change
can only have come by LISTEN/NOTIFY. No worker runs: rows change as the owner changes them.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.api.conftest import Served, serving
from tests.conftest import PgAdmin

SLOW_POLL = 30.0
PROMPT = 8.0  # far below SLOW_POLL, generous for a loaded 2-core machine


@pytest.fixture(scope="module")
def api(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    root: Path = tmp_path_factory.mktemp("api-009")
    extra = {"TELEAI_API_SSE_POLL_SECONDS": str(SLOW_POLL)}
    with serving(pg_admin, template_database, redis_url, root, extra_env=extra) as served:
        yield served


def upload(client: httpx.Client) -> httpx.Response:
    return client.post(
        "/api/v1/files",
        content=b"RIFF" + secrets.token_bytes(2048),
        params={"file_name": "call.wav"},
        headers={"Content-Type": "application/octet-stream"},
    )


def test_an_upload_is_recorded_by_the_app_role_as_the_caller(api: Served) -> None:
    name = api.user("analyst")
    with api.client(api.key(name)) as client:
        created = upload(client)
    assert created.status_code == 201, created.text
    file_id = uuid.UUID(created.json()["id"])
    with api.owner() as session:
        db_role, app_user = session.execute(
            text("SELECT db_role, app_user_id FROM audit_log "
                 "WHERE table_name = 'audio_files' AND operation = 'INSERT' AND row_id = :id"),
            {"id": file_id},
        ).one()  # fmt: skip
        member = session.execute(
            text("SELECT pg_has_role(:r, 'teleai_app', 'USAGE'), "
                 "pg_has_role(:r, 'teleai_intake', 'USAGE')"),
            {"r": db_role},
        ).one()  # fmt: skip
    # Written by the API's teleai_app login (not intake, not the owner), acting as the caller.
    assert tuple(member) == (True, False), db_role
    assert app_user == api.user_ids[name]


def test_a_read_key_cannot_upload(api: Served) -> None:
    with api.client(api.key(api.user("admin"), scope="read")) as client:
        refused = upload(client)
    assert refused.status_code == 403, refused.text


def _events(api: Served, credential: str, file_id: str, into: queue.Queue[Any]) -> None:
    """Each SSE event of the file's stream, as (event, data, arrival time), until ``end``."""
    try:
        with (
            api.client(credential) as client,
            client.stream("GET", f"/api/v1/files/{file_id}/events", timeout=120) as stream,
        ):
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    into.put((event, json.loads(line.removeprefix("data:")), time.monotonic()))
                    if event == "end":
                        return
    except httpx.HTTPError as error:  # the test has failed already; the server is going away
        into.put(("error", {"error": repr(error)}, time.monotonic()))


def test_live_status_is_woken_by_notify_not_by_the_slow_poll(api: Served) -> None:
    name = api.user("analyst")
    key = api.key(name)
    with api.client(key) as client:
        file_id = upload(client).json()["id"]
    received: queue.Queue[Any] = queue.Queue()
    reader = threading.Thread(target=_events, args=(api, key, file_id, received), daemon=True)
    reader.start()
    first = received.get(timeout=PROMPT)
    assert first[0] == "status" and first[1]["status"] == "pending"
    time.sleep(0.5)  # the stream is waiting now
    for status, stage in (("processing", "transcribe"), ("completed", "analyze")):
        changed_at = time.monotonic()
        with api.owner() as session:
            session.execute(
                text("UPDATE audio_files SET status = :s, stage = :g, "
                     "processing_started_at = coalesce(processing_started_at, now()), "
                     "processing_completed_at = CASE WHEN :done THEN now() END "
                     "WHERE id = :id"),
                {"s": status, "g": stage, "done": status == "completed", "id": file_id},
            )  # fmt: skip
        event, data, at = received.get(timeout=PROMPT)
        assert (event, data["status"], data["stage"]) == ("status", status, stage)
        assert at - changed_at < PROMPT < SLOW_POLL
    assert received.get(timeout=PROMPT)[0:2] == ("end", {"status": "completed"})
    reader.join(timeout=5)


def test_queue_stats_are_read_under_the_callers_policies(api: Served) -> None:
    manager, admin = api.user("manager"), api.user("admin")
    with api.client(api.key(manager)) as client:
        file_id = upload(client).json()["id"]
        before = client.get("/api/v1/stats")
        assert before.status_code == 200, before.text
        assert client.delete(f"/api/v1/files/{file_id}").status_code == 204
        after = client.get("/api/v1/stats").json()
    with api.client(api.key(admin)) as client:
        for_admin = client.get("/api/v1/stats").json()
    pending = [before.json(), after, for_admin]
    counts = [s["files_by_status"].get("pending", 0) for s in pending]
    # The deleted file no longer counts for the manager; an admin still sees it.
    assert counts[1] == counts[0] - 1 and counts[2] == counts[0], counts
    with api.client(api.key(api.user("viewer"))) as client:
        assert client.get("/api/v1/stats").status_code == 403
