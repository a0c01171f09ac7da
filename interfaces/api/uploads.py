"""Uploads: the request body streamed to a temporary file, then the one submit path.

Nothing holds a whole upload in memory: a raw body is written to a temporary file chunk by chunk
as it arrives (``TELEAI_API_UPLOAD_CHUNK_BYTES`` at a time, the writes off the event loop), and a
multipart body is parsed as a stream by Starlette / python-multipart, which spools the file part
to disk past 1 MiB. The size limit is enforced while bytes arrive (:mod:`interfaces.api.bodylimit`).
The temporary file is then handed to :func:`workers.submit.submit` as a stream, exactly as the CLI
submits, and its row is recorded as the application role acting with the caller's credential
(:func:`interfaces.api.deps.recording`): since migration 009 the database makes the acting user
the owner and refuses roles that may not own files (viewers) and read-only keys, so a process
without the caller's credential cannot create a file for them. The role check here only gives
the clearer 403 before a byte is read.
Temporary files live in ``TMPDIR`` and are removed when the request ends, whatever happened.
"""

from __future__ import annotations

import json
import tempfile
from typing import IO, Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from interfaces.api.deps import Caller, recording
from interfaces.api.errors import ApiError
from interfaces.api.settings import get_api_settings
from pipeline.options import InvalidOptions, JobOptions, parse_options
from workers.submit import Outcome, SubmitResult, submit

RAW_TYPES = ("application/octet-stream", "audio/", "video/webm", "video/mp4", "video/ogg")
MAX_FORM_FIELDS = 20
# The roles whose own files the policies of 002 and 009 let them create (viewers only read).
UPLOADERS = frozenset({"admin", "manager", "analyst"})


def parse_job_options(raw: str | dict[str, Any] | None) -> JobOptions:
    """Options from a JSON object (string or parsed), else 400 naming what is wrong."""
    if raw is None or raw == "":
        return JobOptions()
    value: Any = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ApiError(400, f"options must be a JSON object: {error.msg}") from error
    if not isinstance(value, dict):
        raise ApiError(400, "options must be a JSON object")
    try:
        return parse_options(value)
    except InvalidOptions as error:
        raise ApiError(400, error.message) from error


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_raw(media_type: str) -> bool:
    return any(media_type == t or (t.endswith("/") and media_type.startswith(t)) for t in RAW_TYPES)


async def spool_body(request: Request) -> IO[bytes]:
    """The raw request body in a temporary file (rewound), written in chunks."""
    chunk = get_api_settings().upload_chunk_bytes
    spool = tempfile.TemporaryFile(prefix="teleai-upload-")  # noqa: SIM115 - returned open
    buffer = bytearray()
    try:
        async for piece in request.stream():
            buffer += piece
            if len(buffer) >= chunk:
                await run_in_threadpool(spool.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await run_in_threadpool(spool.write, bytes(buffer))
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def file_name_from(request: Request, given: str | None) -> str | None:
    """The upload's name: ``?file_name=``, else ``X-File-Name``, else Content-Disposition."""
    if given:
        return given
    header = request.headers.get("x-file-name")
    if header:
        return header
    disposition = request.headers.get("content-disposition", "")
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value:
            return value.strip().strip('"')
    return None


def run_submit(
    who: Caller, stream: IO[bytes], *, file_name: str, options: JobOptions, force: bool
) -> SubmitResult:
    """:func:`workers.submit.submit` for the caller, who owns the new file: recorded as the
    application role acting with the caller's credential (migration 009)."""
    return submit(
        stream,
        owner_id=who.user_id,
        file_name=file_name,
        options=options,
        force=force,
        transaction=recording(who),
    )


async def receive_upload(
    request: Request,
    who: Caller,
    *,
    file_name: str | None,
    options: str | None,
    force: bool,
) -> SubmitResult:
    """Accept a multipart (field ``file``, optional ``options``) or raw-body upload."""
    if who.role not in UPLOADERS:
        raise ApiError(403, f"the role '{who.role}' may not upload files")
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "the multipart body has no file part named 'file'")
            form_options = form.get("options")
            job_options = parse_job_options(
                form_options if isinstance(form_options, str) else options
            )
            name = file_name or upload.filename
            if not name:
                raise ApiError(400, "the file part has no file name; pass ?file_name=")
            form_force = str(form.get("force", "")).lower() in {"1", "true", "yes"}
            return await run_in_threadpool(
                run_submit, who, upload.file, file_name=name, options=job_options,
                force=force or form_force,
            )  # fmt: skip
        finally:
            await form.close()
    if not _is_raw(media_type):
        raise ApiError(
            415,
            f"unsupported content type '{media_type or 'none'}': send multipart/form-data with "
            "a 'file' part, or the raw audio as application/octet-stream or audio/*",
        )
    job_options = parse_job_options(options)  # before reading a byte of a body we would refuse
    name = file_name_from(request, file_name)
    if not name:
        raise ApiError(400, "a raw upload needs a file name: ?file_name=call.mp3 or X-File-Name")
    spool = await spool_body(request)
    try:
        return await run_in_threadpool(
            run_submit, who, spool, file_name=name, options=job_options, force=force
        )
    finally:
        spool.close()


def submitted(result: SubmitResult) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a submit result (201 new, 200 duplicate, 400 refused)."""
    if result.outcome is Outcome.REFUSED:
        raise ApiError(400, result.reason or "the upload was refused")
    body = {
        "id": str(result.file_id),
        "file_name": result.file_name,
        "outcome": result.outcome.value,
        "queued": result.queued,
        "status_url": f"/api/v1/files/{result.file_id}",
    }
    if result.reason:
        body["note"] = result.reason
    return (201 if result.outcome is Outcome.CREATED else 200), body
