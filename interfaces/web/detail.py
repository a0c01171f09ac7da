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
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from db.analyses import analyses_for
from db.models import Transcription
from db.transcripts import list_versions
from interfaces.api import views
from interfaces.api.errors import ApiError
from interfaces.api.routes.files import Retranscription, export, retranscribe, visible_file
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


def _chosen(versions: list[Transcription], version: int | None) -> Transcription | None:
    if not versions:
        return None
    if version is None:
        return next((v for v in versions if v.is_latest), versions[-1])
    for row in versions:
        if row.version == version:
            return row
    raise ApiError(404, f"this file has no transcript version {version}")


def _analyses(who: Any, chosen: Transcription | None) -> dict[str, dict[str, Any]]:
    if chosen is None:
        return {}
    return {a.analysis_type: a.result for a in analyses_for(who.session, chosen.id)}


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


def _diff(
    versions: list[Transcription], compare: int | None, against: int | None
) -> dict[str, Any] | None:
    if compare is None or against is None:
        return None
    by_number = {v.version: v for v in versions}
    if compare not in by_number or against not in by_number:
        raise ApiError(404, "this file has no such transcript version")
    old, new = by_number[compare], by_number[against]
    return {
        "old": compare,
        "new": against,
        "parts": tx.word_diff(old.transcription_text or "", new.transcription_text or ""),
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
    queued: bool = False,
) -> HTMLResponse:
    row = visible_file(who.session, file_id)
    detail = views.file_detail(row)
    versions = list_versions(who.session, file_id)
    chosen = _chosen(versions, version)
    found = _analyses(who, chosen)
    words = tx.words_of(chosen.segments or []) if chosen is not None else []
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
            "turns": tx.turns(words),
            "keywords": keywords,
            "entities": entities,
            "summary": summary.get("summary") or "",
            "summary_note": summary.get("note") or "",
            "sentiment": found.get("sentiment"),
            "conversation": found.get("conversation"),
            "diff": _diff(versions, compare, against),
            "player": player,
            "engines": ENGINES,
            "queued": queued,
            "options": _shown_options(row.metadata_),
        },
        who=who,
    )


@router.get("/files/{file_id}/audio")
def audio(who: ScriptUser, file_id: uuid.UUID) -> Response:
    """The stored recording, for the signed-in user who may see the file (Range supported)."""
    row = visible_file(who.session, file_id)
    stack = contextlib.ExitStack()
    try:
        path: Path = stack.enter_context(open_local(row.file_path, get_settings()))
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
) -> Response:
    """The API's export, for the page's download links."""
    return export(who, file_id, fmt, version)


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
