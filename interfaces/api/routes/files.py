"""Native API: files, their transcripts, analyses and exports, search, re-transcription.

Every handler reads and writes inside :func:`interfaces.api.deps.unit`, acting with the caller's
credential, so row-level security decides what the caller sees: another user's file id gives the
same 404 as an id that does not exist. Soft-deleted files are gone for the API.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.models import AudioFile, AudioFormat, FileStatus, Transcription, TranscriptRedaction
from db.redactions import latest_redaction, redactions_of_file
from db.transcripts import MAX_SEARCH_RESULTS, latest_transcription, list_versions
from db.transcripts import search_transcripts as search_db
from interfaces.api import views
from interfaces.api.deps import UNAUTHENTICATED, Caller, Reader, Writer, credential_from
from interfaces.api.errors import ApiError, not_found
from interfaces.api.fastread import FastJSONResponse, read_status
from interfaces.api.uploads import receive_upload, submitted
from pipeline.export import EXPORT_FORMATS, ExportFormat, render

router = APIRouter(prefix="/api/v1", tags=["files"])

MAX_PAGE = 200
EXPORT_TYPES: dict[str, str] = {
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def visible_file(session: Session, file_id: uuid.UUID) -> AudioFile:
    """The file if the caller may see it and it is not deleted, else the one 404."""
    row = session.get(AudioFile, file_id)
    if row is None or row.deleted_at is not None:
        raise not_found()
    return row


def _denied(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) == "42501"


# --- upload -----------------------------------------------------------------------------------


@router.post(
    "/files",
    status_code=201,
    summary="Upload audio (multipart field 'file', or the raw body) and queue it",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "options": {"type": "string", "description": "JobOptions as JSON"},
                        },
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def upload(
    request: Request,
    who: Writer,
    file_name: Annotated[str | None, Query(max_length=1024)] = None,
    options: Annotated[str | None, Query(description="JobOptions as a JSON object")] = None,
    force: bool = False,
) -> JSONResponse:
    result = await receive_upload(request, who, file_name=file_name, options=options, force=force)
    status, body = submitted(result)
    return JSONResponse(body, status_code=status)


# --- list and read ----------------------------------------------------------------------------


def _cursor(row: AudioFile) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, ident = raw.partition("|")
        return dt.datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "invalid cursor; pass the next_cursor of the previous page") from error


@router.get("/files", summary="List files, newest first (keyset pages)")
def list_files(
    who: Reader,
    status: FileStatus | None = None,
    file_format: Annotated[AudioFormat | None, Query(alias="format")] = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    owner: Annotated[uuid.UUID | None, Query(description="Staff: one user's files")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    stmt = select(AudioFile).where(AudioFile.deleted_at.is_(None))
    if not who.is_staff or owner is None:
        # Staff see everyone's files under the policies; without ``owner`` they list their own
        # (the common case, and the one the (user_id, created_at) index serves).
        owner = who.user_id if not who.is_staff or owner is None else owner
    stmt = stmt.where(AudioFile.user_id == owner)
    if status is not None:
        stmt = stmt.where(AudioFile.status == status.value)
    if file_format is not None:
        stmt = stmt.where(AudioFile.file_format == file_format.value)
    if created_after is not None:
        stmt = stmt.where(AudioFile.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(AudioFile.created_at < created_before)
    if cursor is not None:
        before, before_id = _parse_cursor(cursor)
        stmt = stmt.where(
            AudioFile.created_at <= before,
            or_(
                AudioFile.created_at < before,
                and_(AudioFile.created_at == before, AudioFile.id < before_id),
            ),
        )
    stmt = stmt.order_by(AudioFile.created_at.desc(), AudioFile.id.desc()).limit(limit + 1)
    rows = list(who.session.scalars(stmt))
    page, more = rows[:limit], len(rows) > limit
    return {
        "items": [views.file_summary(r) for r in page],
        "next_cursor": _cursor(page[-1]) if more else None,
    }


@router.get("/files/{file_id}", summary="One file: status, stage, metadata, timings, error")
async def get_file(request: Request, file_id: uuid.UUID) -> JSONResponse:
    # The hottest read (status polling): one database round trip (interfaces.api.fastread),
    # one thread hop, and the dict is JSON already (no FastAPI re-encoding).
    credential = credential_from(request.headers.get("authorization"))
    if credential is None:
        raise UNAUTHENTICATED
    who, row = await run_in_threadpool(read_status, credential, file_id)
    request.state.caller = who
    return FastJSONResponse(views.file_detail(row))


def _version(session: Session, file_id: uuid.UUID, version: int | None) -> Transcription:
    if version is None:
        found = latest_transcription(session, file_id)
        if found is None:
            raise ApiError(404, "this file has no transcript yet")
        return found
    for row in list_versions(session, file_id):
        if row.version == version:
            return row
    raise ApiError(404, f"this file has no transcript version {version}")


def _redaction(
    session: Session, file_id: uuid.UUID, version: int | None
) -> TranscriptRedaction | None:
    if version is None:
        return latest_redaction(session, file_id)
    return next((r for r in redactions_of_file(session, file_id) if r.version == version), None)


RedactedQuery = Annotated[
    bool, Query(description="The redacted form (redact_pii jobs); 404 when there is none")
]


def _readable(
    session: Session, file_id: uuid.UUID, version: int | None, redacted: bool
) -> Transcription | TranscriptRedaction:
    """The version the caller asked for, in the form they may read: the unredacted row when
    migration 007 lets them and they did not ask for ``redacted``, else its redacted form."""
    found = _redaction(session, file_id, version)
    try:
        chosen: Transcription | None = _version(session, file_id, version)
    except ApiError:
        if found is None:
            raise
        chosen = None  # hidden by the policies: this caller reads the redacted form
    if chosen is not None and found is not None and found.transcription_id != chosen.id:
        found = None  # a newer version whose redaction is not written yet
    if redacted and found is None:
        raise ApiError(404, "this transcript has no redacted form (submitted without redact_pii)")
    if redacted or chosen is None:
        assert found is not None
        return found
    return chosen


def _report(
    session: Session, row: AudioFile, readable: Transcription | TranscriptRedaction
) -> dict[str, Any]:
    if isinstance(readable, TranscriptRedaction):
        return views.redacted_report(session, row, readable)
    return views.report(session, row, readable)


@router.get("/files/{file_id}/transcript", summary="The latest transcript, or ?version=N")
def get_transcript(
    who: Reader,
    file_id: uuid.UUID,
    version: Annotated[int | None, Query(ge=1)] = None,
    redacted: RedactedQuery = False,
) -> dict[str, Any]:
    visible_file(who.session, file_id)
    readable = _readable(who.session, file_id, version, redacted)
    if isinstance(readable, TranscriptRedaction):
        return views.redacted_transcript(readable)
    return views.transcript(readable)


@router.get("/files/{file_id}/versions", summary="Every transcript version, oldest first")
def get_versions(who: Reader, file_id: uuid.UUID) -> dict[str, Any]:
    visible_file(who.session, file_id)
    return {"items": [views.version_summary(v) for v in list_versions(who.session, file_id)]}


@router.get("/files/{file_id}/analyses", summary="Analyses of the latest (or ?version=) transcript")
def get_analyses(
    who: Reader,
    file_id: uuid.UUID,
    version: Annotated[int | None, Query(ge=1)] = None,
    redacted: RedactedQuery = False,
) -> dict[str, Any]:
    session = who.session
    row = visible_file(session, file_id)
    found = _report(session, row, _readable(session, file_id, version, redacted))
    transcription = found["transcription"]
    return {"transcription_id": transcription["id"], "version": transcription["version"],
            "redacted": transcription["redacted"], "items": found["analyses"]}  # fmt: skip


@router.get(
    "/files/{file_id}/export/{fmt}",
    summary="Export the transcript as txt, json, srt or vtt",
    response_class=PlainTextResponse,
)
def export(
    who: Reader,
    file_id: uuid.UUID,
    fmt: Literal["txt", "json", "srt", "vtt"],
    version: Annotated[int | None, Query(ge=1)] = None,
    redacted: RedactedQuery = False,
) -> Response:
    assert fmt in EXPORT_FORMATS
    session = who.session
    row = visible_file(session, file_id)
    found = _report(session, row, _readable(session, file_id, version, redacted))
    chosen: ExportFormat = fmt
    return Response(
        render(chosen, found),
        media_type=EXPORT_TYPES[fmt],
        # The id, not the user's file name: no header injection, no path games.
        headers={"Content-Disposition": f'attachment; filename="{file_id}.{fmt}"'},
    )


@router.get("/search", summary="Full-text search of the latest transcripts, with snippets")
def search(
    who: Reader,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 20,
) -> dict[str, Any]:
    session = who.session
    hits = search_db(session, q, limit=limit)
    ids = [h.audio_file_id for h in hits]
    deleted = set(
        session.scalars(
            select(AudioFile.id).where(AudioFile.id.in_(ids), AudioFile.deleted_at.is_not(None))
        )
    ) if ids else set()  # fmt: skip
    return {
        "query": q,
        "highlight": {"start": "**", "stop": "**"},
        "items": [
            {
                "file_id": str(h.audio_file_id),
                "transcription_id": str(h.transcription_id),
                "file_name": h.file_name,
                "rank": h.rank,
                "snippet": h.snippet,
            }
            for h in hits
            if h.audio_file_id not in deleted
        ],
    }


# --- changes ------------------------------------------------------------------------------------


class Retranscription(BaseModel):
    """What a new transcription version may change (the rest of the options stay)."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["faster-whisper", "openai-whisper"] | None = None
    model: str | None = Field(None, max_length=200)


