"""The HTTP API against a real server process: credentials, scopes, throttles, isolation, bad input.

No worker runs here: uploads stay ``pending``, which is all these tests need (the pipeline module
has the worker). Every error body is checked to be JSON with a message and no traceback.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from db.models import AudioFile
from tests.api.conftest import Served, _address


def assert_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """``status`` with a JSON ``{"error": ...}`` body and nothing of a stack trace."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def upload(
    client: httpx.Client, name: str = "call.wav", data: bytes | None = None, **params: Any
) -> httpx.Response:
    """A raw-body upload of distinct bytes (no worker runs: the content is never decoded)."""
    body = data if data is not None else b"RIFF" + secrets.token_bytes(2048)
    return client.post(
        "/api/v1/files",
        content=body,
        params={"file_name": name, **params},
        headers={"Content-Type": "application/octet-stream"},
    )


@pytest.fixture(scope="module")
def admin(served: Served) -> str:
    return served.user("admin")


@pytest.fixture(scope="module")
def admin_token(served: Served, admin: str) -> str:
    return served.login(admin)


def me(served: Served, credential: str, **headers: str) -> httpx.Response:
    with served.client(credential, **headers) as client:
        return client.get("/api/v1/auth/me")


# --- the service ------------------------------------------------------------------------------


def test_health_readiness_and_docs_that_work_offline(served: Served) -> None:
    with served.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"
        assert ready["checks"] == {"postgresql": "ok", "redis": "ok"}
        page = client.get("/docs")
        assert page.status_code == 200
        assert "cdn." not in page.text and "https://" not in page.text.split("<body>")[0]
        scripts = [part.split('"')[0] for part in page.text.split('src="')[1:]]
        assert scripts, page.text
        for script in scripts:
            assert script.startswith("/"), script  # served here, not from a CDN
            assert client.get(script).status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/api/v1/files", "/api/v1/auth/login", "/api/v1/keys", "/readyz"} <= set(paths)
        assert_json_error(client.get("/no/such/path"), 404)
        assert_json_error(client.put("/healthz"), 405)


