"""The status read in one database round trip: ``GET /api/v1/files/{id}``, what clients poll.

A client waiting for its file asks for the same small row again and again, so this read is the
API's hottest path (issue 12's target: >= 500 requests/s with p99 < 50 ms on two cores). The
general path (:func:`interfaces.api.deps.caller`) costs four round trips per request (BEGIN,
``app_authenticate``, the row, COMMIT) plus a thread hop per dependency; here the credential is
resolved and the row read under row-level security in one statement, ``app_read_file`` of
migration 011, on a pooled connection in autocommit (so no BEGIN/COMMIT), prepared on the
server after its first use on a connection.

The rules are the general path's: the database derives the acting user from the credential
(no user id ever comes from Python) and refuses revoked, expired and idle ones (migrations 005
and 009: 401; the API's idle timeout is checked here as well), another user's file is the same
404 as a missing one, an API key takes a token from its Redis bucket (429 over the rate), and
the credential's last use is recorded at most once a minute (then, and only then, a second
statement in a short transaction of its own).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import psycopg
import pydantic_core
from psycopg.rows import namedtuple_row
from psycopg.types.json import JsonbLoader
from starlette.responses import JSONResponse

from interfaces.api.compat import Readable
from interfaces.api.deps import TOUCH_INTERVAL, UNAUTHENTICATED, Caller, app_engine
from interfaces.api.errors import ApiError, not_found
from interfaces.api.settings import get_api_settings
from pipeline.options import options_of

STATUS_READ: Final = "SELECT * FROM app_read_file(%(credential)s, %(file_id)s)"
TRANSCRIPT_READ: Final = "SELECT * FROM app_read_transcript(%(credential)s, %(file_id)s)"
PRESENT: Final = "SELECT set_config('app.credential', %(credential)s, true)"
UNAVAILABLE: Final = "the database is unavailable; try again shortly"


def _rust_loads(data: str | bytes) -> Any:
    return pydantic_core.from_json(data)


class _RustJsonb(JsonbLoader):
    """jsonb parsed by pydantic-core's parser (Rust), for the status reads' cursor only: the
    transcript read returns the whole transcript with its segments and analyses as jsonb, and
    ``json.loads`` of it was ~0.1 ms of every poll. Same values as ``json.loads`` (integers of
    any size, floats, the last of duplicate keys)."""

    _loads: Callable[[str | bytes], Any] = _rust_loads


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` serialised by pydantic-core (Rust), in a fraction of the time
    (~8 KB per AssemblyAI transcript object): the same bytes as Starlette's ``json.dumps``
    (compact, UTF-8 unescaped) for the plain JSON values the status reads answer, but for
    floats below 1e-4: ``0.00004`` and ``1e-7`` where Python writes ``4e-05`` and ``1e-07``
    (the same numbers)."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


def _caller(who: dict[str, Any], credential: str) -> Caller:
    kind = cast(Literal["session", "key"], who["kind"])
    return Caller(
        user_id=uuid.UUID(who["user_id"]),
        username=who["username"],
        role=who["role"],
        kind=kind,
        credential_id=uuid.UUID(who["credential_id"]),
        scope=who["scope"],
        credential=credential,
    )


def _stale(who: dict[str, Any]) -> tuple[bool, bool]:
    """(a session idle past the API's timeout, last use older than a minute or never).

    Since migration 009 the database refuses idle sessions itself (their own timeout); the
    API's setting is checked here too, as the general path did before, so this path never
    accepts more than it.
    """
    now = dt.datetime.fromisoformat(who["now"])
    last = who.get("last_used_at")
    last_used = dt.datetime.fromisoformat(last) if last else None
    idle = dt.timedelta(minutes=get_api_settings().session_idle_minutes)
    expired = who["kind"] == "session" and last_used is not None and last_used < now - idle
    return expired, last_used is None or last_used < now - TOUCH_INTERVAL


def read_status(
    credential: str, file_id: uuid.UUID, statement: str = STATUS_READ
) -> tuple[Caller, Any]:
    """(the caller, the file row) for ``credential``; 401 when it acts as nobody, 404 when the
    file is not visible to it. The row has :class:`db.models.AudioFile`'s attribute names
    (``statement``: :data:`STATUS_READ`, or :data:`TRANSCRIPT_READ` for the row with its
    latest transcript, redaction and analyses)."""
    record = app_engine().raw_connection()
    try:
        conn = cast(psycopg.Connection[Any], record.driver_connection)
        conn.autocommit = True  # one statement, its own transaction: no BEGIN/COMMIT trips
        try:
            with conn.cursor(row_factory=namedtuple_row) as cursor:
                cursor.adapters.register_loader("jsonb", _RustJsonb)
                cursor.execute(
                    statement, {"credential": credential, "file_id": file_id}, prepare=True
                )
                row: Any = cursor.fetchone()
            if row is None:
                raise UNAUTHENTICATED
            who: dict[str, Any] = row.who
            expired, touch = _stale(who)
            if expired:
                raise UNAUTHENTICATED
            if touch:
                conn.autocommit = False
                with conn.transaction():
                    conn.execute(PRESENT, {"credential": credential})
                    conn.execute("SELECT app_touch_credential()")
        finally:
            if not conn.closed:
                conn.autocommit = False
    except psycopg.OperationalError as error:
        record.invalidate(error)  # a broken connection leaves the pool
        raise ApiError(503, UNAVAILABLE, headers={"Retry-After": "2"}) from error
    finally:
        record.close()  # back to the pool
    found = _caller(who, credential)
    if found.kind == "key":
        from interfaces.api.limits import check_key_rate

        check_key_rate(found.credential_id)
    if row.id is None:
        raise not_found()
    return found, row


@dataclass(frozen=True)
class StoredAnalysis:
    """An analysis as :func:`interfaces.api.aai.transcript_json` reads it."""

    analysis_type: str
    result: Any


def transcript_parts(row: Any) -> tuple[Readable | None, list[StoredAnalysis]]:
    """The transcript the caller reads and its analyses, from a :data:`TRANSCRIPT_READ` row,
    by :func:`interfaces.api.compat.readable`'s rule (tests compare the two)."""
    if row.status != "completed":
        return None, []
    version: dict[str, Any] | None = row.latest
    redaction: dict[str, Any] | None = row.redaction
    if options_of(row.metadata_).redact_pii or version is None:
        if redaction is None or (
            version is not None and redaction["transcription_id"] != version["id"]
        ):
            return None, []
        confidence = version["confidence"] if version else None
        found = Readable(
            uuid.UUID(redaction["transcription_id"]), redaction["text"],
            list(redaction["segments"] or []), True,
            version["language_code"] if version else None,
            float(confidence) if confidence else None,
            version["model_name"] if version else None,
        )  # fmt: skip
    else:
        confidence = version["confidence"]
        found = Readable(
            uuid.UUID(version["id"]), version["text"], list(version["segments"] or []), False,
            version["language_code"], float(confidence) if confidence is not None else None,
            version["model_name"],
        )  # fmt: skip
    stored = (row.analyses or {}).get(str(found.transcription_id)) or []
    return found, [StoredAnalysis(a["analysis_type"], a["result"]) for a in stored]
