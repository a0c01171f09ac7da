"""AssemblyAI-compatible endpoints (``/v2/...``): code written for AssemblyAI works unchanged.

``aai.settings.base_url = "http://HOST:PORT"`` and ``aai.settings.api_key = <our API key>``: the
SDK sends the key as a bare ``Authorization`` header, which :mod:`interfaces.api.deps` accepts.
Uploads are staged (:mod:`interfaces.api.compat`), the transcript request submits them through
:func:`workers.submit.submit` with the mapped options (:mod:`interfaces.api.aai`), and every read
runs as the caller under row-level security: another user's transcript id is a 404. Answers are
200 (AssemblyAI's SDK checks for exactly that), errors ``{"error": "..."}``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.analyses import analyses_for
from db.models import Analysis, AudioFile, FileStatus, WebhookAttempt, WebhookOutbox
from interfaces.api import aai
from interfaces.api.compat import (
    Readable,
    read_file,
    readable,
    stage_upload,
    staged_path,
    visible,
)
from interfaces.api.deps import (
    UNAUTHENTICATED,
    Caller,
    Reader,
    Writer,
    credential_from,
    recording,
    unit,
)
from interfaces.api.errors import ApiError
from interfaces.api.fastread import (
    TRANSCRIPT_READ,
    FastJSONResponse,
    read_status,
    transcript_parts,
)
from interfaces.api.uploads import UPLOADERS
from pipeline.audio.sniff import sniff_fileobj
from pipeline.export import to_srt, to_vtt
from workers.submit import Outcome, submit

router = APIRouter(prefix="/v2", tags=["AssemblyAI-compatible"])

MAX_LIST = 200
STATUS_OF = {v: k for k, v in aai.STATUS.items()}


def _file_id(transcript_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(transcript_id)
    except ValueError:
        raise ApiError(404, "transcript not found") from None


@router.post(
    "/upload",
    summary="Upload audio (the raw request body); answers the upload_url to transcribe",
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                "format": "binary"}}}
        }
    },
)  # fmt: skip
async def upload(request: Request, who: Writer) -> dict[str, str]:
    token = await stage_upload(request, who)
    return {"upload_url": f"{str(request.base_url).rstrip('/')}/v2/upload/{token}"}


def _submit_staged(who: Caller, body: dict[str, Any]) -> uuid.UUID:
    if who.role not in UPLOADERS:
        raise ApiError(403, f"the role '{who.role}' may not upload files")
    audio_url = body.get("audio_url")
    if not isinstance(audio_url, str) or not audio_url:
        raise ApiError(400, "audio_url is required: the upload_url of POST /v2/upload")
    options, echo = aai.request_options(body)  # every parameter checked before any file work
    path = staged_path(who, audio_url)
    with path.open("rb") as handle:
        sniffed = sniff_fileobj(handle)
    if sniffed.format is None:
        raise ApiError(
            400, f"the upload is not audio in a supported format ({sniffed.description})"
        )
    result = submit(
        path,
        owner_id=who.user_id,
        file_name=f"upload-{path.name[:8]}.{sniffed.format}",
        options=options,
        force=True,  # as with AssemblyAI, every request is a new transcript
        transaction=recording(who),
    )
    if result.outcome is Outcome.REFUSED or result.file_id is None:
        raise ApiError(400, result.reason or "the upload was refused")
    with unit(who) as session:
        # The request echo (no secrets) for the transcript object; merged in SQL, so a worker
        # updating the same row's metadata at the same moment loses nothing.
        session.execute(
            update(AudioFile)
            .where(AudioFile.id == result.file_id)
            .values(
                metadata_=AudioFile.metadata_.op("||")(
                    func.jsonb_build_object("assemblyai", literal(echo, JSONB))
                )
            )
        )
    return result.file_id


def _webhook_status(session: Session, file_id: uuid.UUID) -> int | None:
    return session.scalars(
        select(WebhookAttempt.status_code)
        .join(WebhookOutbox, WebhookOutbox.id == WebhookAttempt.outbox_id)
        .where(WebhookOutbox.audio_file_id == file_id)
        .order_by(WebhookAttempt.started_at.desc())
        .limit(1)
    ).first()


def _transcript(session: Session, file_id: uuid.UUID) -> dict[str, Any]:
    """The transcript object of a file, read in ``session`` (the caller's policies apply)."""
    row = visible(session, file_id)
    found = readable(session, row) if row.status == FileStatus.COMPLETED.value else None
    analyses = analyses_for(session, found.transcription_id) if found is not None else []
    hook = _webhook_status(session, file_id) if (row.metadata_ or {}).get("assemblyai") else None
    return aai.transcript_json(row, found, analyses, webhook_status_code=hook)


@router.post("/transcript", summary="Transcribe an uploaded file (AssemblyAI parameters)")
async def create_transcript(
    who: Writer, body: Annotated[dict[str, Any], Body(description="AssemblyAI parameters")]
) -> dict[str, Any]:
    file_id = await run_in_threadpool(_submit_staged, who, body)
    return await run_in_threadpool(_transcript, who.session, file_id)


@router.get("/transcript/{transcript_id}", summary="A transcript: status, text, words, analyses")
async def get_transcript(request: Request, transcript_id: str) -> JSONResponse:
    # What the SDK polls until the transcript is done: one database round trip
    # (interfaces.api.fastread), one thread hop; the same answer as _transcript().
    credential = credential_from(request.headers.get("authorization"))
    if credential is None:
        raise UNAUTHENTICATED
    file_id = _file_id(transcript_id)
    try:
        who, row = await run_in_threadpool(read_status, credential, file_id, TRANSCRIPT_READ)
    except ApiError as error:
        if error.status == 404:
            raise ApiError(404, "transcript not found") from None
        raise
    request.state.caller = who
    found, analyses = transcript_parts(row)
    body = aai.transcript_json(
        row, found, cast(list[Analysis], analyses), webhook_status_code=row.webhook_status
    )
    return FastJSONResponse(body)


@router.get("/transcript", summary="The caller's transcripts, newest first")
def list_transcripts(
    request: Request,
    who: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 10,
    status: Annotated[str | None, Query(pattern="^(queued|processing|completed|error)$")] = None,
    created_on: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    before_id: str | None = None,
    after_id: str | None = None,
) -> dict[str, Any]:
    stmt = select(AudioFile).where(AudioFile.deleted_at.is_(None), AudioFile.user_id == who.user_id)
    if status is not None:
        stmt = stmt.where(AudioFile.status == STATUS_OF[status])
    if created_on is not None:
        day = dt.date.fromisoformat(created_on)
        stmt = stmt.where(func.date(func.timezone("UTC", AudioFile.created_at)) == day)
    session = who.session
    for given, older in ((before_id, True), (after_id, False)):
        if given is None:
            continue
        anchor = session.get(AudioFile, _file_id(given))
        if anchor is None:
            raise ApiError(400, f"{'before_id' if older else 'after_id'} names no transcript")
        at, ident = AudioFile.created_at, AudioFile.id
        if older:
            newer_or_same = or_(at < anchor.created_at,
                                and_(at == anchor.created_at, ident < anchor.id))  # fmt: skip
        else:
            newer_or_same = or_(at > anchor.created_at,
                                and_(at == anchor.created_at, ident > anchor.id))  # fmt: skip
        stmt = stmt.where(newer_or_same)
    rows = list(
        session.scalars(
            stmt.order_by(AudioFile.created_at.desc(), AudioFile.id.desc()).limit(limit)
        )
    )
    base = str(request.base_url).rstrip("/")
    items = []
    for row in rows:
        echo = (row.metadata_ or {}).get("assemblyai") or {}
        items.append(
            {
                "id": str(row.id),
                "resource_url": f"{base}/v2/transcript/{row.id}",
                "status": aai.STATUS.get(row.status, "processing"),
                "created": row.created_at.isoformat(),
                "completed": row.processing_completed_at.isoformat()
                if row.status == "completed" and row.processing_completed_at
                else None,
                "audio_url": echo.get("audio_url") or f"{base}/api/v1/files/{row.id}",
                "error": row.error_message if row.status == "failed" else None,
            }
        )
    current = str(request.url)
    return {
        "page_details": {
            "limit": limit,
            "result_count": len(items),
            "current_url": current,
            "prev_url": f"{base}/v2/transcript?limit={limit}&before_id={items[-1]['id']}"
            if len(items) == limit
            else None,
            "next_url": f"{base}/v2/transcript?limit={limit}&after_id={items[0]['id']}"
            if items and (before_id or after_id)
            else None,
        },
        "transcripts": items,
    }


@router.delete("/transcript/{transcript_id}", summary="Delete a transcript (soft delete)")
def delete_transcript(who: Writer, transcript_id: str) -> dict[str, Any]:
    file_id = _file_id(transcript_id)
    body = _transcript(who.session, file_id)
    changed = who.session.execute(
        update(AudioFile)
        .where(AudioFile.id == file_id, AudioFile.deleted_at.is_(None))
        .values(deleted_at=func.now())
        .returning(AudioFile.id)
    ).first()  # committed with the request's transaction, before the answer
    if changed is None:
        raise ApiError(403, f"the role '{who.role}' may not delete this transcript")
    body.update(text="Deleted by user.", words=[], utterances=None, summary=None)
    body.update(sentiment_analysis_results=None, entities=None, auto_highlights_result=None)
    return body


def _completed(who: Caller, transcript_id: str) -> tuple[AudioFile, Readable]:
    view = read_file(who.session, _file_id(transcript_id))
    if view.row.status != FileStatus.COMPLETED.value or view.transcript is None:
        raise ApiError(400, f"transcript is not completed (status: {aai.STATUS[view.row.status]})")
    return view.row, view.transcript


@router.get("/transcript/{transcript_id}/sentences", summary="The transcript in sentences")
def sentences(who: Reader, transcript_id: str) -> dict[str, Any]:
    row, version = _completed(who, transcript_id)
    duration = float(row.duration_seconds) if row.duration_seconds else None
    return aai.sentences_json(version, duration, paragraphs=False)


@router.get("/transcript/{transcript_id}/paragraphs", summary="The transcript in paragraphs")
def paragraphs(who: Reader, transcript_id: str) -> dict[str, Any]:
    row, version = _completed(who, transcript_id)
    duration = float(row.duration_seconds) if row.duration_seconds else None
    return aai.sentences_json(version, duration, paragraphs=True)


@router.get("/transcript/{transcript_id}/srt", response_class=PlainTextResponse,
            summary="SubRip subtitles")  # fmt: skip
def srt(who: Reader, transcript_id: str, chars_per_caption: int | None = None) -> Response:
    _, version = _completed(who, transcript_id)
    return PlainTextResponse(to_srt(version.segments or []), media_type="text/plain")


@router.get("/transcript/{transcript_id}/vtt", response_class=PlainTextResponse,
            summary="WebVTT subtitles")  # fmt: skip
def vtt(who: Reader, transcript_id: str, chars_per_caption: int | None = None) -> Response:
    _, version = _completed(who, transcript_id)
    return PlainTextResponse(to_vtt(version.segments or []), media_type="text/plain")
