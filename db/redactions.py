"""Redacted transcripts (migration 007): written once per version by the analyze stage.

A redelivered analyze task must not fail on the second write, so the insert is
``ON CONFLICT DO NOTHING`` on the primary key (the transcription id): the first write wins.
Reads go through the caller's policies like every other table: a viewer reads the redacted row
of their own file, staff every file's.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from db.models import Transcription, TranscriptRedaction


def record_redaction(
    session: Session,
    transcription_id: uuid.UUID,
    *,
    redacted_text: str,
    segments: list[dict[str, Any]],
    spans: list[dict[str, Any]],
    policy: dict[str, Any],
    audio_path: str | None,
) -> TranscriptRedaction:
    """The redaction row of this version: the new one, or the one already written."""
    version = session.get(Transcription, transcription_id)
    if version is None:
        raise LookupError(f"no transcription {transcription_id}")
    session.execute(
        pg_insert(TranscriptRedaction)
        .values(
            transcription_id=transcription_id,
            audio_file_id=version.audio_file_id,
            version=version.version,
            redacted_text=redacted_text,
            segments=segments,
            spans=spans,
            policy=policy,
            audio_path=audio_path,
        )
        .on_conflict_do_nothing(index_elements=[TranscriptRedaction.transcription_id])
    )
    row = session.get(TranscriptRedaction, transcription_id)
    if row is None:  # only if another transaction deleted it in between
        raise LookupError(f"redaction of transcription {transcription_id} vanished")
    return row


def redaction_of(session: Session, transcription_id: uuid.UUID) -> TranscriptRedaction | None:
    """The redacted form of one version (None: the job asked for none, or not yet written)."""
    return session.get(TranscriptRedaction, transcription_id)


def latest_redaction(session: Session, audio_file_id: uuid.UUID) -> TranscriptRedaction | None:
    """The redacted form of the newest version the caller may see."""
    return session.scalars(
        select(TranscriptRedaction)
        .where(TranscriptRedaction.audio_file_id == audio_file_id)
        .order_by(TranscriptRedaction.version.desc())
        .limit(1)
    ).first()


def redactions_of_file(session: Session, audio_file_id: uuid.UUID) -> list[TranscriptRedaction]:
    """Every redacted version of a file, oldest first."""
    return list(
        session.scalars(
            select(TranscriptRedaction)
            .where(TranscriptRedaction.audio_file_id == audio_file_id)
            .order_by(TranscriptRedaction.version)
        )
    )
