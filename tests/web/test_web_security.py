"""The web app's defences against a real server: sign-in redirects, cookie flags, CSRF on every
POST, session fixation, other users' files, the audio route's Range answers, and XSS (a file
name and a transcript holding markup render as text, in a real browser).

No worker here: the files stay pending, and the one transcript the XSS test needs is written
as a stored row (its content is the attack, not model output under test).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from db.models import AudioFile
from db.redactions import record_redaction
from db.transcripts import add_transcription_version
from tests.api.conftest import Served
from tests.speech import speech_file
from tests.web.conftest import csrf_of, http_sign_in, new_context, sign_in

PAGES = ["/", "/files", f"/files/{uuid.uuid4()}", "/search?q=x", "/queue", "/admin"]
XSS_NAME = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>.ogg"
XSS_TEXT = "<script>window.__xss=3</script> hello <b>bold</b> world"


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_file("Hello there.", "ogg", tmp_path_factory.mktemp("speech"), stem="hello")


def upload(served: Served, username: str, audio: Path, name: str) -> str:
    """A file of ``username``'s, uploaded through the API."""
    with served.client(served.login(username)) as client, audio.open("rb") as handle:
        # force: the same bytes again make a new file (not the duplicate answer)
        answer = client.post(
            "/api/v1/files", files={"file": (name, handle, "audio/ogg")}, params={"force": "true"}
        )
    assert answer.status_code in (200, 201), answer.text
    file_id: str = answer.json()["id"]
    return file_id


@pytest.fixture(scope="module")
def alice(web_only: Served) -> str:
    return web_only.user("analyst", name="alice_web")


@pytest.fixture(scope="module")
def alice_file(web_only: Served, alice: str, audio: Path) -> str:
    return upload(web_only, alice, audio, "alice call.ogg")


def test_every_page_but_login_redirects_there(web_only: Served) -> None:
    with httpx.Client(base_url=web_only.base_url) as client:
        for path in PAGES:
            answer = client.get(path)
            if path == "/":
                assert answer.status_code == 303 and answer.headers["location"] == "/files"
                continue
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"].startswith("/login?next=%2F"), path
        login = client.get("/login")
        assert login.status_code == 200
        assert 'name="username"' in login.text and 'name="password"' in login.text
        assert "default-src 'self'" in login.headers["content-security-policy"]
        assert login.headers["x-frame-options"] == "DENY"
        # Scripts and media get 401, never a login page.
        assert client.get(f"/files/{uuid.uuid4()}/audio").status_code == 401
        assert client.get("/files/events").status_code == 401


def test_the_session_cookie_is_httponly_samesite_and_secure_over_tls(
    web_only: Served, alice: str
) -> None:
    with http_sign_in(web_only, alice) as client:
        cookie = client.cookies.get("teleai_session")
        assert cookie
    plain = _login_response(web_only, alice, {})
    flags = plain.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "secure" not in flags
    # Behind a trusted TLS proxy (this server trusts X-Forwarded-*), the cookie is Secure.
    tls = _login_response(web_only, alice, {"X-Forwarded-Proto": "https"})
    assert "; secure" in tls.headers["set-cookie"].lower()


