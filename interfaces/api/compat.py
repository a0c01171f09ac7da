"""What the AssemblyAI- and OpenAI-compatible endpoints share: their settings, staged uploads,
reading a file's state and transcript as the caller, and words and sentences from segments.

AssemblyAI uploads first (``POST /v2/upload``) and names the options later
(``POST /v2/transcript``), while our submit path takes both at once. So an upload is *staged*:
written to ``TELEAI_API_STAGING_DIR/<user id>/<token>`` and answered with
``<base>/v2/upload/<token>``; the transcript request submits the staged file with its options
(``workers.submit.submit``, as every interface does). The token is random (192 bits) and only
works for the user who uploaded it; a staged file may be transcribed several times, as with
AssemblyAI, and is removed ``TELEAI_API_STAGING_HOURS`` after its upload (swept on later
uploads). Several API processes on one host share the directory; API hosts behind one load
balancer need it on shared storage (or sticky sessions).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.models import AudioFile, Transcription
from db.redactions import latest_redaction
from interfaces.api.deps import Caller, unit
from interfaces.api.errors import ApiError
from interfaces.api.settings import get_api_settings
from interfaces.api.uploads import UPLOADERS
from pipeline.options import options_of

TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9_-]{32}$")
SENTENCE_END: Final = (".", "?", "!", "…")


class CompatSettings(BaseSettings):
    """``TELEAI_API_*`` knobs of the compatible endpoints."""

    model_config = SettingsConfigDict(env_prefix="TELEAI_API_", extra="ignore")

    staging_dir: Path = Field(
        Path(tempfile.gettempdir()) / "teleai-staged-uploads",
        description="Where POST /v2/upload keeps files until a transcript request names them.",
    )
    staging_hours: float = Field(24.0, gt=0, description="Staged uploads older than this go.")
    openai_wait_seconds: float = Field(
        300.0,
        gt=0,
        description="How long POST /v1/audio/transcriptions waits for the transcript before "
        "answering 504 with the file id (the job goes on).",
    )
    poll_seconds: float = Field(0.25, gt=0, description="How often a waiting request looks.")


@lru_cache(maxsize=1)
def get_compat_settings() -> CompatSettings:
    return CompatSettings()


# --- staged uploads -----------------------------------------------------------------------------


def _user_dir(user_id: uuid.UUID) -> Path:
    return get_compat_settings().staging_dir / str(user_id)


def _sweep(directory: Path, older_than: float) -> None:
    cutoff = time.time() - older_than
    for entry in directory.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
        except FileNotFoundError:
            continue


async def stage_upload(request: Request, who: Caller) -> str:
    """Write the raw request body to the caller's staging directory; returns its token."""
    if who.role not in UPLOADERS:
        raise ApiError(403, f"the role '{who.role}' may not upload files")
    settings = get_compat_settings()
    directory = _user_dir(who.user_id)
    await run_in_threadpool(directory.mkdir, parents=True, exist_ok=True, mode=0o700)
    await run_in_threadpool(_sweep, directory, settings.staging_hours * 3600)
    token = secrets.token_urlsafe(24)
    partial = directory / f".{token}.part"
    chunk = get_api_settings().upload_chunk_bytes
    written = 0
    try:
        with partial.open("wb") as out:
            buffer = bytearray()
            async for piece in request.stream():
                buffer += piece
                if len(buffer) >= chunk:
                    await run_in_threadpool(out.write, bytes(buffer))
                    written += len(buffer)
                    buffer.clear()
            if buffer:
                await run_in_threadpool(out.write, bytes(buffer))
                written += len(buffer)
        if written == 0:
            raise ApiError(400, "the upload is empty: send the audio bytes as the request body")
        partial.replace(directory / token)
    finally:
        partial.unlink(missing_ok=True)
    return token


def staged_path(who: Caller, audio_url: str) -> Path:
    """The staged file an ``audio_url`` names (only the caller's own), else a clear 400."""
    match = re.search(r"/v2/upload/([^/?#]+)$", audio_url.split("?", 1)[0])
    if match is None or not TOKEN_RE.match(match.group(1)):
        raise ApiError(
            400,
            "audio_url must be an upload_url returned by POST /v2/upload on this server; "
            "remote URLs are not fetched",
        )
    path = _user_dir(who.user_id) / match.group(1)
    if not path.is_file():
        raise ApiError(400, "this upload_url is unknown or expired: upload the file again")
    return path


# --- reading as the caller ----------------------------------------------------------------------