@router.post(
    "/files/{file_id}/retranscribe", status_code=202, summary="Queue a new transcript version"
)
def retranscribe(
    who: Writer, file_id: uuid.UUID, body: Retranscription | None = None
) -> dict[str, Any]:
    from pipeline.runner import request_retranscription

    wanted = body or Retranscription()
    try:
        session = who.session
        visible_file(session, file_id)
        try:
            queued = request_retranscription(
                session, file_id, engine=wanted.engine, model=wanted.model
            )
        except LookupError as error:
            # Visible but not lockable for update: the role may read, not change it.
            raise ApiError(403, f"the role '{who.role}' may not change this file") from error
    except DBAPIError as error:
        if _denied(error):
            raise ApiError(403, f"the role '{who.role}' may not change this file") from error
        raise
    if not queued:
        raise ApiError(409, "the file is still being processed; try again when it is finished")
    from workers.tasks import transcribe

    who.session.commit()  # the row says "queued" before the message can reach a worker
    transcribe.delay(str(file_id))
    return {"id": str(file_id), "queued": True}


def _conditional_update(
    who: Caller, file_id: uuid.UUID, condition: Any, values: dict[str, Any], conflict: str
) -> dict[str, Any]:
    try:
        session = who.session
        visible_file(session, file_id)
        changed = session.execute(
            update(AudioFile)
            .where(AudioFile.id == file_id, AudioFile.deleted_at.is_(None), condition)
            .values(**values)
            .returning(AudioFile.id)
        ).first()
        if changed is None:
            # Visible, so either the condition failed or the role may not update the row:
            # a second look (FOR UPDATE applies the UPDATE policy) tells them apart.
            lockable = session.execute(
                select(AudioFile.id).where(AudioFile.id == file_id).with_for_update()
            ).first()
            if lockable is None:
                raise ApiError(403, f"the role '{who.role}' may not change this file")
            raise ApiError(409, conflict)
        row = session.get(AudioFile, file_id, populate_existing=True)
        assert row is not None
        return views.file_detail(row)
    except DBAPIError as error:
        if _denied(error):
            raise ApiError(403, f"the role '{who.role}' may not change this file") from error
        raise