def _login_response(served: Served, username: str, headers: dict[str, str]) -> httpx.Response:
    """The login's answer; the login-form cookie is sent by hand (over plain HTTP a client
    rightly keeps a Secure cookie to itself)."""
    with httpx.Client(base_url=served.base_url, headers=headers) as client:
        form = client.get("/login")
        answer = client.post(
            "/login",
            data={"username": username, "password": served.passwords[username],
                  "csrf_token": csrf_of(form.text)},
            headers={"Cookie": f"teleai_login_csrf={form.cookies['teleai_login_csrf']}"},
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        set_cookies = answer.headers.get_list("set-cookie")
        session_cookie = next(v for v in set_cookies if v.startswith("teleai_session="))
        return httpx.Response(303, headers={"set-cookie": session_cookie})


def test_the_login_form_needs_its_own_csrf_token(web_only: Served, alice: str) -> None:
    data = {"username": alice, "password": web_only.passwords[alice]}
    with httpx.Client(base_url=web_only.base_url) as client:
        # No token and no cookie: refused before the password is looked at.
        assert client.post("/login", data=data).status_code == 403
        form = client.get("/login")
        wrong = client.post("/login", data={**data, "csrf_token": "guessed"})
        assert wrong.status_code == 403
        assert "teleai_session" not in wrong.cookies
        right = client.post("/login", data={**data, "csrf_token": csrf_of(form.text)})
        assert right.status_code == 303


def test_every_signed_in_post_needs_the_session_csrf_token(
    web_only: Served, alice: str, alice_file: str
) -> None:
    with http_sign_in(web_only, alice) as client:
        token = csrf_of(client.get("/files").text)
        with http_sign_in(web_only, alice) as second:
            other = csrf_of(second.get("/files").text)
        assert other != token  # per session
        posts = [
            ("/logout", {}),
            (f"/files/{alice_file}/retranscribe", {"engine": ""}),
            ("/files/upload", {}),
        ]
        for path, data in posts:
            assert client.post(path, data=data).status_code == 403, path
            assert client.post(path, data={**data, "csrf_token": other}).status_code == 403, path
        # The right token from another site's page is refused too (Origin).
        evil = client.post(
            "/logout", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403
        assert client.get("/files").status_code == 200  # still signed in after all of that
        # A script's upload sends the token as a header; without it nothing is stored.
        refused = client.post(
            "/files/upload",
            files={"file": ("x.ogg", b"OggS", "audio/ogg")},
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 403 and "error" in refused.json()
        out = client.post("/logout", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert client.get("/files").status_code == 303  # the session is gone


def test_signing_in_never_keeps_a_planted_session(web_only: Served, alice: str) -> None:
    mallory = web_only.user("analyst")
    planted = web_only.login(mallory)  # a live session the attacker knows
    for value in ("planted-by-attacker-0123456789", planted):
        with httpx.Client(base_url=web_only.base_url) as client:
            client.cookies.set("teleai_session", value)
            answer = _post_login(client, web_only, alice)
            fresh = answer.cookies.get("teleai_session")
            assert fresh and fresh != value
        with web_only.client(value) as api:
            assert api.get("/api/v1/auth/me").status_code == 401, "the planted session lives on"
        with web_only.client(fresh) as api:
            assert api.get("/api/v1/auth/me").json()["username"] == alice


def _post_login(client: httpx.Client, served: Served, username: str) -> httpx.Response:
    # The login page of a signed-in browser redirects; the form can still be fetched and sent.
    page = client.get("/login")
    if page.status_code != 200:
        saved = client.cookies.get("teleai_session")
        client.cookies.delete("teleai_session")
        page = client.get("/login")
        assert saved is not None
        client.cookies.set("teleai_session", saved)
    answer = client.post(
        "/login",
        data={"username": username, "password": served.passwords[username],
              "csrf_token": csrf_of(page.text)},
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    return answer


def test_another_users_file_is_not_found(web_only: Served, alice: str, alice_file: str) -> None:
    bob = web_only.user("viewer")
    with http_sign_in(web_only, bob) as client:
        for path in (
            f"/files/{alice_file}",
            f"/files/{alice_file}/audio",
            f"/files/{alice_file}/export/txt",
            "/files/not-a-uuid",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert "not found" in answer.text.lower(), path
        assert alice_file not in client.get("/files").text


def test_the_audio_route_answers_ranges(
    web_only: Served, alice: str, alice_file: str, audio: Path
) -> None:
    stored = audio.read_bytes()
    with http_sign_in(web_only, alice) as client:
        whole = client.get(f"/files/{alice_file}/audio")
        assert whole.status_code == 200 and whole.content == stored
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"].startswith("audio/ogg")
        part = client.get(f"/files/{alice_file}/audio", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{len(stored)}"
        assert part.content == stored[100:200]
        tail = client.get(f"/files/{alice_file}/audio", headers={"Range": f"bytes=-{50}"})
        assert tail.status_code == 206 and tail.content == stored[-50:]


def _transcript_with_markup(served: Served, file_id: str) -> None:
    words = [
        {"start": 0.1 * i, "end": 0.1 * i + 0.09, "word": w} for i, w in enumerate(XSS_TEXT.split())
    ]
    segments: list[dict[str, Any]] = [
        {"start": 0.0, "end": 1.0, "text": XSS_TEXT, "words": words,
         "speaker": "<i>agent</i>"}
    ]  # fmt: skip
    with served.owner() as session:
        add_transcription_version(
            session, uuid.UUID(file_id), text=XSS_TEXT, language_code="en",
            confidence_score=None, engine="faster-whisper", engine_version=None,
            model_name="<script>m</script>", segments=segments, word_count=len(words),
            processing_time_seconds=None,
        )  # fmt: skip
        row = session.get(AudioFile, uuid.UUID(file_id))
        assert row is not None
        row.status = "completed"


def test_markup_in_names_and_transcripts_renders_as_text(
    web_only: Served, browser: Browser, alice: str, audio: Path
) -> None:
    file_id = upload(web_only, alice, audio, XSS_NAME)
    _transcript_with_markup(web_only, file_id)
    context = new_context(browser, web_only)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(page, web_only, alice)
        expect(page.locator(f"#file-{file_id} .name a")).to_have_text(XSS_NAME)
        page.goto(f"/files/{file_id}")
        expect(page.locator("h1.file-name")).to_have_text(XSS_NAME)
        expect(page.locator("#transcript")).to_contain_text("<script>window.__xss=3</script>")
        expect(page.locator(".speaker")).to_have_text("<i>agent</i>")
        page.goto("/search?q=hello+world")
        expect(page.locator(".hit-name")).to_have_text(XSS_NAME)
        assert page.evaluate("window.__xss") is None
        assert page.locator("#main script, #main img, #main b, #main i").count() == 0
        assert not errors
    finally:
        context.close()


def test_upload_form_options_reach_the_file(web_only: Served, alice: str, audio: Path) -> None:
    with http_sign_in(web_only, alice) as client:
        token = csrf_of(client.get("/files").text)
        with audio.open("rb") as handle:
            answer = client.post(
                "/files/upload",
                data={"engine": "faster-whisper", "language": "de", "vocabulary": "Acme, Zorblax",
                      "speakers": "2", "channels": "auto", "channel_labels": "",
                      "redact_pii": "on", "force": "on"},
                files={"file": ("options call.ogg", handle, "audio/ogg")},
                headers={"X-CSRF-Token": token, "Accept": "application/json"},
            )  # fmt: skip
        assert answer.status_code == 201, answer.text
        file_id = answer.json()["items"][0]["id"]
        bad = client.post(
            "/files/upload",
            data={"language": "not a language"},
            files={"file": ("x.ogg", b"OggS", "audio/ogg")},
            headers={"X-CSRF-Token": token, "Accept": "application/json"},
        )
        assert bad.status_code == 400 and "language" in bad.json()["error"]
    with web_only.client(web_only.login(alice)) as api:
        options = api.get(f"/api/v1/files/{file_id}").json()["options"]
    assert options == {
        "engine": "faster-whisper", "language": "de", "vocabulary": ["Acme", "Zorblax"],
        "speakers": 2, "redact_pii": True,
    }  # fmt: skip


def test_failed_files_show_their_error_and_the_list_filters_and_pages(
    web_only: Served, audio: Path
) -> None:
    owner = web_only.user("analyst")
    token = web_only.login(owner)
    ids = []
    with web_only.client(token) as api, audio.open("rb") as handle:
        for i in range(26):  # one more than a page
            handle.seek(0)
            answer = api.post(
                "/api/v1/files",
                files={"file": (f"call {i:02d}.ogg", handle, "audio/ogg")},
                params={"force": "true"},
            )
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        cancelled = api.post(f"/api/v1/files/{ids[0]}/cancel")
        assert cancelled.status_code == 200, cancelled.text
    with http_sign_in(web_only, owner) as client:
        first = client.get("/files")
        assert first.text.count('<tr id="file-') == 25
        assert "call 25.ogg" in first.text and "call 00.ogg" not in first.text
        next_url = first.text.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"')[0]
        second = client.get(next_url.replace("&amp;", "&"))
        assert second.status_code == 200, second.text
        # The filter form's "all" sends empty values.
        assert client.get("/files?status=&format=").text.count('<tr id="file-') == 25
        assert second.text.count('<tr id="file-') == 1
        assert f"cancelled by {owner} before processing started" in second.text
        failed = client.get("/files", params={"status": "failed"})
        assert failed.text.count('<tr id="file-') == 1 and "call 00.ogg" in failed.text
        assert client.get("/files", params={"format": "mp3"}).text.count('<tr id="file-') == 0
        bad_cursor = client.get("/files", params={"cursor": "nonsense"})
        assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.text


def test_a_redacted_call_is_shown_and_played_only_as_its_role_may(
    web_only: Served, alice: str, audio: Path
) -> None:
    with web_only.client(web_only.login(alice)) as api, audio.open("rb") as handle:
        answer = api.post(
            "/api/v1/files",
            files={"file": ("pii call.ogg", handle, "audio/ogg")},
            data={"options": '{"redact_pii": true}'},
            params={"force": "true"},
        )
        assert answer.status_code == 201, answer.text
        file_id = answer.json()["id"]
    said, hidden = "call me at 555 0100 please", "call me at [PHONE] please"
    timed = [{"start": float(i), "end": i + 0.9, "word": w} for i, w in enumerate(said.split())]
    with web_only.owner() as session:
        version = add_transcription_version(
            session, uuid.UUID(file_id), text=said, language_code="en", confidence_score=None,
            engine="faster-whisper", engine_version=None, model_name="tiny.en",
            segments=[{"start": 0.0, "end": 6.0, "text": said, "words": timed}],
            word_count=6, processing_time_seconds=None,
        )  # fmt: skip
        covered = [{**w, "word": h} for w, h in zip(timed, hidden.split(), strict=False)]
        record_redaction(
            session, version.id, redacted_text=hidden,
            segments=[{"start": 0.0, "end": 6.0, "text": hidden, "words": covered}],
            spans=[{"type": "phone", "start": 3.0, "end": 4.9}], policy={}, audio_path=None,
        )  # fmt: skip
    bob = web_only.user("analyst")  # analysts see every file, not its personal data
    with http_sign_in(web_only, bob) as client:
        shown = client.get(f"/files/{file_id}")
        assert shown.status_code == 200
        assert "[PHONE]" in shown.text and "555" not in shown.text
        assert "personal data redacted" in shown.text and "switch-redaction" not in shown.text
        assert client.get(f"/files/{file_id}", params={"redacted": "false"}).text.count("555") == 0
        assert client.get(f"/files/{file_id}/audio").status_code == 403
        assert "555" not in client.get(f"/files/{file_id}/export/txt").text
        assert "555" not in client.get("/search", params={"q": "please"}).text
    with http_sign_in(web_only, alice) as client:  # the owning analyst reads both forms
        own = client.get(f"/files/{file_id}")
        assert ">555<" in own.text and "[PHONE]" not in own.text and "switch-redaction" in own.text
        assert "[PHONE]" in client.get(f"/files/{file_id}", params={"redacted": "true"}).text
        assert client.get(f"/files/{file_id}/audio").status_code == 200
