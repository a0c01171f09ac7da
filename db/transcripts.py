"""Versioned transcriptions and full-text search over the latest versions.

Every new transcript of a file is a new version; the previous latest is kept but loses its
``is_latest`` flag. The partial unique index ``uq_transcriptions_latest`` guarantees at most one
latest row per file; locking the parent ``audio_files`` row makes concurrent writers for one file
take turns, so they also agree on the next version number instead of failing on the index.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from db.models import AudioFile, Transcription

# The limits below are also enforced by the SQL function (migration 003), which the app role may
# call directly; they are checked here first so that a caller gets a ValueError, not a DB error.
MAX_SEARCH_RESULTS = 100
# ts_headline's cost grows much faster than linearly with the number of query terms (a 10 kB
# query took seconds per row), so a query is cut to its first words: no search needs more.
MAX_QUERY_WORDS = 16
MAX_QUERY_CHARS = 256
# Plain-text highlight marks (fixed in migration 003): snippets are shown in terminals and logs,
# and HTML marks around unescaped transcript text would invite markup injection wherever they
# were rendered.
HIGHLIGHT_START = "**"
HIGHLIGHT_STOP = "**"

# search_latest_transcriptions (migration 003) is a SECURITY DEFINER function: as a plain query,
# row-level security keeps `@@` (not LEAKPROOF) away from the GIN index, and a search as the app
# role read every visible transcript (11 s for a manager at 1M rows). The function applies the
# SELECT policies' rule itself (current_app_user_id(), current_app_role()) and so can use
# the index; a caller that bypasses RLS (the operator CLI) sees every file, as it would anyway.
# The query text is a bound parameter parsed by websearch_to_tsquery, which accepts any input.
_SEARCH_SQL = sql_text(
    "SELECT transcription_id, audio_file_id, file_name, rank, snippet "
    "FROM search_latest_transcriptions(:query, :limit, CAST(:user_id AS uuid))"
)


@dataclass(frozen=True)
class SearchHit:
    transcription_id: uuid.UUID
    audio_file_id: uuid.UUID
    file_name: str
    rank: float
    snippet: str


def _decimal(name: str, value: float | None) -> Decimal | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return Decimal(repr(float(value)))


def add_transcription_version(
    session: Session,
    audio_file_id: uuid.UUID,
    *,
    text: str,
    language_code: str | None,
    confidence_score: float | None,
    engine: str | None,
    engine_version: str | None,
    model_name: str | None,
    segments: list[dict[str, Any]],
    word_count: int | None,
    processing_time_seconds: float | None,
    metadata: dict[str, Any] | None = None,
) -> Transcription:
    """Store a new latest transcript of the file (version = previous + 1, or 1).

    Runs in the caller's transaction: the row lock on the file is held until it commits, so a
    second writer for the same file waits, then sees this version and writes the next one.
    Raises :class:`LookupError` when the file does not exist.
    """
    locked = session.execute(
        select(AudioFile.id).where(AudioFile.id == audio_file_id).with_for_update()
    ).first()
    if locked is None:
        raise LookupError(f"no audio file with id {audio_file_id}")
    previous = session.scalar(
        select(func.max(Transcription.version)).where(Transcription.audio_file_id == audio_file_id)
    )
    session.execute(
        update(Transcription)
        .where(Transcription.audio_file_id == audio_file_id, Transcription.is_latest)
        .values(is_latest=False),
        execution_options={"synchronize_session": "fetch"},
    )
    row = Transcription(
        audio_file_id=audio_file_id,
        version=(previous or 0) + 1,
        is_latest=True,
        transcription_text=text,
        language_code=language_code,
        confidence_score=_decimal("confidence_score", confidence_score),
        engine=engine,
        engine_version=engine_version,
        model_name=model_name,
        segments=list(segments),
        word_count=word_count,
        processing_time_seconds=_decimal("processing_time_seconds", processing_time_seconds),
        metadata_=dict(metadata) if metadata is not None else {},
    )
    session.add(row)
    session.flush()
    return row


def latest_transcription(session: Session, audio_file_id: uuid.UUID) -> Transcription | None:
    stmt = select(Transcription).where(
        Transcription.audio_file_id == audio_file_id, Transcription.is_latest
    )
    return session.scalars(stmt).one_or_none()


def list_versions(session: Session, audio_file_id: uuid.UUID) -> list[Transcription]:
    """Every version of the file's transcript, oldest first."""
    stmt = (
        select(Transcription)
        .where(Transcription.audio_file_id == audio_file_id)
        .order_by(Transcription.version)
    )
    return list(session.scalars(stmt))


def search_transcripts(
    session: Session, query: str, *, user_id: uuid.UUID | None = None, limit: int = 20
) -> list[SearchHit]:
    """Latest transcripts matching a web-style query ("quoted phrase", or, -not), best first.

    Any text is accepted: NUL characters (which PostgreSQL text cannot hold) become spaces, only
    the first :data:`MAX_QUERY_WORDS` words count, and a query with no searchable words returns
    no hits.

    Visibility is that of row-level security for the session's role: the app role sees what its
    acting user may read (nothing without one); the owner or operator sees every file.
    ``user_id`` narrows the hits to one owner's files, it never widens them.
    """
    if not 1 <= limit <= MAX_SEARCH_RESULTS:
        raise ValueError(f"limit must be between 1 and {MAX_SEARCH_RESULTS}, got {limit}")
    words = query.replace("\x00", " ").split()[:MAX_QUERY_WORDS]
    cleaned = " ".join(words)[:MAX_QUERY_CHARS]
    if not cleaned:
        return []
    rows = session.execute(
        _SEARCH_SQL,
        {
            "query": cleaned,
            "user_id": str(user_id) if user_id is not None else None,
            "limit": limit,
        },
    )
    return [
        SearchHit(
            transcription_id=row.transcription_id,
            audio_file_id=row.audio_file_id,
            file_name=row.file_name,
            rank=float(row.rank),
            snippet=row.snippet,
        )
        for row in rows
    ]