@router.post("/files/{file_id}/cancel", summary="Cancel a file no worker has started yet")
def cancel(who: Writer, file_id: uuid.UUID) -> dict[str, Any]:
    return _conditional_update(
        who,
        file_id,
        and_(AudioFile.status == FileStatus.PENDING.value, AudioFile.lease_expires_at.is_(None)),
        {
            "status": FileStatus.FAILED.value,
            "error_message": f"cancelled by {who.username} before processing started",
            "error_details": {"cancelled": True, "by": str(who.user_id)},
        },
        "only a pending file that no worker has started can be cancelled",
    )


@router.delete("/files/{file_id}", status_code=204, summary="Soft-delete a file")
def delete(who: Writer, file_id: uuid.UUID) -> Response:
    _conditional_update(
        who, file_id, text("true"), {"deleted_at": text("now()")}, "the file is already deleted"
    )
    return Response(status_code=204)


# --- queue ----------------------------------------------------------------------------------


@router.get("/stats", summary="Queue statistics (the numbers of `teleai stats --json`)")
def stats(who: Reader) -> dict[str, Any]:
    if not who.is_staff:
        raise ApiError(403, "queue statistics cover every user's files: staff roles only")
    from interfaces.cli.stats import collect_stats

    # In the caller's transaction: the policies decide which files count (staff see every file,
    # admins the soft-deleted ones too), not this process's login.
    result: dict[str, Any] = collect_stats(session=who.session)
    return result
