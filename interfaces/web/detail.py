"""``/files/{id}``: the player and the transcript side by side, the analyses, versions and their
word diff, downloads, re-transcription; and ``/files/{id}/audio``, the stored recording.

Everything is read as the signed-in user through the API's functions (``visible_file``: another
user's file is the same "not found" as an id that does not exist). The audio route streams the
stored copy through :func:`pipeline.storage.open_local` (for object storage, a temporary local
copy that lives as long as the response) with ``Range`` support (Starlette's ``FileResponse``
answers ``206 Partial Content``), which is what lets the player seek.
"""

from __future__ import annotations

import contextlib
import mimetypes
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from db.models import AudioFile
from db.redactions import redactions_of_file
from db.transcripts import list_versions
from interfaces.api import views
from interfaces.api.errors import ApiError
from interfaces.api.routes import files as api_files
from interfaces.api.routes.files import Retranscription, retranscribe, visible_file
from interfaces.api.routes.live import file_events
from interfaces.web import transcript as tx
from interfaces.web.files import ENGINES
from interfaces.web.render import WebRoute, page
from interfaces.web.session import CsrfChecked, PageUser, ScriptUser
from pipeline.errors import PipelineError
from pipeline.options import options_of
from pipeline.settings import get_settings
from pipeline.storage import open_local

router = APIRouter(route_class=WebRoute, include_in_schema=False)

MAX_TERMS = 15


def may_read_unredacted(session: Session, file_id: uuid.UUID) -> bool:
    """Migration 007's rule, asked of the database: False for a ``redact_pii`` file the caller
    may only read (and hear) in its redacted form."""
    found = session.execute(
        text("SELECT pii_unredacted_visible(:id)"), {"id": file_id}
    ).scalar_one()
    return bool(found)


def _readable_report(
    session: Session, row: AudioFile, version: int | None, redacted: bool
) -> dict[str, Any] | None:
    """The API's report of the chosen version in the form the caller may (or asked to) read;
    None while the file has no transcript."""
    try:
        readable = api_files._readable(session, row.id, version, redacted)
    except ApiError as error:
        if error.status == 404 and version is None and not redacted:
            return None
        raise
    return api_files._report(session, row, readable)


