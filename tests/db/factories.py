"""Small builders of valid rows for the database tests (through the real data-access functions)."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from typing import Any

from sqlalchemy.orm import Session

from db.files import record_upload
from db.models import AudioFile, Transcription, User
from db.transcripts import add_transcription_version
from db.users import create_user

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)


def make_user(session: Session, name: str | None = None, **kwargs: Any) -> User:
    name = name or f"user{next(_seq)}_{uuid.uuid4().hex[:6]}"
    kwargs.setdefault("password", PASSWORD)
    return create_user(session, email=f"{name}@example.org", username=name, **kwargs)


def make_file(
    session: Session, user: User, name: str = "interview.mp3", **kwargs: Any
) -> AudioFile:
    content = f"{name}-{next(_seq)}-{uuid.uuid4()}".encode()
    kwargs.setdefault("file_format", name.rsplit(".", 1)[-1])
    kwargs.setdefault("file_size", 5_242_880)
    kwargs.setdefault("checksum", hashlib.sha256(content).hexdigest())
    return record_upload(
        session,
        user_id=user.id,
        file_name=name,
        file_path=f"/uploads/{uuid.uuid4()}/{name}",
        **kwargs,
    )


def make_transcription(
    session: Session, audio: AudioFile, text: str = "Transcribed text here.", **kwargs: Any
) -> Transcription:
    kwargs.setdefault("language_code", "en")
    kwargs.setdefault("confidence_score", 0.95)
    kwargs.setdefault("engine", "faster-whisper")
    kwargs.setdefault("engine_version", "1.2.1")
    kwargs.setdefault("model_name", "tiny.en")
    kwargs.setdefault("segments", [{"start": 0.0, "end": 1.0, "text": text}])
    kwargs.setdefault("word_count", len(text.split()))
    kwargs.setdefault("processing_time_seconds", 0.5)
    return add_transcription_version(session, audio.id, text=text, **kwargs)
