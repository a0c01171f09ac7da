"""OpenAI-compatible ``POST /v1/audio/transcriptions``: the ``openai`` SDK with
``base_url="http://HOST:PORT/v1"`` and our API key as its ``api_key`` works unchanged.

OpenAI's call is synchronous, ours is a queue: the upload goes through the one submit path
(:func:`workers.submit.submit`) and the request then waits, polling the database as the caller,
until the transcript exists — the transcript, not the analyses, which go on after it — or
``TELEAI_API_OPENAI_WAIT_SECONDS`` pass. Then it answers 504 with the file id: the job goes on,
nothing is lost, and ``/api/v1/files/{id}/transcript`` has it later. Errors use OpenAI's shape,
``{"error": {"message", "type", "code"}}``, which its SDK turns into its exceptions.

Parameters: ``file``, ``model`` (``whisper-1`` and OpenAI's other names mean the deployment's
model; anything else is passed to the workers as a Whisper model name), ``language``, ``prompt``,
``response_format`` (json, text, srt, vtt, verbose_json), ``timestamp_granularities[]`` (word,
segment; verbose_json only, as with OpenAI), ``temperature`` (accepted, not used: the engines
keep their temperature fallback). ``stream``, ``include[]`` and ``chunking_strategy`` and the
diarized format are refused with a 400.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from interfaces.api.compat import (
    FileView,
    get_compat_settings,
    has_transcript,
    read_file,
    words_of,
)
from interfaces.api.deps import Caller, Writer, recording, unit
from interfaces.api.errors import ApiError
from interfaces.api.uploads import UPLOADERS
from pipeline.export import to_srt, to_vtt
from pipeline.options import InvalidOptions, parse_options
from workers.submit import Outcome, submit

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

OPENAI_MODELS: Final = frozenset(
    {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize"}
)
FORMATS: Final = frozenset({"json", "text", "srt", "vtt", "verbose_json"})
GRANULARITIES: Final = frozenset({"word", "segment"})
REFUSED: Final = ("stream", "include[]", "include", "chunking_strategy", "known_speaker_names[]")
# ISO 639-1 -> the English names OpenAI's verbose_json reports.
LANGUAGE_NAMES: Final = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
    "nl": "dutch", "pt": "portuguese", "pl": "polish", "ru": "russian", "uk": "ukrainian",
    "tr": "turkish", "ar": "arabic", "zh": "chinese", "ja": "japanese", "ko": "korean",
    "hi": "hindi", "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish",
    "cs": "czech", "el": "greek", "he": "hebrew", "hu": "hungarian", "ro": "romanian",
}  # fmt: skip


def openai_error(status: int, message: str, *, kind: str = "invalid_request_error",
                 code: str | None = None, **extra: Any) -> JSONResponse:  # fmt: skip
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code, **extra}},
        status_code=status,
    )


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value != "" else None


def _submit(who: Caller, upload: UploadFile, options: dict[str, Any]) -> uuid.UUID:
    try:
        parsed = parse_options(options)
    except InvalidOptions as error:
        raise ApiError(400, error.message) from None
    name = upload.filename or "audio"
    result = submit(
        upload.file,
        owner_id=who.user_id,
        file_name=name,
        options=parsed,
        transaction=recording(who),
    )
    if result.outcome is Outcome.REFUSED or result.file_id is None:
        raise ApiError(400, result.reason or "the upload was refused")
    return result.file_id


async def _wait(who: Caller, file_id: uuid.UUID) -> tuple[str, str | None, bool]:
    settings = get_compat_settings()
    deadline = time.monotonic() + settings.openai_wait_seconds
    while True:
        status, error, ready = await run_in_threadpool(has_transcript, who, file_id)
        if ready or status == "failed" or time.monotonic() >= deadline:
            return status, error, ready
        await asyncio.sleep(settings.poll_seconds)


def _read(who: Caller, file_id: uuid.UUID) -> FileView:
    with unit(who) as session:
        return read_file(session, file_id)


def _verbose(view: FileView, granularities: set[str]) -> dict[str, Any]:
    version = view.transcript
    assert version is not None
    segments = version.segments
    language = version.language_code or ""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": LANGUAGE_NAMES.get(language, language),
        "duration": float(view.row.duration_seconds or 0.0),
        "text": version.text,
        "usage": {"type": "duration", "seconds": float(view.row.duration_seconds or 0.0)},
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                "id": int(s.get("id", i)),
                "seek": 0,
                "start": float(s.get("start", 0.0)),
                "end": float(s.get("end", 0.0)),
                "text": str(s.get("text", "")),
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": float(s.get("avg_logprob") or 0.0),
                "compression_ratio": float(s.get("compression_ratio") or 0.0),
                "no_speech_prob": float(s.get("no_speech_prob") or 0.0),
            }
            for i, s in enumerate(segments)
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.text, "start": w.start, "end": w.end} for w in words_of(segments)
        ]
    return body


@router.post(
    "/audio/transcriptions",
    summary="Transcribe an audio file and wait for the text (OpenAI's API)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "model": {"type": "string", "default": "whisper-1"},
                            "language": {"type": "string"},
                            "prompt": {"type": "string"},
                            "response_format": {"type": "string", "enum": sorted(FORMATS)},
                            "timestamp_granularities[]": {
                                "type": "array",
                                "items": {"type": "string", "enum": sorted(GRANULARITIES)},
                            },
                        },
                    }
                }
            }
        }
    },
)
async def transcriptions(request: Request, who: Writer) -> Response:  # noqa: C901 - flat checks
    if who.role not in UPLOADERS:
        return openai_error(
            403, f"the role '{who.role}' may not upload files", kind="permission_error"
        )
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        return openai_error(415, "send multipart/form-data with a 'file' part")
    form = await request.form(max_files=1, max_fields=20)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return openai_error(400, "the multipart body has no file part named 'file'")
        for name in REFUSED:
            if form.get(name) not in (None, "", "false"):
                return openai_error(400, f"{name} is not supported by this server")
        response_format = _field(form, "response_format") or "json"
        if response_format not in FORMATS:
            return openai_error(400, f"response_format must be one of {', '.join(sorted(FORMATS))}")
        given = [*form.getlist("timestamp_granularities[]"),
                 *form.getlist("timestamp_granularities")]  # fmt: skip
        granularities = {g for g in given if isinstance(g, str)}
        if not granularities <= GRANULARITIES or len(granularities) < len({str(g) for g in given}):
            return openai_error(400, "timestamp_granularities[] takes word and/or segment")
        if granularities and response_format != "verbose_json":
            return openai_error(400, "timestamp_granularities[] needs response_format=verbose_json")
        options: dict[str, Any] = {}
        model = _field(form, "model") or "whisper-1"
        if model not in OPENAI_MODELS:
            options["model"] = model
        for ours in ("language", "prompt"):
            value = _field(form, ours)
            if value is not None:
                options[ours] = value
        try:
            file_id = await run_in_threadpool(_submit, who, upload, options)
        except ApiError as refused:
            return openai_error(refused.status, refused.message)
    finally:
        await form.close()
    # The wait may be long: end the request's transaction now so it does not hold a pooled
    # connection meanwhile; every later read is a short unit of work of its own.
    await run_in_threadpool(who.session.commit)
    status, error, ready = await _wait(who, file_id)
    if not ready:
        if status == "failed":
            return openai_error(400, error or "the file could not be transcribed",
                                code="transcription_failed", file_id=str(file_id))  # fmt: skip
        return openai_error(
            504,
            f"the transcript is not ready after {get_compat_settings().openai_wait_seconds:g} s; "
            f"the job goes on: GET /api/v1/files/{file_id}/transcript",
            kind="timeout", code="transcript_pending", file_id=str(file_id),
        )  # fmt: skip
    view = await run_in_threadpool(_read, who, file_id)
    if response_format == "verbose_json":
        return JSONResponse(_verbose(view, granularities))
    assert view.transcript is not None
    text = view.transcript.text
    segments = view.transcript.segments
    if response_format == "json":
        return JSONResponse({"text": text})
    if response_format == "text":
        return PlainTextResponse(text.strip() + "\n")
    rendered = to_srt(segments) if response_format == "srt" else to_vtt(segments)
    return PlainTextResponse(rendered, media_type="text/plain")
