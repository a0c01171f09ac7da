"""Keep secrets and terminal control sequences out of everything we print or store as text.

Two kinds of text leave a process: log lines (console or JSON, tracebacks included) and error
messages kept in ``audio_files.error_message`` or printed by the CLI. Either may carry a library's
message, and library messages can quote a connection URL (``postgresql://user:pw@host``) or a
conninfo (``password=pw``). :func:`redact` removes passwords from both spellings, and also every
secret this process was configured with (the passwords in the ``TELEAI_*`` URLs and the
``TELEAI_*`` variables that hold keys, secrets, tokens or passwords, and ``PGPASSWORD``) wherever
it appears verbatim, so a message that quotes a secret some other way is covered too.

:func:`clean` is for user-controlled text (file names, user names, tags) shown on a terminal: it
replaces control characters, which could retitle the terminal, move the cursor or hide text,
with a visible ``\\xNN`` / ``\\uNNNN`` form. Neither function raises.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
# Shorter "secrets" (empty, "x") would mask ordinary words everywhere; nobody uses them anyway.
_MIN_SECRET_CHARS = 4
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(?:^|_)KEY$|API_KEY|ACCESS_KEY", re.IGNORECASE)

# scheme://user:password@host — the password is everything up to the last '@' before the host.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@")
# libpq conninfo and its relatives: password=..., password='...', PGPASSWORD=...
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pgpassword|secret|token)\s*[=:]\s*)"
    r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&)]+)",
    re.IGNORECASE,
)


def _url_secret(value: str) -> list[str]:
    try:
        password = urlsplit(value).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def secrets_in(environ: Mapping[str, str]) -> frozenset[str]:
    """The secret values an environment configures (see the module docstring)."""
    found: list[str] = []
    for name, value in environ.items():
        if not value:
            continue
        if name.startswith("TELEAI_") and "://" in value:
            found += _url_secret(value)
        elif (name.startswith("TELEAI_") and _SECRET_NAME.search(name)) or name == "PGPASSWORD":
            found.append(value)
    return frozenset(s for s in found if len(s) >= _MIN_SECRET_CHARS)


@lru_cache(maxsize=1)
def _configured_secrets() -> tuple[str, ...]:
    # Longest first, so a secret that contains another is masked whole.
    return tuple(sorted(secrets_in(os.environ), key=len, reverse=True))


def forget_configured_secrets() -> None:
    """Read the environment again on the next :func:`redact` (tests that change it)."""
    _configured_secrets.cache_clear()


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without URL passwords, ``password=`` values or configured secrets."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    for secret in (*_configured_secrets(), *extra):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """:func:`redact` applied to every string inside ``value`` (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    return value


def _shown(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(char: str, keep_newlines: bool) -> bool:
    if char == "\n" or char == "\t":
        return not keep_newlines
    # Cc: C0/C1 controls (ESC starts every terminal sequence); Cf: format characters such as
    # the bidirectional overrides (U+202E) that make text read differently from what it is.
    return unicodedata.category(char) in {"Cc", "Cf"} and char != "\u200d"


def clean(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control and format characters shown as escapes instead of acted on."""
    if text.isprintable() and (keep_newlines or "\n" not in text):
        return text
    return "".join(_shown(c) if _unsafe(c, keep_newlines) else c for c in text)
