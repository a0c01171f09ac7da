"""Log lines and error text: secrets masked, terminal control sequences made harmless.

The end-to-end check (a real worker and CLI on an unreachable database with a password in its
URL) is tests/integration/test_secrets_in_output.py; these pin the rules themselves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from pipeline import redact
from pipeline.errors import PermanentError, classify
from pipeline.logs import configure_logging

SECRET = "Tr0ub4dor-and-3"


@pytest.fixture(autouse=True)
def configured_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TELEAI_S3_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("TELEAI_BROKER_URL", "redis://:redis-pass-99@cache:6379/0")
    redact.forget_configured_secrets()
    try:
        yield
    finally:
        redact.forget_configured_secrets()
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("postgresql+psycopg://teleai:pw%40x@db:5432/teleai_pro", "pw%40x"),
        ("could not connect: host=db user=teleai password=hunter22 dbname=x", "hunter22"),
        ("password='quoted secret' host=db", "quoted secret"),
        (f"boto said {SECRET} somewhere", SECRET),
        ("redis said redis-pass-99 twice: redis-pass-99", "redis-pass-99"),
        ("PGPASSWORD=abc123def pg_dump", "abc123def"),
    ],
)
def test_redact_masks_every_spelling(text: str, hidden: str) -> None:
    masked = redact.redact(text)
    assert hidden not in masked and redact.MASK in masked, masked


def test_redact_keeps_what_is_not_secret() -> None:
    text = "https://sqlalche.me/e/21/e3q8 and postgresql://teleai@db/x: connection refused"
    assert redact.redact(text) == text


def test_pipeline_errors_never_carry_a_password() -> None:
    error = classify(RuntimeError("connect to postgresql://u:s3cr3tpw@db/x failed"))
    assert "s3cr3tpw" not in error.message and "s3cr3tpw" not in str(error)
    assert "s3cr3tpw" not in PermanentError("password=s3cr3tpw").message


def test_clean_shows_control_characters_instead_of_sending_them() -> None:
    shown = redact.clean("a\x1b]0;title\x07b\u202ec\nd")
    assert shown == "a\\x1b]0;title\\x07b\\u202ec\\x0ad"
    assert redact.clean("line\nbreak", keep_newlines=True) == "line\nbreak"
    assert redact.clean("plain café 😀") == "plain café 😀"


def _log_an_error(json_mode: bool) -> None:
    configure_logging("INFO", json=json_mode)
    log = structlog.get_logger("teleai.test")
    connection_string = "postgresql+psycopg://teleai:LocalPw123@db:5432/teleai_pro"
    try:
        raise ConnectionError(f"lost {connection_string}")
    except ConnectionError:
        log.exception("failed", path="drop/\x1b[2Jevil.wav", url=connection_string)
        logging.getLogger("celery").error("stdlib %s", connection_string, exc_info=True)
    del connection_string  # a local that a traceback with locals would have printed


def test_console_lines_are_redacted_cleaned_and_without_locals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _log_an_error(json_mode=False)
    err = capsys.readouterr().err
    assert "LocalPw123" not in err and "teleai:***@db" in err
    assert "\x1b" not in err and "\\x1b[2Jevil.wav" in err
    assert "Traceback" in err and "connection_string =" not in err  # no locals
    assert err.count("ConnectionError: lost") == 2


def test_json_lines_are_redacted_and_parse(capsys: pytest.CaptureFixture[str]) -> None:
    _log_an_error(json_mode=True)
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and all("exception" in line for line in lines)
    assert "LocalPw123" not in err
    assert lines[0]["path"] == "drop/\x1b[2Jevil.wav"  # JSON escapes it; a reader decides
