"""``/files``: the caller's files (filters, keyset pages, live status) and uploads.

The list is the API's (:func:`interfaces.api.routes.files.list_files`), the live status is the
API's event stream for the caller's files (:func:`interfaces.api.routes.live.queue_events`),
and an upload goes through the API's submit path (:func:`interfaces.api.uploads.run_submit`, so
:func:`workers.submit.submit`). The page's script sends each dropped file on its own request
(per-file progress) with the form's options; without a script the form posts the same fields.
When a status event arrives the script asks for the changed rows as HTML (``/files/rows``),
rendered by the same template as the page, so what a live row shows is what a reload shows.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from db.models import AudioFile, AudioFormat, FileStatus
from interfaces.api import views
from interfaces.api.deps import Caller
from interfaces.api.errors import ApiError
from interfaces.api.routes.files import list_files
from interfaces.api.routes.live import queue_events
from interfaces.api.uploads import UPLOADERS, parse_job_options, run_submit, submitted
from interfaces.web.render import TEMPLATES, WebRoute, page
from interfaces.web.session import (
    PageUser,
    ScriptUser,
    StreamUser,
    check_csrf,
    csrf_token,
    session_token,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)

PAGE_SIZE = 25
MAX_FILES_PER_FORM = 20
MAX_ROWS = 50
ENGINES = ("faster-whisper", "openai-whisper")
CHANNEL_MODES = ("auto", "split", "mix")
# Form fields that map one to one onto JobOptions; the rest are handled below.
TEXT_OPTIONS = ("engine", "model", "language", "vocabulary", "channels", "channel_labels")


def options_from_form(form: FormData) -> dict[str, Any]:
    """JobOptions fields from the upload form (empty fields mean "the default")."""
    chosen: dict[str, Any] = {}
    for name in TEXT_OPTIONS:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            chosen[name] = value.strip()
    if chosen.get("channels") == "auto":
        del chosen["channels"]
    speakers = form.get("speakers")
    if isinstance(speakers, str) and speakers.strip():
        if not speakers.strip().isdigit():
            raise ApiError(400, "speakers must be a whole number")
        chosen["speakers"] = int(speakers)
    if form.get("redact_pii") in {"on", "true", "1"}:
        chosen["redact_pii"] = True
    return chosen


def _with_errors(who: Caller, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """List items plus the error message of the failed ones (the list shape has none)."""
    failed = [uuid.UUID(i["id"]) for i in items if i["status"] == FileStatus.FAILED.value]
    errors: dict[str, str | None] = {}
    if failed:
        rows = who.session.execute(
            select(AudioFile.id, AudioFile.error_message).where(AudioFile.id.in_(failed))
        )
        errors = {str(ident): message for ident, message in rows}
    return [{**i, "error": errors.get(i["id"])} for i in items]


def _choice(enum: type[FileStatus] | type[AudioFormat], value: str) -> Any:
    """A filter's value ("" from the form's "all" means no filter)."""
    if not value:
        return None
    try:
        return enum(value)
    except ValueError as error:
        raise ApiError(400, f"unknown filter value '{value[:40]}'") from error


def _page_url(status: str, file_format: str, cursor: str | None = None) -> str:
    query = {"status": status, "format": file_format, "cursor": cursor or ""}
    kept = {k: v for k, v in query.items() if v}
    return "/files" + (f"?{urlencode(kept)}" if kept else "")


@router.get("/files")
def files_page(
    request: Request,
    who: PageUser,
    status: Annotated[str, Query(max_length=20)] = "",
    file_format: Annotated[str, Query(alias="format", max_length=20)] = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    listed = list_files(
        who,
        status=_choice(FileStatus, status),
        file_format=_choice(AudioFormat, file_format),
        limit=PAGE_SIZE,
        cursor=cursor or None,
    )
    next_cursor = listed["next_cursor"]
    return page(
        request,
        "files.html",
        {
            "items": _with_errors(who, listed["items"]),
            "next_url": _page_url(status, file_format, next_cursor) if next_cursor else None,
            "first_url": _page_url(status, file_format) if cursor else None,
            "first_page": not cursor,
            "status": status,
            "format": file_format,
            "statuses": [s.value for s in FileStatus],
            "formats": [f.value for f in AudioFormat],
            "engines": ENGINES,
            "channel_modes": CHANNEL_MODES,
            "may_upload": who.role in UPLOADERS,
        },
        who=who,
    )


@router.get("/files/rows")
def rows_fragment(
    request: Request,
    who: ScriptUser,
    id: Annotated[list[uuid.UUID], Query()],
) -> HTMLResponse:
    """The table rows of the given files (the live updates), in the page's own markup."""
    wanted = id[:MAX_ROWS]
    rows = who.session.scalars(
        select(AudioFile)
        .where(AudioFile.id.in_(wanted), AudioFile.deleted_at.is_(None))
        .order_by(AudioFile.created_at.desc(), AudioFile.id.desc())
    )
    items = [views.file_summary(r) | {"error": r.error_message} for r in rows]
    return TEMPLATES.TemplateResponse(request, "_rows.html", {"items": items})


@router.get("/files/events")
async def files_events(who: StreamUser, request: Request) -> EventSourceResponse:
    """The API's live stream of the caller's files, authenticated by the page's cookie."""
    return await queue_events(who, request)


@router.post("/files/upload")
async def upload(request: Request, who: ScriptUser) -> Response:
    """One or more files from the upload form (the page's script sends one per request)."""
    token = session_token(request)
    assert token is not None  # ScriptUser found a live session in it
    form = await request.form(max_files=MAX_FILES_PER_FORM, max_fields=20)
    try:
        await check_csrf(request, csrf_token(token))
        if who.role not in UPLOADERS:
            raise ApiError(403, f"the role '{who.role}' may not upload files")
        options = parse_job_options(options_from_form(form))
        force = form.get("force") in {"on", "true", "1"}
        uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile) and f.filename]
        if not uploads:
            raise ApiError(400, "choose at least one audio file")
        answers = []
        for part in uploads:
            result = await run_in_threadpool(
                run_submit, who, part.file, file_name=part.filename or "", options=options,
                force=force,
            )  # fmt: skip
            answers.append(submitted(result))
    finally:
        await form.close()
    if "application/json" in request.headers.get("accept", ""):
        status = answers[0][0] if len(answers) == 1 else 200
        return JSONResponse({"items": [body for _, body in answers]}, status_code=status)
    return RedirectResponse("/files", status_code=303)