# --- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-token", "tk_" + "x" * 43,
     "Bearer " + "a" * 600],
)  # fmt: skip
def test_missing_or_unknown_credentials_get_401(served: Served, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    with served.client(**headers) as client:
        body = assert_json_error(client.get("/api/v1/files"), 401)
        assert "Authorization" in body["error"]


def test_login_by_username_or_email_and_the_bare_key_header(served: Served) -> None:
    name = served.user("viewer")
    password = served.passwords[name]
    with served.client(**{"X-Forwarded-For": _address()}) as client:
        by_email = client.post(
            "/api/v1/auth/login",
            json={"login": f" {name.upper()}@EXAMPLE.ORG", "password": password},
        )
        assert by_email.status_code == 200, by_email.text
        assert by_email.json()["user"]["username"] == name
        wrong = client.post("/api/v1/auth/login", json={"login": name, "password": "nope"})
        nobody = client.post("/api/v1/auth/login", json={"login": "nobody", "password": "nope"})
    assert assert_json_error(wrong, 401) == assert_json_error(nobody, 401)  # same answer
    token = by_email.json()["token"]
    assert me(served, token).json()["credential"]["kind"] == "session"
    key = served.key(name, scope="read")
    # The AssemblyAI SDK sends the key itself as the header value, without "Bearer".
    with served.client(**{"authorization": key}) as client:
        found = client.get("/api/v1/auth/me").json()
    assert found["username"] == name and found["credential"] == {
        "kind": "key", "id": found["credential"]["id"], "scope": "read"
    }  # fmt: skip


def test_session_records_client_and_logout_revokes(served: Served) -> None:
    name = served.user("viewer")
    address = _address()
    token = served.login(name, address=address)
    with served.client(token, **{"User-Agent": "probe/1.0"}) as client:
        [listed] = client.get("/api/v1/auth/sessions").json()["items"]
        assert listed["ip_address"] == address
        assert client.post("/api/v1/auth/logout").status_code == 204
        assert_json_error(client.get("/api/v1/auth/me"), 401)


def test_rotation_replaces_the_token(served: Served) -> None:
    token = served.login(served.user("viewer"))
    with served.client(token) as client:
        rotated = client.post("/api/v1/auth/rotate")
    assert rotated.status_code == 200, rotated.text
    assert_json_error(me(served, token), 401)
    assert me(served, rotated.json()["token"]).status_code == 200


def test_expired_and_idle_sessions_stop_working(served: Served) -> None:
    name = served.user("viewer")
    expired, idle, fresh = served.login(name), served.login(name), served.login(name)
    from db.auth_sessions import token_hash

    with served.owner() as session:
        session.execute(
            text("UPDATE sessions SET created_at = now() - interval '2 days', "
                 "expires_at = now() - interval '1 second' WHERE token_hash = :h"),
            {"h": token_hash(expired)},
        )  # fmt: skip
        session.execute(
            text("UPDATE sessions SET last_accessed_at = now() - interval '31 minutes' "
                 "WHERE token_hash = :h"),
            {"h": token_hash(idle)},
        )  # fmt: skip
    assert_json_error(me(served, expired), 401)
    assert_json_error(me(served, idle), 401)
    assert me(served, fresh).status_code == 200


def test_role_change_and_deactivation_end_credentials(served: Served, admin_token: str) -> None:
    promoted, blocked = served.user("viewer"), served.user("analyst")
    token, blocked_token = served.login(promoted), served.login(blocked)
    blocked_key = served.key(blocked)
    with served.client(admin_token) as client:
        changed = client.put(
            f"/api/v1/admin/users/{served.user_ids[promoted]}/role", json={"role": "analyst"}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["role"] == "analyst"
        gone = client.post(f"/api/v1/admin/users/{served.user_ids[blocked]}/deactivate")
        assert gone.status_code == 200 and gone.json()["is_active"] is False
    assert_json_error(me(served, token), 401)  # a token from before the change is dead
    assert me(served, served.login(promoted)).json()["role"] == "analyst"
    assert_json_error(me(served, blocked_token), 401)
    assert_json_error(me(served, blocked_key), 401)


def test_revoked_keys_stop_at_once(served: Served) -> None:
    name = served.user("analyst")
    token = served.login(name)
    with served.client(token) as client:
        created = client.post("/api/v1/keys", json={"name": "ci", "scope": "write"})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        assert me(served, key).status_code == 200
        listed = client.get("/api/v1/keys").json()["items"]
        assert [k["id"] for k in listed] == [key_id]
        assert "key" not in listed[0] and listed[0]["prefix"] == key[:11]
        assert client.delete(f"/api/v1/keys/{key_id}").status_code == 204
        assert_json_error(client.delete(f"/api/v1/keys/{key_id}"), 404)  # not live any more
    assert_json_error(me(served, key), 401)
    # Revocation is final, even for a direct write (the trigger holds for every role).
    with served.owner() as session, pytest.raises(Exception, match="revocation is final"):
        session.execute(
            text("UPDATE api_keys SET revoked_at = NULL WHERE id = :id"), {"id": key_id}
        )


def test_scopes_limit_what_a_credential_may_do(served: Served, admin: str) -> None:
    name = served.user("analyst")
    read_key, write_key = served.key(name, "read"), served.key(name, "write")
    with served.client(read_key) as client:
        assert client.get("/api/v1/files").status_code == 200
        assert "scope" in assert_json_error(upload(client), 403)["error"]
        assert_json_error(client.post("/api/v1/keys", json={"name": "more"}), 403)
    with served.client(write_key) as client:
        assert upload(client).status_code == 201
        assert_json_error(client.post("/api/v1/keys", json={"name": "x", "scope": "admin"}), 403)
        assert_json_error(client.get("/api/v1/admin/users"), 403)
    admin_read = served.key(admin, "read")
    with served.client(admin_read) as client:
        assert_json_error(client.get("/api/v1/admin/users"), 403)
    with served.client(served.login(name)) as client:
        assert "admin" in assert_json_error(client.get("/api/v1/admin/users"), 403)["error"]
    viewer = served.user("viewer")
    with served.client(served.login(viewer)) as client:
        assert "viewer" in assert_json_error(upload(client), 403)["error"]


def test_failed_logins_are_throttled_per_account(served: Served) -> None:
    name = served.user("viewer")
    for _ in range(3):
        with served.client(**{"X-Forwarded-For": _address()}) as client:
            bad = client.post("/api/v1/auth/login", json={"login": name, "password": "wrong"})
            assert_json_error(bad, 401)
    with served.client(**{"X-Forwarded-For": _address()}) as client:
        right = client.post(
            "/api/v1/auth/login", json={"login": name, "password": served.passwords[name]}
        )
    assert "too many failed logins" in assert_json_error(right, 429)["error"]
    assert int(right.headers["Retry-After"]) > 0


def test_failed_logins_are_throttled_per_address(served: Served) -> None:
    address = _address()
    name = served.user("viewer")
    with served.client(**{"X-Forwarded-For": address}) as client:
        for index in range(8):
            guess = client.post(
                "/api/v1/auth/login", json={"login": f"guess{index}", "password": "x"}
            )
            assert_json_error(guess, 401)
        right = {"login": name, "password": served.passwords[name]}
        assert_json_error(client.post("/api/v1/auth/login", json=right), 429)
    served.login(name)  # from another address the same login works


def test_api_keys_are_rate_limited_by_a_token_bucket(served: Served) -> None:
    name = served.user("viewer")
    key, other = served.key(name, "read"), served.key(name, "read")
    with served.client(key) as client:
        codes = [client.get("/api/v1/auth/me").status_code for _ in range(45)]
        limited = client.get("/api/v1/auth/me")
    assert codes[:20] == [200] * 20  # the burst
    assert 429 in codes, codes
    if limited.status_code == 429:
        assert int(limited.headers["Retry-After"]) >= 1
        assert "rate limit" in assert_json_error(limited, 429)["error"]
    assert me(served, other).status_code == 200  # one bucket per key


# --- isolation --------------------------------------------------------------------------------


def test_another_users_file_is_404_like_a_missing_one(served: Served) -> None:
    owner, stranger, manager = served.user("analyst"), served.user("viewer"), served.user("manager")
    with served.client(served.login(owner)) as client:
        created = upload(client, "private.wav")
        assert created.status_code == 201, created.text
        file_id = created.json()["id"]
        assert client.get(f"/api/v1/files/{file_id}").status_code == 200
    missing = str(uuid.uuid4())
    with served.client(served.login(stranger)) as client:
        for target in (file_id, missing):
            for method, path in [
                ("GET", f"/api/v1/files/{target}"),
                ("GET", f"/api/v1/files/{target}/transcript"),
                ("GET", f"/api/v1/files/{target}/versions"),
                ("GET", f"/api/v1/files/{target}/analyses"),
                ("GET", f"/api/v1/files/{target}/export/srt"),
                ("GET", f"/api/v1/files/{target}/events"),
                ("POST", f"/api/v1/files/{target}/cancel"),
                ("POST", f"/api/v1/files/{target}/retranscribe"),
                ("DELETE", f"/api/v1/files/{target}"),
            ]:
                body = assert_json_error(client.request(method, path), 404)
                assert body["error"] == "file not found", (method, path)
        assert client.get("/api/v1/files").json()["items"] == []
        assert_json_error(client.get("/api/v1/files/not-a-uuid"), 400)
    with served.client(served.login(manager)) as client:  # staff see every file
        assert client.get(f"/api/v1/files/{file_id}").json()["file_name"] == "private.wav"
        listed = client.get("/api/v1/files", params={"owner": str(served.user_ids[owner])})
        assert [f["id"] for f in listed.json()["items"]] == [file_id]
    with served.owner() as session:  # the forged-id path of 002 is closed
        session.execute(text("SET LOCAL ROLE teleai_app"))
        session.execute(
            text("SELECT set_config('app.current_user_id', :id, true)"),
            {"id": str(served.user_ids[manager])},
        )
        assert session.execute(text("SELECT count(*) FROM audio_files")).scalar_one() == 0


# --- bad input --------------------------------------------------------------------------------


def _stored_files(served: Served) -> set[Path]:
    root = Path(served.env["TELEAI_STORAGE_DIR"])
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"\0" * min(size, total - sent)
        sent += size


def test_oversize_bodies_get_413_and_leave_nothing(served: Served) -> None:
    client = served.client(served.key(served.user("analyst")))
    before = _stored_files(served)
    with served.owner() as session:
        rows_before = session.query(AudioFile).count()
    big = 3 * 1024 * 1024
    with client:
        declared = upload(client, data=b"\0" * big)
        body = assert_json_error(declared, 413)
        assert "2097152 bytes" in body["error"] and "TELEAI_API_MAX_UPLOAD_BYTES" in body["error"]
        chunked = client.post(
            "/api/v1/files",
            content=_chunks(big),
            params={"file_name": "big.wav"},
            headers={"Content-Type": "audio/wav"},
        )
        assert_json_error(chunked, 413)
        multipart = client.post(
            "/api/v1/files", files={"file": ("big.wav", b"\0" * big, "audio/wav")}
        )
        assert_json_error(multipart, 413)
        assert upload(client).status_code == 201  # the server is fine afterwards
    with served.owner() as session:
        assert session.query(AudioFile).count() == rows_before + 1
    assert len(_stored_files(served) - before) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "image/png", None])
