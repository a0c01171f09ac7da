"""SQLAlchemy 2.0 typed models mirroring ``db/migrations`` (the SQL files are the source of truth).

``tests/db/test_schema_drift.py`` fails when these and the migrated schema disagree, so a change to
one without the other cannot land. Enum-like columns are plain strings checked in the database;
the Python enums below name the allowed values and say what each means.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import CHAR, INET, INTERVAL, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "ix": "idx_%(table_name)s_%(column_0_N_name)s",
}

NOW = text("now()")
UUID_DEFAULT = text("uuid_generate_v4()")
EMPTY_OBJECT = text("'{}'::jsonb")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        dt.datetime: DateTime(timezone=True),
        uuid.UUID: UUID(as_uuid=True),
    }


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, including user management
    MANAGER = "manager"  # sees and manages every user's files
    ANALYST = "analyst"  # reads all transcripts, writes analyses
    VIEWER = "viewer"  # reads only


class AudioFormat(enum.StrEnum):
    MP3 = "mp3"
    WAV = "wav"
    OGG = "ogg"
    M4A = "m4a"
    FLAC = "flac"
    WEBM = "webm"


class FileStatus(enum.StrEnum):
    PENDING = "pending"  # recorded, waiting for a worker
    PROCESSING = "processing"  # a worker holds the row (see stage, lease_expires_at)
    COMPLETED = "completed"  # transcribed and analysed
    FAILED = "failed"  # stopped for good; error_message says why


TERMINAL_STATUSES = frozenset({FileStatus.COMPLETED, FileStatus.FAILED})  # nothing more happens


class Stage(enum.StrEnum):
    INGEST = "ingest"  # validate and probe the stored copy (storing happens at submit)
    TRANSCRIBE = "transcribe"  # speech to text
    ANALYZE = "analyze"  # sentiment, summary, keywords, entities


class AnalysisType(enum.StrEnum):
    SENTIMENT = "sentiment"
    SUMMARY = "summary"
    KEYWORDS = "keywords"
    ENTITIES = "entities"
    CONVERSATION = "conversation"  # talk time, overlap, interruptions per speaker (006)
    PII = "pii"  # personal data found in the transcript (006)
    CHAPTERS = "chapters"  # topical sections with headline, gist, summary (006)
    TOPICS = "topics"  # zero-shot labels from a taxonomy (006)
    LLM_SUMMARY = "llm_summary"  # abstractive summary from an OpenAI-compatible server (006)
    CUSTOM = "custom"  # user-defined; may repeat per version


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("email"),
        UniqueConstraint("username"),
        CheckConstraint(_in("role", Role), name="role"),
        CheckConstraint("email ~ '^[^@[:space:]]+@[^@[:space:]]+$'", name="email_format"),
        CheckConstraint("username ~ '^[A-Za-z0-9_.-]{3,50}$'", name="username_format"),
        CheckConstraint("length(password_hash) > 0", name="password_hash_nonempty"),
        CheckConstraint("jsonb_typeof(metadata) = 'object'", name="metadata_object"),
        Index(
            "idx_users_email_active",
            "email",
            postgresql_where=text("is_active AND deleted_at IS NULL"),
        ),
        Index("idx_users_username", "username"),
        Index("idx_users_role", "role"),
        # Migration 004: at most one operator account.
        Index(
            "uq_users_is_operator", "is_operator", unique=True, postgresql_where=text("is_operator")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    email: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(50))
    password_hash: Mapped[str] = mapped_column(Text)
    full_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), server_default=text("'viewer'"))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    last_login_at: Mapped[dt.datetime | None]
    last_activity_at: Mapped[dt.datetime | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=EMPTY_OBJECT)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    deleted_at: Mapped[dt.datetime | None]
    # The local operator account (migration 004): set only by the schema owner, never by a user.
    is_operator: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class AuthSession(Base):
    """A login session (the ``sessions`` table): token hash, client, expiry, revocation."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        CheckConstraint("token_hash ~ '^[0-9a-f]{64}$'", name="token_hash_hex"),
        CheckConstraint("expires_at > created_at", name="expiry_after_creation"),
        CheckConstraint("is_revoked = (revoked_at IS NOT NULL)", name="revocation_time"),
        CheckConstraint("idle_timeout > interval '0'", name="idle_timeout_positive"),
        Index("idx_sessions_user_id", "user_id"),
        Index(
            "idx_sessions_active",
            text("last_accessed_at DESC"),
            postgresql_where=text("NOT is_revoked"),
        ),
        Index("idx_sessions_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(CHAR(64))
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    last_accessed_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    expires_at: Mapped[dt.datetime]
    is_revoked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    revoked_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    # Migration 009: the database refuses the session after this long unused (NULL: never).
    idle_timeout: Mapped[dt.timedelta | None] = mapped_column(INTERVAL)


class AudioFile(Base):
    __tablename__ = "audio_files"
    __table_args__ = (
        CheckConstraint(_in("file_format", AudioFormat), name="file_format"),
        CheckConstraint(_in("status", FileStatus), name="status"),
        CheckConstraint(_in("stage", Stage), name="stage"),
        CheckConstraint("file_size >= 0", name="file_size_nonnegative"),
        CheckConstraint("length(file_name) > 0", name="file_name_nonempty"),
        CheckConstraint("checksum ~ '^[0-9a-f]{64}$'", name="checksum_hex"),
        CheckConstraint("duration_seconds >= 0", name="duration_nonnegative"),
        CheckConstraint("sample_rate > 0", name="sample_rate_positive"),
        CheckConstraint("channels BETWEEN 1 AND 255", name="channels_range"),
        CheckConstraint("bitrate > 0", name="bitrate_positive"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint(
            "status <> 'failed' OR error_message IS NOT NULL", name="failed_has_message"
        ),
        CheckConstraint(
            "processing_completed_at IS NULL OR processing_started_at IS NULL "
            "OR processing_completed_at >= processing_started_at",
            name="processing_order",
        ),
        CheckConstraint("jsonb_typeof(metadata) = 'object'", name="metadata_object"),
        Index("idx_audio_files_user_id_created_at", "user_id", text("created_at DESC")),
        Index("idx_audio_files_status", "status"),
        Index("idx_audio_files_file_format", "file_format"),
        Index(
            "idx_audio_files_queue",
            "status",
            "upload_started_at",
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
        Index("idx_audio_files_user_id_checksum", "user_id", "checksum"),
        Index(
            "idx_audio_files_deleted_at",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
        # Migration 009: a new row's stored copy must not be one another row points at.
        Index("idx_audio_files_file_path", "file_path", postgresql_using="hash"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    file_name: Mapped[str] = mapped_column(String(255))
    file_path: Mapped[str] = mapped_column(Text)
    file_size: Mapped[int] = mapped_column(BigInteger)
    file_format: Mapped[str] = mapped_column(String(10))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    checksum: Mapped[str | None] = mapped_column(CHAR(64))
    duration_seconds: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(SmallInteger)
    bitrate: Mapped[int | None] = mapped_column(Integer)
    codec: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'pending'"))
    stage: Mapped[str] = mapped_column(String(20), server_default=text("'ingest'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_expires_at: Mapped[dt.datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[dict[str, Any] | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=EMPTY_OBJECT)
    upload_started_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    upload_completed_at: Mapped[dt.datetime | None]
    processing_started_at: Mapped[dt.datetime | None]
    processing_completed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    # Soft delete (005): hidden by the API, the stored copy purged after the retention period.
    deleted_at: Mapped[dt.datetime | None]


class Transcription(Base):
    __tablename__ = "transcriptions"
    __table_args__ = (
        UniqueConstraint("audio_file_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("confidence_score BETWEEN 0 AND 1", name="confidence_range"),
        CheckConstraint("language_code ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$'", name="language_code"),
        CheckConstraint("word_count >= 0", name="word_count_nonnegative"),
        CheckConstraint("processing_time_seconds >= 0", name="processing_time_nonnegative"),
        CheckConstraint("jsonb_typeof(segments) = 'array'", name="segments_array"),
        CheckConstraint("jsonb_typeof(metadata) = 'object'", name="metadata_object"),
        Index(
            "uq_transcriptions_latest",
            "audio_file_id",
            unique=True,
            postgresql_where=text("is_latest"),
        ),
        Index("idx_transcriptions_language_code", "language_code"),
        Index("idx_transcriptions_search_vector", "search_vector", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    audio_file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("audio_files.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    is_latest: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    transcription_text: Mapped[str] = mapped_column(Text)
    language_code: Mapped[str | None] = mapped_column(String(10))
    confidence_score: Mapped[Decimal | None] = mapped_column(Numeric(5, 4))
    engine: Mapped[str | None] = mapped_column(String(50))
    engine_version: Mapped[str | None] = mapped_column(String(50))
    model_name: Mapped[str | None] = mapped_column(String(200))
    segments: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    word_count: Mapped[int | None] = mapped_column(Integer)
    processing_time_seconds: Mapped[Decimal | None] = mapped_column(Numeric(10, 3))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=EMPTY_OBJECT)
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english'::regconfig, transcription_text)", persisted=True),
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class Analysis(Base):
    __tablename__ = "analyses"
    __table_args__ = (
        CheckConstraint(_in("analysis_type", AnalysisType), name="analysis_type"),
        CheckConstraint("jsonb_typeof(result) = 'object'", name="result_object"),
        CheckConstraint("jsonb_typeof(parameters) = 'object'", name="parameters_object"),
        CheckConstraint("processing_time_seconds >= 0", name="processing_time_nonnegative"),
        Index(
            "uq_analyses_transcription_id_type",
            "transcription_id",
            "analysis_type",
            unique=True,
            postgresql_where=text("analysis_type <> 'custom'"),
        ),
        Index("idx_analyses_transcription_id", "transcription_id"),
        Index("idx_analyses_analysis_type", "analysis_type"),
        Index(
            "idx_analyses_result",
            "result",
            postgresql_using="gin",
            postgresql_ops={"result": "jsonb_path_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    transcription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("transcriptions.id", ondelete="CASCADE")
    )
    analysis_type: Mapped[str] = mapped_column(String(20))
    result: Mapped[dict[str, Any]]
    model_name: Mapped[str | None] = mapped_column(String(200))
    parameters: Mapped[dict[str, Any]] = mapped_column(server_default=EMPTY_OBJECT)
    processing_time_seconds: Mapped[Decimal | None] = mapped_column(Numeric(10, 3))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class TranscriptRedaction(Base):
    """The redacted form of one transcription version of a ``redact_pii`` job (007).

    What everyone who sees the file may read; the unredacted row in ``transcriptions`` is only
    for those migration 007 allows (docs/call-intelligence.md). ``spans`` lists what was
    redacted (type, word range, times, score) without the data; ``audio_path`` is the storage
    reference of the redacted audio copy, when one was asked for.
    """

    __tablename__ = "transcript_redactions"
    __table_args__ = (
        CheckConstraint("jsonb_typeof(segments) = 'array'", name="segments_array"),
        CheckConstraint("jsonb_typeof(spans) = 'array'", name="spans_array"),
        CheckConstraint("jsonb_typeof(policy) = 'object'", name="policy_object"),
        Index("idx_transcript_redactions_audio_file_id", "audio_file_id"),
    )

    transcription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("transcriptions.id", ondelete="CASCADE"), primary_key=True
    )
    audio_file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("audio_files.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    redacted_text: Mapped[str] = mapped_column(Text)
    segments: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    spans: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    policy: Mapped[dict[str, Any]] = mapped_column(server_default=EMPTY_OBJECT)
    audio_path: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class AuditOperation(enum.StrEnum):
    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class AuditLog(Base):
    """One row change of a main table, written by the ``audit_row_change`` trigger (002).

    Read-only for everyone but the owner; ``password_hash``/``token_hash`` are redacted in the
    JSON. ``db_role`` is the role that ran the statement, ``app_user_id`` the acting app user.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_in("operation", AuditOperation), name="operation"),
        CheckConstraint(
            "(operation = 'INSERT' AND old_data IS NULL AND new_data IS NOT NULL)"
            " OR (operation = 'UPDATE' AND old_data IS NOT NULL AND new_data IS NOT NULL)"
            " OR (operation = 'DELETE' AND old_data IS NOT NULL AND new_data IS NULL)",
            name="data_present",
        ),
        Index("idx_audit_log_table_name_row_id", "table_name", "row_id"),
        Index("idx_audit_log_occurred_at", "occurred_at"),
        Index("idx_audit_log_app_user_id", "app_user_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    table_name: Mapped[str] = mapped_column(String(63))
    operation: Mapped[str] = mapped_column(String(6))
    row_id: Mapped[uuid.UUID | None]
    app_user_id: Mapped[uuid.UUID | None]
    db_role: Mapped[str] = mapped_column(String(63))
    old_data: Mapped[dict[str, Any] | None]
    new_data: Mapped[dict[str, Any] | None]


class KeyScope(enum.StrEnum):
    READ = "read"  # GET requests only
    WRITE = "write"  # also uploads, re-transcriptions, deletes
    ADMIN = "admin"  # also the admin endpoints (effective only for an admin user)


class ApiKey(Base):
    """A key for programs (005): only its SHA-256 is stored; ``key_prefix`` tells keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("key_hash"),
        CheckConstraint("key_hash ~ '^[0-9a-f]{64}$'", name="key_hash_hex"),
        CheckConstraint(_in("scope", KeyScope), name="scope"),
        CheckConstraint("btrim(name) <> ''", name="name_not_blank"),
        Index("idx_api_keys_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(CHAR(64))
    scope: Mapped[str] = mapped_column(String(10), server_default=text("'read'"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    last_used_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class UsageDaily(Base):
    """Audio submitted and processed per user and UTC day, kept by a trigger (005)."""

    __tablename__ = "usage_daily"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    files_submitted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    audio_seconds_submitted: Mapped[Decimal] = mapped_column(
        Numeric(14, 3), server_default=text("0")
    )
    files_processed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    audio_seconds_processed: Mapped[Decimal] = mapped_column(
        Numeric(14, 3), server_default=text("0")
    )


class AppSecret(Base):
    """One row: the per-database secret behind the login decoys (005); only the owner reads it."""

    __tablename__ = "app_secret"
    __table_args__ = (CheckConstraint("id", name="single_row"),)

    id: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    value: Mapped[str] = mapped_column(
        Text,
        server_default=text(
            "replace(((gen_random_uuid())::text || (gen_random_uuid())::text), '-'::text, ''::text)"
        ),
    )


class UserWebhook(Base):
    """A user's default webhook receiver (008), used when a job's options name none."""

    __tablename__ = "user_webhooks"
    __table_args__ = (
        CheckConstraint("url ~* '^https?://'", name="url_http"),
        CheckConstraint(
            "(auth_header_name IS NULL) = (auth_header_value IS NULL)", name="auth_pair"
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    auth_header_name: Mapped[str | None] = mapped_column(String(100))
    auth_header_value: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class WebhookStatus(enum.StrEnum):
    PENDING = "pending"  # to be (re)tried at next_attempt_at
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # stopped for good; last_error says why


class WebhookEvent(enum.StrEnum):
    COMPLETED = "file.completed"
    FAILED = "file.failed"


class WebhookResult(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: another attempt is scheduled
    STOPPED = "stopped"  # permanent, or the retry window is over


class WebhookOutbox(Base):
    """One webhook message (008), written in the transaction of the file's final status;
    ``id`` is its Standard Webhooks ``webhook-id``."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        CheckConstraint(_in("event", WebhookEvent), name="event"),
        CheckConstraint(_in("status", WebhookStatus), name="status"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index(
            "idx_webhook_outbox_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("idx_webhook_outbox_audio_file_id", "audio_file_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    audio_file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("audio_files.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(2000))
    auth_header_name: Mapped[str | None] = mapped_column(String(100))
    auth_header_value: Mapped[str | None] = mapped_column(String(2000))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    lease_expires_at: Mapped[dt.datetime | None]
    give_up_at: Mapped[dt.datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    finished_at: Mapped[dt.datetime | None]


class WebhookAttempt(Base):
    """One delivery attempt of a webhook message (008)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (CheckConstraint(_in("result", WebhookResult), name="result"),)

    outbox_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_outbox.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    duration_ms: Mapped[int] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    result: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
