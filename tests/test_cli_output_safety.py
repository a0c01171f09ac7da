"""User-controlled text printed by the real ``teleai`` command: shown literally, never acted on.

Rich reads ``[...]`` as markup: ``[/x]`` used to crash ``users list``, ``ingest``, ``search`` and
``show`` (a closing tag with nothing open), and ``[link=...]`` turned text into a link to
another site. Raw escape sequences in a file name reached the terminal (retitle it, hide text).
Each command runs as a subprocess on a database of its own, the way a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from db.engine import unit_of_work
from tests.db.factories import make_file, make_transcription, make_user
from tests.speech import espeak_wav

REDIS_URL = os.environ.get("TELEAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
MARKUP = "[/x][link=https://evil.example]click[/link][bold]"
# OSC 0 (set the window title), CSI 2J (clear the screen), a bidi override, a bell.
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\u202e"
EVIL_NAME = f"{MARKUP} {ESCAPES}call.wav"
# A name on disk cannot hold "/", so no closing tag; opening tags still styled or linked it.
DISK_MARKUP = "[link=evil.example]click[bold red]"


TELEAI = str(Path(sys.executable).parent / "teleai")


def teleai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TELEAI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_literal(result: subprocess.CompletedProcess[str], markup: str = MARKUP) -> None:
    shown = result.stdout + result.stderr
    assert "Traceback" not in shown and "MarkupError" not in shown, shown
    assert markup in shown, shown
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown, repr(shown)
    assert "\\x1b]0;pwned" in shown, shown  # made visible, not dropped silently


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    client.ping()  # a missing Redis fails the test here, loudly
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TELEAI_")}
    environment.update(
        TELEAI_DATABASE_URL=database_url,
        TELEAI_BROKER_URL=REDIS_URL,
        TELEAI_STORAGE_DIR=str(tmp_path / "storage"),
        COLUMNS="400",
    )
    try:
        yield environment
    finally:
        client.flushdb()


def test_users_list_shows_a_crafted_email_literally(engine: Engine, env: dict[str, str]) -> None:
    with unit_of_work(engine) as session:
        user = make_user(session, "mallory")
        user.email = "[/x][link=https://evil.example]click[/link][bold]@evil.example"
    result = teleai(env, "users", "list")
    assert result.returncode == 0, result.stderr
    assert "[/x][link=https://evil.example]click[/link][bold]@evil.example" in result.stdout


def test_show_and_search_print_crafted_names_and_terms_literally(
    engine: Engine, env: dict[str, str]
) -> None:
    with unit_of_work(engine) as session:
        owner = make_user(session, "mallory2", role="analyst")
        audio = make_file(session, owner, EVIL_NAME, file_format="wav")
        audio.codec = "[/x][link=https://e.example]"
        make_transcription(session, audio, f"hello {MARKUP} world")
        file_id = str(audio.id)
    shown = teleai(env, "show", file_id)
    assert shown.returncode == 0, shown.stderr
    assert_literal(shown)
    assert f"hello {MARKUP} world" in shown.stdout

    found = teleai(env, "search", "hello")
    assert found.returncode == 0, found.stderr
    assert_literal(found)

    term = teleai(env, "search", "[/x] [link=https://evil.example]")
    assert term.returncode == 0, term.stderr
    assert "search: [/x] [link=https://evil.example]" in " ".join(term.stdout.split())


def test_ingest_prints_a_crafted_file_name_literally(
    engine: Engine, env: dict[str, str], tmp_path: Path
) -> None:
    with unit_of_work(engine) as session:
        make_user(session, "uploader", role="analyst")
    source = tmp_path / f"{DISK_MARKUP} {ESCAPES}call.wav"
    espeak_wav("a short test", source)
    result = teleai(env, "ingest", str(source), "--user", "uploader")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_literal(result, DISK_MARKUP)


def test_an_unknown_user_given_as_markup_is_an_error_not_a_crash(env: dict[str, str]) -> None:
    name = f"[/x]{uuid.uuid4().hex[:4]}"
    result = teleai(env, "search", "hello", "--user", name)
    assert result.returncode == 2, result.stderr
    assert f"no active user '{name}'" in result.stderr