def test_wrong_content_types_get_415(served: Served, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    with served.client(served.key(served.user("analyst"))) as client:
        response = client.post(
            "/api/v1/files", content=b"x" * 100, params={"file_name": "a.wav"}, headers=headers
        )
    assert "multipart/form-data" in assert_json_error(response, 415)["error"]


@pytest.mark.parametrize(
    "name",
    ["../../../etc/passwd.wav", "/abs/path.wav", "..\\..\\win.wav", "<script>x</script>.wav",
     "na\u202eme.wav", "long" + "x" * 240 + ".wav", "' OR 1=1; --.wav", "spaces  in name .wav"],
)  # fmt: skip
def test_hostile_file_names_are_labels_never_paths(served: Served, name: str) -> None:
    before = _stored_files(served)
    with served.client(served.key(served.user("analyst"))) as client:
        created = client.post(
            "/api/v1/files",
            files={"file": (name, b"RIFF" + secrets.token_bytes(512), "audio/wav")},
        )
        assert created.status_code == 201, created.text
        shown = client.get(f"/api/v1/files/{created.json()['id']}").json()
    new = _stored_files(served) - before
    assert len(new) == 1
    root = Path(served.env["TELEAI_STORAGE_DIR"]).resolve()
    [stored] = new
    assert stored.resolve().is_relative_to(root)
    assert name.split("/")[-1] not in stored.name or name == stored.name
    assert shown["file_name"] == name[:255]
    assert "file_path" not in shown and "source_path" not in shown["metadata"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("no-extension", "unsupported extension"), ("nul\x00.wav", "NUL"), ("call.exe", "extension"),
     ("x" * 300 + ".wav", "extension")],
)  # fmt: skip
def test_refused_names_get_400(served: Served, name: str, message: str) -> None:
    with served.client(served.key(served.user("analyst"))) as client:
        refused = upload(client, name)  # the query string carries any character, NUL included
    assert message in assert_json_error(refused, 400)["error"]


