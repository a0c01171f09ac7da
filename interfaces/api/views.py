"""The JSON shapes of the native API, built from rows read under the caller's policies.

Internal details stay out: storage paths (``file_path``, the ingest's ``source_path``) say
nothing a client needs and would tell a tenant about the server's disks.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from db.analyses import analyses_for
from db.models import Analysis, AudioFile, Transcription, TranscriptRedaction
from pipeline.export import redaction_summary

HIDDEN_METADATA = frozenset({"source_path"})


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def file_summary(row: AudioFile) -> dict[str, Any]:
    """One file in a list: what a dashboard row shows."""
    return {
        "id": str(row.id),
        "owner_id": str(row.user_id),
        "file_name": row.file_name,
        "file_format": row.file_format,
        "file_size": row.file_size,
        "duration_seconds": jsonable(row.duration_seconds),
        "status": row.status,
        "stage": row.stage,
        "created_at": jsonable(row.created_at),
        "updated_at": jsonable(row.updated_at),
    }


def file_detail(row: AudioFile) -> dict[str, Any]:
    """One file: status, stage, metadata, per-stage timings, the error if it failed."""
    metadata = {k: v for k, v in row.metadata_.items() if k not in HIDDEN_METADATA}
    error = None
    if row.error_message is not None:
        error = {"message": row.error_message, "details": row.error_details}
    return {
        **file_summary(row),
        "mime_type": row.mime_type,
        "checksum": row.checksum,
        "sample_rate": row.sample_rate,
        "channels": row.channels,
        "bitrate": row.bitrate,
        "codec": row.codec,
        "attempts": row.attempts,
        "options": metadata.get("options", {}),
        "stage_seconds": metadata.get("stage_seconds", {}),
        "metadata": metadata,
        "error": error,
        "upload_completed_at": jsonable(row.upload_completed_at),
        "processing_started_at": jsonable(row.processing_started_at),
        "processing_completed_at": jsonable(row.processing_completed_at),
    }


def transcript(version: Transcription) -> dict[str, Any]:
    return {
        "id": str(version.id),
        "file_id": str(version.audio_file_id),
        "version": version.version,
        "is_latest": version.is_latest,
        "text": version.transcription_text,
        "language_code": version.language_code,
        "confidence_score": jsonable(version.confidence_score),
        "engine": version.engine,
        "engine_version": version.engine_version,
        "model": version.model_name,
        "word_count": version.word_count,
        "processing_time_seconds": jsonable(version.processing_time_seconds),
        "segments": version.segments,
        "created_at": jsonable(version.created_at),
        "redacted": False,
    }


def redacted_transcript(redaction: TranscriptRedaction) -> dict[str, Any]:
    """The redacted form of a version (migration 007): what callers who may not read the
    unredacted transcript get, and what anyone gets with ``?redacted=true``."""
    return {
        "id": str(redaction.transcription_id),
        "file_id": str(redaction.audio_file_id),
        "version": redaction.version,
        "text": redaction.redacted_text,
        "word_count": len(redaction.redacted_text.split()),
        "segments": redaction.segments,
        "created_at": jsonable(redaction.created_at),
        "redacted": True,
        "redaction": redaction_summary(redaction),
    }


def version_summary(version: Transcription) -> dict[str, Any]:
    full = transcript(version)
    return {
        k: full[k]
        for k in (
            "id",
            "version",
            "is_latest",
            "language_code",
            "engine",
            "model",
            "word_count",
            "confidence_score",
            "created_at",
        )
    }


def analysis(row: Analysis) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "transcription_id": str(row.transcription_id),
        "analysis_type": row.analysis_type,
        "result": row.result,
        "model_name": row.model_name,
        "parameters": row.parameters,
        "processing_time_seconds": jsonable(row.processing_time_seconds),
        "created_at": jsonable(row.created_at),
    }


def redacted_report(
    session: Session, row: AudioFile, redaction: TranscriptRedaction
) -> dict[str, Any]:
    """The export form of a redacted version: its redacted transcript and its analyses without
    ``pii`` (the others were computed on the redacted text)."""
    found = file_detail(row)
    found["transcription"] = redacted_transcript(redaction)
    found["analyses"] = [
        analysis(a)
        for a in analyses_for(session, redaction.transcription_id)
        if a.analysis_type != "pii"
    ]
    found["redaction"] = redaction_summary(redaction)
    return found


def report(session: Session, row: AudioFile, version: Transcription | None) -> dict[str, Any]:
    """The export form (``pipeline.export.render``): the file, one transcription, its analyses."""
    found = file_detail(row)
    found["transcription"] = transcript(version) if version is not None else None
    found["analyses"] = (
        [analysis(a) for a in analyses_for(session, version.id)] if version is not None else []
    )
    return found
