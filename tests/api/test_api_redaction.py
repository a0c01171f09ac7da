"""The native API serves the redacted form to those migration 007 keeps from the unredacted one.

Rows are written as the schema owner (a redacted job's transcription, its `pii` and `sentiment`
analyses and its redaction row, as the analyze stage writes them); the API runs as the real app
role, so what each caller gets is decided by the database.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from db.analyses import record_analysis
from db.models import User
from db.redactions import record_redaction
from tests.api.conftest import Served
from tests.db.factories import make_file, make_transcription

SAID = "My card is 4111 1111 1111 1111."
REDACTED = "My card is [CARD]."


def _redacted_file(served: Served, username: str, *, redacted: bool = True) -> str:
    with served.owner() as session:
        owner = session.get(User, served.user_ids[username])
        options = {"redact_pii": True} if redacted else {}
        audio = make_file(session, owner, f"{uuid.uuid4().hex[:6]}.wav",
                          metadata={"options": options})  # fmt: skip
        version = make_transcription(session, audio, SAID)
        for kind in ("pii", "sentiment"):
            record_analysis(session, version.id, analysis_type=kind, result={"k": kind},
                            model_name="t", parameters={}, processing_time_seconds=0.1)  # fmt: skip
        if redacted:
            record_redaction(
                session, version.id, redacted_text=REDACTED,
                segments=[{"start": 0.0, "end": 2.0, "text": REDACTED}],
                spans=[{"type": "card", "start": 0.5, "end": 2.0}],
                policy={"types": ["card"], "substitution": "type"}, audio_path=None,
            )  # fmt: skip
        return str(audio.id)


@pytest.fixture(scope="module")
def world(served: Served) -> dict[str, Any]:
    names = {role: served.user(role) for role in ("viewer", "analyst", "manager")}
    files = {
        "viewer": _redacted_file(served, names["viewer"]),
        "analyst": _redacted_file(served, names["analyst"]),
        "plain": _redacted_file(served, names["analyst"], redacted=False),
    }
    tokens = {role: served.login(name) for role, name in names.items()}
    return {"files": files, "tokens": tokens}


def _get(served: Served, token: str, path: str) -> Any:
    with served.client(token) as client:
        return client.get(path)


@pytest.mark.parametrize(
    ("role", "owner", "unredacted"),
    [
        ("viewer", "viewer", False),  # a viewer never reads unredacted data
        ("analyst", "viewer", False),  # an analyst reads others' files redacted
        ("analyst", "analyst", True),  # ... and their own in full
        ("manager", "viewer", True),
        ("manager", "analyst", True),
    ],
)
def test_each_role_gets_the_form_it_may_read(
    served: Served, world: dict[str, Any], role: str, owner: str, unredacted: bool
) -> None:
    token, file_id = world["tokens"][role], world["files"][owner]
    transcript = _get(served, token, f"/api/v1/files/{file_id}/transcript")
    assert transcript.status_code == 200, transcript.text
    body = transcript.json()
    assert body["redacted"] is (not unredacted)
    assert body["text"] == (SAID if unredacted else REDACTED)
    analyses = _get(served, token, f"/api/v1/files/{file_id}/analyses").json()
    kinds = {a["analysis_type"] for a in analyses["items"]}
    assert kinds == ({"pii", "sentiment"} if unredacted else {"sentiment"})
    exported = _get(served, token, f"/api/v1/files/{file_id}/export/txt").text
    assert exported.strip() == (SAID if unredacted else REDACTED)
    # Everyone may ask for the redacted form.
    asked = _get(served, token, f"/api/v1/files/{file_id}/transcript?redacted=true").json()
    assert asked["text"] == REDACTED and asked["redaction"]["counts"] == {"card": 1}
    srt = _get(served, token, f"/api/v1/files/{file_id}/export/srt?redacted=true").text
    assert "[CARD]" in srt and "4111" not in srt


def test_a_plain_file_has_no_redacted_form(served: Served, world: dict[str, Any]) -> None:
    token, file_id = world["tokens"]["analyst"], world["files"]["plain"]
    assert _get(served, token, f"/api/v1/files/{file_id}/transcript").json()["text"] == SAID
    response = _get(served, token, f"/api/v1/files/{file_id}/transcript?redacted=true")
    assert response.status_code == 404
    assert "no redacted form" in response.text