@dataclass(frozen=True)
class Readable:
    """The transcript as this caller may read it through the compatible APIs.

    A ``redact_pii`` job is always read in its redacted form (as AssemblyAI answers
    ``redact_pii`` requests; migration 007 may also hide the unredacted row from the caller):
    until the analyze stage wrote the redaction there is nothing to read. Other jobs read the
    latest transcription. ``language_code``, ``confidence`` and ``model_name`` come from the
    transcription row when the caller may see it.
    """

    transcription_id: uuid.UUID
    text: str
    segments: list[dict[str, Any]]
    redacted: bool
    language_code: str | None
    confidence: float | None
    model_name: str | None


def readable(session: Session, row: AudioFile) -> Readable | None:
    version = session.scalars(
        select(Transcription).where(Transcription.audio_file_id == row.id, Transcription.is_latest)
    ).first()
    redact = options_of(row.metadata_).redact_pii
    if redact or version is None:
        found = latest_redaction(session, row.id)
        if found is None or (version is not None and found.transcription_id != version.id):
            return None
        return Readable(
            found.transcription_id, found.redacted_text, list(found.segments or []), True,
            version.language_code if version else None,
            float(version.confidence_score) if version and version.confidence_score else None,
            version.model_name if version else None,
        )  # fmt: skip
    return Readable(
        version.id, version.transcription_text, list(version.segments or []), False,
        version.language_code,
        float(version.confidence_score) if version.confidence_score is not None else None,
        version.model_name,
    )  # fmt: skip


@dataclass(frozen=True)
class FileView:
    """A file row and its transcript as the caller may read it (None until there is one)."""

    row: AudioFile
    transcript: Readable | None


def visible(session: Session, file_id: uuid.UUID) -> AudioFile:
    """The file (404 when missing, deleted or not the caller's to see)."""
    row = session.get(AudioFile, file_id)
    if row is None or row.deleted_at is not None:
        raise ApiError(404, "transcript not found")
    return row


def read_file(session: Session, file_id: uuid.UUID) -> FileView:
    row = visible(session, file_id)
    return FileView(row, readable(session, row))


def has_transcript(who: Caller, file_id: uuid.UUID) -> tuple[str, str | None, bool]:
    """(status, error, readable transcript exists), in a short unit of work of its own: a
    waiting request repeats it without holding a transaction open in between."""
    with unit(who) as session:
        row = session.get(AudioFile, file_id)
        if row is None:
            raise ApiError(404, "file not found")
        return row.status, row.error_message, readable(session, row) is not None


# --- words, sentences, paragraphs from stored segments ------------------------------------------


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float
    end: float
    confidence: float
    speaker: str | None
    channel: int | None


def words_of(segments: list[dict[str, Any]] | None) -> list[TimedWord]:
    """Every word of the stored segments in order (a segment without words counts as one)."""
    found: list[TimedWord] = []
    for segment in segments or []:
        words = segment.get("words") or []
        if not words and str(segment.get("text", "")).strip():
            words = [{"word": segment["text"], "start": segment.get("start", 0.0),
                      "end": segment.get("end", 0.0), "probability": None}]  # fmt: skip
        for index, word in enumerate(words):
            raw = str(word.get("word", ""))
            text = raw.strip()
            if not text:
                continue
            probability = word.get("probability")
            if index and found and not raw[:1].isspace():
                # Whisper splits some words into several tokens ("555", "-120", "-34"):
                # a token without a leading space continues the word before it, so the
                # word list always matches the transcript text split on whitespace.
                found[-1] = _joined(found[-1], text, float(word.get("end") or 0.0))
                continue
            found.append(
                TimedWord(
                    text=text,
                    start=float(word.get("start") or 0.0),
                    end=float(word.get("end") or 0.0),
                    confidence=float(probability) if probability is not None else 0.0,
                    speaker=word.get("speaker") or segment.get("speaker"),
                    channel=word.get("channel", segment.get("channel")),
                )
            )
    return found


def _joined(word: TimedWord, tail: str, end: float) -> TimedWord:
    return TimedWord(
        text=word.text + tail,
        start=word.start,
        end=max(word.end, end),
        confidence=word.confidence,
        speaker=word.speaker,
        channel=word.channel,
    )


def sentences_of(words: list[TimedWord]) -> list[list[TimedWord]]:
    """Words split after sentence-ending punctuation or a change of speaker."""
    groups: list[list[TimedWord]] = []
    current: list[TimedWord] = []
    for word in words:
        if current and word.speaker != current[-1].speaker:
            groups.append(current)
            current = []
        current.append(word)
        if word.text.endswith(SENTENCE_END):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def paragraphs_of(words: list[TimedWord], pause: float = 1.5) -> list[list[TimedWord]]:
    """Sentences joined until a pause of ``pause`` seconds or a change of speaker."""
    groups: list[list[TimedWord]] = []
    for sentence in sentences_of(words):
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and last.speaker == sentence[0].speaker
            and (sentence[0].start - last.end < pause)
        ):
            groups[-1].extend(sentence)
        else:
            groups.append(list(sentence))
    return groups


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
