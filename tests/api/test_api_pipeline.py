"""Upload to completed through the HTTP API with a real worker: live events, results, exports.

One server and one worker for the module; one short generated sentence, transcribed once (and
once more for the re-transcription test). The events stream is read as a client would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.wer import word_error_rate
from tests.api.conftest import Served
from tests.speech import speech_file

SENTENCE = "The invoice for the blue printer was paid on Monday and the customer is happy."
DEADLINE = 300.0


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a text/event-stream response, as they arrive."""
    event, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif not line and data:
            yield event, json.loads(data)
            event, data = "message", ""


@pytest.fixture(scope="module")
def analyst(served_pipeline: Served) -> str:
    return served_pipeline.login(served_pipeline.user("analyst"))


@pytest.fixture(scope="module")
def completed(
    served_pipeline: Served, analyst: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One upload followed live to its end: the upload answer and every event seen."""
    audio = speech_file(SENTENCE, "mp3", tmp_path_factory.mktemp("speech"), stem="invoice")
    with served_pipeline.client(analyst) as client:
        with audio.open("rb") as handle:
            created = client.post(
                "/api/v1/files",
                files={"file": ("invoice call.mp3", handle, "audio/mpeg")},
                data={"options": json.dumps({"language": "en"})},
            )
        assert created.status_code == 201, created.text
        file_id = created.json()["id"]
        events: list[tuple[str, dict[str, Any]]] = []
        with client.stream(
            "GET", f"/api/v1/files/{file_id}/events", timeout=httpx.Timeout(DEADLINE)
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for event in sse_events(stream):
                events.append(event)
                if event[0] == "end":
                    break
    return {"id": file_id, "created": created.json(), "events": events, "audio": audio}


def test_upload_is_followed_live_to_completed(
    served_pipeline: Served, completed: dict[str, Any]
) -> None:
    events = completed["events"]
    statuses = [data["status"] for name, data in events if name == "status"]
    assert events[-1] == ("end", {"status": "completed"}), (events, served_pipeline.logs()[-2000:])
    assert statuses[0] in {"pending", "processing"} and statuses[-1] == "completed"
    assert len(statuses) == len(
        {(d["status"], d["stage"], d["updated_at"]) for n, d in events if n == "status"}
    )


def test_results_of_a_completed_file(
    served_pipeline: Served, analyst: str, completed: dict[str, Any]
) -> None:
    file_id = completed["id"]
    with served_pipeline.client(analyst) as client:
        detail = client.get(f"/api/v1/files/{file_id}").json()
        assert detail["status"] == "completed" and detail["error"] is None
        assert detail["options"] == {"language": "en"}
        assert detail["duration_seconds"] > 1
        assert {"ingest", "transcribe"} <= set(detail["stage_seconds"])
        transcript = client.get(f"/api/v1/files/{file_id}/transcript").json()
        assert word_error_rate(SENTENCE, transcript["text"]) <= 0.3, transcript["text"]
        assert transcript["version"] == 1 and transcript["segments"]
        versions = client.get(f"/api/v1/files/{file_id}/versions").json()["items"]
        assert [v["version"] for v in versions] == [1]
        analyses = client.get(f"/api/v1/files/{file_id}/analyses").json()
        assert "sentiment" in {a["analysis_type"] for a in analyses["items"]}
        txt = client.get(f"/api/v1/files/{file_id}/export/txt")
        assert txt.text.strip() == transcript["text"].strip()
        assert txt.headers["content-disposition"] == f'attachment; filename="{file_id}.txt"'
        srt = client.get(f"/api/v1/files/{file_id}/export/srt")
        assert srt.text.startswith("1\n") and " --> " in srt.text
        vtt = client.get(f"/api/v1/files/{file_id}/export/vtt")
        assert vtt.text.startswith("WEBVTT") and vtt.headers["content-type"].startswith("text/vtt")
        exported = client.get(f"/api/v1/files/{file_id}/export/json").json()
        assert exported["transcription"]["text"] == transcript["text"]
        assert client.get(f"/api/v1/files/{file_id}/export/docx").status_code == 400
        hits = client.get("/api/v1/search", params={"q": "printer invoice"}).json()["items"]
        assert [h["file_id"] for h in hits] == [file_id]
        assert "**" in hits[0]["snippet"]


def test_a_viewer_neither_finds_nor_reads_it(
    served_pipeline: Served, completed: dict[str, Any]
) -> None:
    viewer = served_pipeline.login(served_pipeline.user("viewer"))
    with served_pipeline.client(viewer) as client:
        assert client.get("/api/v1/search", params={"q": "printer"}).json()["items"] == []
        assert client.get(f"/api/v1/files/{completed['id']}/transcript").status_code == 404


def test_usage_and_queue_stats(
    served_pipeline: Served, analyst: str, completed: dict[str, Any]
) -> None:
    admin = served_pipeline.login(served_pipeline.user("admin"))
    with served_pipeline.client(admin) as client:
        usage = client.get("/api/v1/admin/usage").json()["items"]
        stats = client.get("/api/v1/stats")
    [row] = [u for u in usage if u["files_submitted"] >= 1 and u["files_processed"] >= 1]
    assert row["audio_seconds_submitted"] > 1 and row["audio_seconds_processed"] > 1
    assert stats.status_code == 200, stats.text
    assert {"processing_queue", "queue_depth", "files_by_status"} <= set(stats.json())
    assert stats.json()["files_by_status"]["completed"] >= 1
    with served_pipeline.client(analyst) as client:
        assert client.get("/api/v1/admin/usage").status_code == 403


def test_retranscription_adds_a_version_seen_on_the_queue_stream(
    served_pipeline: Served, analyst: str, completed: dict[str, Any]
) -> None:
    file_id = completed["id"]
    with served_pipeline.client(analyst) as client:
        queued = client.post(f"/api/v1/files/{file_id}/retranscribe", json={})
        assert queued.status_code == 202, queued.text
        seen: list[str] = []
        with client.stream("GET", "/api/v1/events", timeout=httpx.Timeout(DEADLINE)) as stream:
            for name, data in sse_events(stream):
                if name == "status" and data["id"] == file_id:
                    seen.append(data["status"])
                    if data["status"] == "completed" and len(seen) > 1:
                        break
        deadline = time.monotonic() + 60
        versions: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            versions = client.get(f"/api/v1/files/{file_id}/versions").json()["items"]
            if len(versions) == 2:
                break
            time.sleep(0.5)
        assert [v["version"] for v in versions] == [1, 2], (seen, versions)
        assert (
            client.get(f"/api/v1/files/{file_id}/transcript", params={"version": 1}).json()[
                "version"
            ]
            == 1
        )
        assert client.get(f"/api/v1/files/{file_id}/transcript").json()["version"] == 2
        assert (
            client.get(f"/api/v1/files/{file_id}/transcript", params={"version": 9}).status_code
            == 404
        )
    assert "processing" in seen or "pending" in seen, seen


def test_raw_body_upload_of_the_same_bytes_is_a_duplicate(
    served_pipeline: Served, analyst: str, completed: dict[str, Any]
) -> None:
    audio: Path = completed["audio"]
    with served_pipeline.client(analyst) as client:
        again = client.post(
            "/api/v1/files",
            content=audio.read_bytes(),
            headers={"Content-Type": "audio/mpeg", "X-File-Name": "same.mp3"},
        )
    assert again.status_code == 200, again.text
    answer = again.json()
    assert (answer["id"], answer["outcome"]) == (completed["id"], "duplicate")
    assert answer["status_url"] == f"/api/v1/files/{completed['id']}"