def test_malformed_json_unknown_fields_and_unknown_options_get_400(served: Served) -> None:
    with served.client(**{"X-Forwarded-For": _address()}) as client:
        broken = client.post(
            "/api/v1/auth/login",
            content=b'{"login": "a",',
            headers={"Content-Type": "application/json"},
        )
        assert assert_json_error(broken, 400)["error"] == "the request body is not valid JSON"
        extra = client.post("/api/v1/auth/login", json={"login": "a", "password": "b", "x": 1})
        assert "x" in assert_json_error(extra, 400)["error"]
        not_object = client.post("/api/v1/auth/login", json=["login", "password"])
        assert_json_error(not_object, 400)
    key = served.key(served.user("analyst"))
    with served.client(key) as client:
        unknown = upload(client, options=json.dumps({"engine": "faster-whisper", "bogus": 1}))
        assert "bogus" in assert_json_error(unknown, 400)["error"]
        bad_value = upload(client, options=json.dumps({"speakers": 500}))
        assert "speakers" in assert_json_error(bad_value, 400)["error"]
        assert "JSON" in assert_json_error(upload(client, options="{nope"), 400)["error"]
        multipart = client.post(
            "/api/v1/files",
            files={"file": ("a.wav", b"RIFF" + secrets.token_bytes(64), "audio/wav")},
            data={"options": json.dumps({"language": "not a language!"})},
        )
        assert "language" in assert_json_error(multipart, 400)["error"]
        retry = client.post(f"/api/v1/files/{uuid.uuid4()}/retranscribe", json={"speed": "fast"})
        assert_json_error(retry, 400)
        assert_json_error(client.get("/api/v1/files", params={"limit": 100000}), 400)
        assert_json_error(client.get("/api/v1/files", params={"status": "exploded"}), 400)
        assert_json_error(client.get("/api/v1/files", params={"cursor": "!!!"}), 400)


