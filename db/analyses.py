"""Analysis results of a transcription version, written idempotently.

Celery delivers a task at least once; a redelivered analyze task must not add a second
'sentiment' row. The partial unique index ``uq_analyses_transcription_id_type`` (built-in types
only) is the arbiter of ``INSERT … ON CONFLICT DO NOTHING``: the first write wins and a repeat
returns that row. ``custom`` analyses are outside the index and may repeat.
"""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from db.models import Analysis, AnalysisType


def record_analysis(
    session: Session,
    transcription_id: uuid.UUID,
    *,
    analysis_type: str,
    result: dict[str, Any],
    model_name: str | None,
    parameters: dict[str, Any],
    processing_time_seconds: float | None,
) -> Analysis:
    """The analysis row of this type for the transcription: the new one, or the one already there.

    An unknown ``analysis_type`` raises :class:`ValueError` before any SQL.
    """
    kind = AnalysisType(analysis_type).value
    seconds: Decimal | None = None
    if processing_time_seconds is not None:
        if not math.isfinite(processing_time_seconds):
            raise ValueError(f"processing_time_seconds must be finite: {processing_time_seconds}")
        seconds = Decimal(repr(float(processing_time_seconds)))
    stmt = (
        pg_insert(Analysis)
        .values(
            transcription_id=transcription_id,
            analysis_type=kind,
            result=result,
            model_name=model_name,
            parameters=parameters,
            processing_time_seconds=seconds,
        )
        .on_conflict_do_nothing(
            index_elements=[Analysis.transcription_id, Analysis.analysis_type],
            index_where=sql_text("analysis_type <> 'custom'"),
        )
        .returning(Analysis.id)
    )
    new_id = session.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        row = session.get(Analysis, new_id)
    else:
        row = session.scalars(
            select(Analysis).where(
                Analysis.transcription_id == transcription_id, Analysis.analysis_type == kind
            )
        ).one_or_none()
    if row is None:  # only if another transaction deleted it in between
        raise LookupError(f"analysis {kind} of transcription {transcription_id} vanished")
    return row


def analyses_for(session: Session, transcription_id: uuid.UUID) -> list[Analysis]:
    """All analyses of one transcription version, in the order they were written."""
    stmt = (
        select(Analysis)
        .where(Analysis.transcription_id == transcription_id)
        .order_by(Analysis.created_at, Analysis.analysis_type, Analysis.id)
    )
    return list(session.scalars(stmt))
