"""The spec's maintenance and monitoring queries, as constants and typed rows.

The SQL is the text of ``schema-design.md`` ("Maintenance", "Monitoring Queries") unchanged,
except the index-usage query: the spec selects ``tablename``/``indexname`` from
``pg_stat_user_indexes``, whose columns are ``relname``/``indexrelname`` (that text fails with
"column tablename does not exist"), so :data:`INDEX_USAGE_SQL` aliases the real columns to the
spec's names. :data:`SPEC_INDEX_USAGE_SQL` keeps the spec's text for reference and for the test
that proves it is broken.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

REFRESH_ANALYTICS_SQL = "REFRESH MATERIALIZED VIEW CONCURRENTLY file_processing_analytics"

TABLE_SIZES_SQL = """\
SELECT
    schemaname,
    tablename,
    pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) AS size
FROM pg_tables
WHERE schemaname = 'public'
ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC"""

SPEC_INDEX_USAGE_SQL = """\
SELECT
    schemaname,
    tablename,
    indexname,
    idx_scan,
    idx_tup_read,
    idx_tup_fetch
FROM pg_stat_user_indexes
ORDER BY idx_scan DESC"""

INDEX_USAGE_SQL = """\
SELECT
    schemaname,
    relname AS tablename,
    indexrelname AS indexname,
    idx_scan,
    idx_tup_read,
    idx_tup_fetch
FROM pg_stat_user_indexes
ORDER BY idx_scan DESC"""

ACTIVE_SESSIONS_SQL = """\
SELECT
    u.username,
    s.ip_address,
    s.created_at,
    s.last_accessed_at
FROM sessions s
JOIN users u ON s.user_id = u.id
WHERE s.expires_at > NOW() AND NOT s.is_revoked
ORDER BY s.last_accessed_at DESC"""

PROCESSING_QUEUE_SQL = """\
SELECT
    status,
    COUNT(*) as count,
    AVG(EXTRACT(EPOCH FROM (NOW() - upload_started_at))) as avg_wait_seconds
FROM audio_files
WHERE status IN ('pending', 'processing')
GROUP BY status"""

DAILY_ANALYTICS_SQL = """\
SELECT day, file_format, status, file_count, avg_file_size_bytes, avg_duration_seconds,
       avg_processing_seconds
FROM file_processing_analytics
ORDER BY day, file_format, status"""

USER_ACTIVITY_SQL = """\
SELECT user_id, username, email, role, is_active, total_files, total_transcriptions,
       total_analyses, last_upload_at, last_login_at
FROM user_activity_summary"""


@dataclass(frozen=True)
class QueueRow:
    status: str
    count: int
    avg_wait_seconds: float


@dataclass(frozen=True)
class ActiveSession:
    username: str
    ip_address: str | None
    created_at: dt.datetime
    last_accessed_at: dt.datetime


@dataclass(frozen=True)
class TableSize:
    schemaname: str
    tablename: str
    size: str  # pg_size_pretty text, e.g. "48 kB"


@dataclass(frozen=True)
class IndexUsage:
    schemaname: str
    tablename: str
    indexname: str
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int


@dataclass(frozen=True)
class DailyAnalytics:
    day: dt.date  # UTC day of created_at
    file_format: str
    status: str
    file_count: int
    avg_file_size_bytes: float
    avg_duration_seconds: float | None  # None until a file of the group was probed
    avg_processing_seconds: float | None  # None until a file of the group finished


@dataclass(frozen=True)
class UserActivity:
    user_id: uuid.UUID
    username: str
    email: str
    role: str
    is_active: bool
    total_files: int
    total_transcriptions: int
    total_analyses: int
    last_upload_at: dt.datetime | None
    last_login_at: dt.datetime | None


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def processing_queue(session: Session) -> list[QueueRow]:
    """Files waiting or being processed, per status, with their average age in seconds."""
    return [
        # By position: ``row.count`` would be the tuple method, not the column.
        QueueRow(status, int(count), float(avg_wait_seconds))
        for status, count, avg_wait_seconds in session.execute(text(PROCESSING_QUEUE_SQL))
    ]


def active_sessions(session: Session) -> list[ActiveSession]:
    """Unexpired, unrevoked sessions, most recently used first (spec "Active Sessions")."""
    return [
        ActiveSession(
            row.username,
            None if row.ip_address is None else str(row.ip_address),
            row.created_at,
            row.last_accessed_at,
        )
        for row in session.execute(text(ACTIVE_SESSIONS_SQL))
    ]


def table_sizes(session: Session) -> list[TableSize]:
    """Tables of the public schema, largest first, with indexes and TOAST counted."""
    return [
        TableSize(row.schemaname, row.tablename, row.size)
        for row in session.execute(text(TABLE_SIZES_SQL))
    ]


def index_usage(session: Session) -> list[IndexUsage]:
    """Scans per index since statistics were reset, most used first (an unused index costs writes).

    The counters are the cumulative statistics system's, which backends flush every few seconds.
    """
    return [
        IndexUsage(
            row.schemaname,
            row.tablename,
            row.indexname,
            int(row.idx_scan),
            int(row.idx_tup_read),
            int(row.idx_tup_fetch),
        )
        for row in session.execute(text(INDEX_USAGE_SQL))
    ]


def refresh_analytics(session: Session) -> None:
    """Recompute file_processing_analytics without blocking its readers (needs its unique index).

    Runs the spec's ``REFRESH … CONCURRENTLY`` through ``refresh_file_processing_analytics()``
    (migration 002, SECURITY DEFINER): only the view's owner may refresh it, and the worker
    role that runs the beat job is not the owner.
    """
    session.execute(text("SELECT refresh_file_processing_analytics()"))


def daily_analytics(session: Session) -> list[DailyAnalytics]:
    """The materialized view's rows as of its last refresh, by day, format and status."""
    return [
        DailyAnalytics(
            day=row.day,
            file_format=row.file_format,
            status=row.status,
            file_count=int(row.file_count),
            avg_file_size_bytes=float(row.avg_file_size_bytes),
            avg_duration_seconds=_float(row.avg_duration_seconds),
            avg_processing_seconds=_float(row.avg_processing_seconds),
        )
        for row in session.execute(text(DAILY_ANALYTICS_SQL))
    ]


def user_activity(session: Session, user_id: uuid.UUID | None = None) -> list[UserActivity]:
    """Per-user totals from user_activity_summary (soft-deleted users are not in it)."""
    if user_id is None:
        rows = session.execute(text(USER_ACTIVITY_SQL + "\nORDER BY username"))
    else:
        rows = session.execute(
            text(USER_ACTIVITY_SQL + "\nWHERE user_id = :user_id"), {"user_id": user_id}
        )
    return [
        UserActivity(
            user_id=row.user_id,
            username=row.username,
            email=row.email,
            role=row.role,
            is_active=row.is_active,
            total_files=int(row.total_files),
            total_transcriptions=int(row.total_transcriptions),
            total_analyses=int(row.total_analyses),
            last_upload_at=row.last_upload_at,
            last_login_at=row.last_login_at,
        )
        for row in rows
    ]