# --- files ------------------------------------------------------------------------------------


def test_list_pages_by_keyset_and_filters(served: Served) -> None:
    with served.client(served.key(served.user("analyst"))) as client:
        ids = [
            upload(client, f"call{i}.{'wav' if i % 2 else 'mp3'}").json()["id"] for i in range(5)
        ]
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            page = client.get(
                "/api/v1/files", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            ).json()
            seen += [f["id"] for f in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))  # newest first, nothing twice, nothing lost
        wav = client.get("/api/v1/files", params={"format": "wav"}).json()["items"]
        assert {f["id"] for f in wav} == {ids[1], ids[3]}
        assert len(client.get("/api/v1/files", params={"status": "pending"}).json()["items"]) == 5
        assert client.get("/api/v1/files", params={"status": "completed"}).json()["items"] == []
        future = client.get("/api/v1/files", params={"created_after": "2999-01-01T00:00:00Z"})
        assert future.json()["items"] == []


def test_duplicate_upload_is_200_with_the_same_id(served: Served) -> None:
    data = b"RIFF" + secrets.token_bytes(1024)
    with served.client(served.key(served.user("analyst"))) as client:
        first, again = upload(client, data=data), upload(client, "other.wav", data=data)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["outcome"] == "duplicate"


def test_cancel_a_pending_file_then_soft_delete(served: Served) -> None:
    with served.client(served.key(served.user("analyst"))) as client:
        file_id = upload(client).json()["id"]
        cancelled = client.post(f"/api/v1/files/{file_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "failed"
        assert "cancelled" in cancelled.json()["error"]["message"]
        assert_json_error(client.post(f"/api/v1/files/{file_id}/cancel"), 409)
        assert client.delete(f"/api/v1/files/{file_id}").status_code == 204
        assert_json_error(client.get(f"/api/v1/files/{file_id}"), 404)
        assert file_id not in {f["id"] for f in client.get("/api/v1/files").json()["items"]}
    with served.owner() as session:
        row = session.get(AudioFile, uuid.UUID(file_id))
        assert row is not None and row.deleted_at is not None  # soft: the row stays


def test_viewer_cannot_cancel_or_delete_a_visible_file(served: Served) -> None:
    owner = served.user("analyst")
    with served.client(served.key(owner)) as client:
        file_id = upload(client).json()["id"]
    viewer = served.user("viewer")
    with served.owner() as session:  # a viewer sees their own files only; give them one
        session.execute(
            text("UPDATE audio_files SET user_id = :v WHERE id = :id"),
            {"v": served.user_ids[viewer], "id": file_id},
        )
    with served.client(served.login(viewer)) as client:
        assert client.get(f"/api/v1/files/{file_id}").status_code == 200
        assert (
            "viewer"
            in assert_json_error(client.post(f"/api/v1/files/{file_id}/cancel"), 403)["error"]
        )
        assert_json_error(client.delete(f"/api/v1/files/{file_id}"), 403)


# --- admin and CLI ------------------------------------------------------------------------------


def test_admin_users_sessions_keys_and_usage(served: Served, admin_token: str) -> None:
    with served.client(admin_token) as client:
        created = client.post(
            "/api/v1/admin/users",
            json={"username": "newhire", "email": "newhire@example.org",
                  "password": "a long enough password", "role": "analyst"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        new_id = created.json()["id"]
        again = client.post(
            "/api/v1/admin/users",
            json={"username": "newhire", "email": "other@example.org",
                  "password": "a long enough password"},
        )  # fmt: skip
        assert_json_error(again, 409)
        assert_json_error(
            client.post(
                "/api/v1/admin/users", json={"username": "x", "email": "bad", "password": "p"}
            ),
            400,
        )
        assert "newhire" in {
            u["username"] for u in client.get("/api/v1/admin/users").json()["items"]
        }
    served.passwords["newhire"] = "a long enough password"
    served.user_ids["newhire"] = uuid.UUID(new_id)
    token = served.login("newhire")
    with served.client(token) as client:
        upload(client)
        key_id = client.post("/api/v1/keys", json={"name": "robot"}).json()["id"]
    with served.client(admin_token) as client:
        sessions = client.get(f"/api/v1/admin/users/{new_id}/sessions").json()["items"]
        assert len(sessions) == 1
        keys = client.get("/api/v1/admin/keys", params={"user_id": new_id}).json()["items"]
        assert [k["id"] for k in keys] == [key_id]
        assert client.delete(f"/api/v1/admin/keys/{key_id}").json() == {"revoked": True}
        usage = client.get("/api/v1/admin/usage", params={"user_id": new_id}).json()["items"]
        assert [u["files_submitted"] for u in usage] == [1]
        assert client.delete(f"/api/v1/admin/users/{new_id}/sessions").json() == {"revoked": 1}
        assert_json_error(client.get(f"/api/v1/admin/users/{uuid.uuid4()}/sessions"), 404)
    assert_json_error(me(served, token), 401)


def test_cli_keys_create_list_revoke(served: Served) -> None:
    name = served.user("analyst")
    cli = [sys.executable, "-c", "from interfaces.cli import main; main()", "keys"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*cli, *args], env=served.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done

    created = run("create", "--user", name, "--scope", "write", "--name", "nightly job")
    key = created.stdout.strip().splitlines()[-1]
    assert created.stdout.strip() == key and key.startswith("tk_")
    assert me(served, key).json()["credential"]["scope"] == "write"
    [listed] = [
        json.loads(line) for line in run("list", "--user", name, "--json").stdout.splitlines()
    ]
    assert listed["name"] == "nightly job" and listed["prefix"] == key[:11]
    run("revoke", listed["id"])
    assert_json_error(me(served, key), 401)


def test_no_error_leaked_a_traceback_to_the_server_log_either(served: Served) -> None:
    # Errors above were all handled; an unhandled one would log "api_unhandled_error".
    assert "api_unhandled_error" not in served.logs()


def test_live_status_opens_for_a_credential_due_for_its_last_use_update(served: Served) -> None:
    """The first event is read in the request's transaction, which just touched the session
    row; a second transaction touching it again would wait on that lock forever."""
    name = served.user("analyst")
    token = served.login(name)
    from db.auth_sessions import token_hash

    with served.client(token) as client:
        file_id = upload(client).json()["id"]
    with served.owner() as session:
        session.execute(
            text("UPDATE sessions SET last_accessed_at = now() - interval '5 minutes' "
                 "WHERE token_hash = :h"),
            {"h": token_hash(token)},
        )  # fmt: skip
    with (
        served.client(token) as client,
        client.stream("GET", f"/api/v1/files/{file_id}/events", timeout=10) as stream,
    ):
        assert stream.status_code == 200
        first = next(line for line in stream.iter_lines() if line.startswith("data:"))
    assert json.loads(first.removeprefix("data:"))["status"] == "pending"