def _versions(
    session: Session, file_id: uuid.UUID, redacted: bool
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Every version the caller may read (its list row, its text), redacted where they must be
    or asked to be; oldest first."""
    rows: list[dict[str, Any]] = []
    texts: dict[int, str] = {}
    if not redacted:
        for v in list_versions(session, file_id):
            rows.append(views.version_summary(v))
            texts[v.version] = v.transcription_text or ""
    if not rows:
        redactions = redactions_of_file(session, file_id)
        for r in redactions:
            rows.append(views.redacted_transcript(r) | {"is_latest": r is redactions[-1]})
            texts[r.version] = r.redacted_text
    return rows, texts


def _terms(
    found: dict[str, dict[str, Any]], words: list[tx.Word]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    keywords = [
        {
            "text": k["keyword"],
            "score": k.get("score"),
            "times": tx.occurrences(k["keyword"], words),
        }
        for k in (found.get("keywords") or {}).get("keywords", [])[:MAX_TERMS]
        if isinstance(k, dict) and k.get("keyword")
    ]
    seen: set[tuple[str, str]] = set()
    entities = []
    for item in (found.get("entities") or {}).get("entities", []):
        if not isinstance(item, dict) or not item.get("text"):
            continue
        key = (str(item["text"]).lower(), str(item.get("label", "")))
        if key in seen:
            continue
        seen.add(key)
        entities.append({"text": item["text"], "label": item.get("label", ""),
                         "times": tx.occurrences(str(item["text"]), words)})  # fmt: skip
        if len(entities) >= MAX_TERMS:
            break
    return keywords, entities


def _diff(texts: dict[int, str], compare: int | None, against: int | None) -> dict[str, Any] | None:
    if compare is None or against is None:
        return None
    if compare not in texts or against not in texts:
        raise ApiError(404, "this file has no such transcript version")
    return {
        "old": compare,
        "new": against,
        "parts": tx.word_diff(texts[compare], texts[against]),
    }


def _shown_options(metadata: dict[str, Any]) -> dict[str, Any]:
    """The job's options as they may be shown (a webhook's secret header value masked)."""
    try:
        return options_of(metadata).public()
    except ValidationError:  # written by an older version: show nothing rather than fail
        return {}


@router.get("/files/{file_id}")
def file_page(
    request: Request,
    who: PageUser,
    file_id: uuid.UUID,
    version: Annotated[int | None, Query(ge=1)] = None,
    compare: Annotated[int | None, Query(ge=1)] = None,
    against: Annotated[int | None, Query(ge=1)] = None,
    redacted: bool = False,
    queued: bool = False,
) -> HTMLResponse:
    session = who.session
    row = visible_file(session, file_id)
    detail = views.file_detail(row)
    unredacted_ok = may_read_unredacted(session, file_id)
    report = _readable_report(session, row, version, redacted)
    chosen = report["transcription"] if report else None
    shown_redacted = bool(chosen and chosen.get("redacted"))
    versions, texts = _versions(session, file_id, shown_redacted)
    found = {a["analysis_type"]: a["result"] for a in (report or {}).get("analyses", [])}
    words = tx.words_of(chosen["segments"] or []) if chosen else []
    keywords, entities = _terms(found, words)
    summary = found.get("summary") or {}
    player = {
        "file_id": str(file_id),
        "status": row.status,
        "duration": views.jsonable(row.duration_seconds),
        "sentiment": tx.sentiment_points(found.get("sentiment")),
    }
    return page(
        request,
        "file.html",
        {
            "file": detail,
            "versions": versions,
            "chosen": chosen,
            "redacted": shown_redacted,
            # Someone who may read both forms can switch; the others only ever get one.
            "can_switch": unredacted_ok and (shown_redacted or _has_redaction(session, file_id)),
            "audio_query": "?redacted=true" if shown_redacted else "",
            "turns": tx.turns(words),
            "keywords": keywords,
            "entities": entities,
            "summary": summary.get("summary") or "",
            "summary_note": summary.get("note") or "",
            "sentiment": found.get("sentiment"),
            "conversation": found.get("conversation"),
            "diff": _diff(texts, compare, against),
            "player": player,
            "engines": ENGINES,
            "queued": queued,
            "options": _shown_options(row.metadata_),
        },
        who=who,
    )


def _has_redaction(session: Session, file_id: uuid.UUID) -> bool:
    return bool(redactions_of_file(session, file_id))


def audio_ref(session: Session, row: AudioFile, redacted: bool) -> str:
    """Which stored copy to play: the redacted copy when asked or when the caller may only
    hear that (a ``redact_pii`` file's recording holds the personal data the text hides)."""
    restricted = not may_read_unredacted(session, row.id)
    if redacted or restricted:
        copies = [r.audio_path for r in redactions_of_file(session, row.id) if r.audio_path]
        if copies:
            return copies[-1]
        if restricted:
            raise ApiError(
                403,
                "this call's recording holds personal data and has no redacted copy (submit "
                "with redact_audio for one); its redacted transcript is readable",
            )
    return row.file_path


@router.get("/files/{file_id}/audio")
def audio(who: ScriptUser, file_id: uuid.UUID, redacted: bool = False) -> Response:
    """The stored recording, for the signed-in user who may see the file (Range supported)."""
    row = visible_file(who.session, file_id)
    ref = audio_ref(who.session, row, redacted)
    stack = contextlib.ExitStack()
    try:
        path: Path = stack.enter_context(open_local(ref, get_settings()))
        if not path.is_file():
            raise ApiError(404, "the stored audio of this file is gone (retention or deletion)")
    except PipelineError as error:
        stack.close()
        raise ApiError(404, f"the stored audio cannot be read: {error}") from error
    except BaseException:
        stack.close()
        raise
    media_type = row.mime_type or mimetypes.guess_type(f"x.{row.file_format}")[0]
    return FileResponse(
        path,
        media_type=media_type or "application/octet-stream",
        background=BackgroundTask(stack.close),
        headers={"Cache-Control": "private, no-store"},
        content_disposition_type="inline",
    )


@router.get("/files/{file_id}/export/{fmt}")
def download(
    who: ScriptUser,
    file_id: uuid.UUID,
    fmt: Literal["txt", "json", "srt", "vtt"],
    version: Annotated[int | None, Query(ge=1)] = None,
    redacted: bool = False,
) -> Response:
    """The API's export, for the page's download links."""
    return api_files.export(who, file_id, fmt, version, redacted)


@router.get("/files/{file_id}/events")
async def events(who: ScriptUser, file_id: uuid.UUID, request: Request) -> EventSourceResponse:
    """The API's live stream of one file (the page reloads itself when it completes)."""
    return await file_events(who, file_id, request)


@router.post("/files/{file_id}/retranscribe", dependencies=[CsrfChecked])
def retranscribe_file(
    who: PageUser,
    file_id: uuid.UUID,
    engine: Annotated[str, Form(max_length=50)] = "",
    model: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if engine and engine not in ENGINES:
        raise ApiError(400, f"unknown engine '{engine}'")
    wanted = Retranscription.model_validate(
        {"engine": engine or None, "model": model.strip() or None}
    )
    retranscribe(who, file_id, wanted)
    return RedirectResponse(f"/files/{file_id}?queued=true", status_code=303)
