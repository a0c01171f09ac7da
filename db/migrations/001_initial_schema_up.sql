-- 001_initial_schema (up): the TeleAI Pro schema of shared/spec/schema-design.md.
--
-- Apply with `teleai db upgrade` (transactional, recorded, advisory-locked), or by hand:
--   psql -v ON_ERROR_STOP=1 -1 -d teleai_pro -f db/migrations/001_initial_schema_up.sql
-- This file is never edited after it lands; later changes are new numbered files.
--
-- Naming rule: pk_<table>, fk_<table>_<column>, uq_<table>_<columns>, ck_<table>_<rule>,
-- idx_<table>_<columns>[_<filter>]. Enum-like columns are text + CHECK (cheap to extend in a
-- later migration, unlike a PostgreSQL ENUM inside a transaction).

CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- Keeps updated_at honest whatever client writes the row.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- users: accounts with role-based access, soft deletion and activity tracking.
CREATE TABLE users (
    id               uuid         NOT NULL DEFAULT uuid_generate_v4(),
    email            varchar(255) NOT NULL,
    username         varchar(50)  NOT NULL,
    password_hash    text         NOT NULL,
    full_name        varchar(255),
    role             varchar(20)  NOT NULL DEFAULT 'viewer',
    is_active        boolean      NOT NULL DEFAULT true,
    last_login_at    timestamptz,
    last_activity_at timestamptz,
    metadata         jsonb        NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz  NOT NULL DEFAULT now(),
    updated_at       timestamptz  NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CONSTRAINT pk_users PRIMARY KEY (id),
    CONSTRAINT uq_users_email UNIQUE (email),
    CONSTRAINT uq_users_username UNIQUE (username),
    CONSTRAINT ck_users_role CHECK (role IN ('admin', 'manager', 'analyst', 'viewer')),
    CONSTRAINT ck_users_email_format CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT ck_users_username_format CHECK (username ~ '^[A-Za-z0-9_.-]{3,50}$'),
    CONSTRAINT ck_users_password_hash_nonempty CHECK (length(password_hash) > 0),
    CONSTRAINT ck_users_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

-- Login looks up active, not-deleted accounts by email; the partial index holds only those.
CREATE INDEX idx_users_email_active ON users (email) WHERE is_active AND deleted_at IS NULL;
CREATE INDEX idx_users_username ON users (username);
CREATE INDEX idx_users_role ON users (role);

CREATE TRIGGER trg_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- sessions: token-based authentication. Only a SHA-256 hash of the token is stored.
CREATE TABLE sessions (
    id               uuid        NOT NULL DEFAULT uuid_generate_v4(),
    user_id          uuid        NOT NULL,
    token_hash       char(64)    NOT NULL,
    ip_address       inet,
    user_agent       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_accessed_at timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    is_revoked       boolean     NOT NULL DEFAULT false,
    revoked_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_sessions PRIMARY KEY (id),
    -- A user's sessions die with the user row (hard deletes only; users are soft-deleted).
    CONSTRAINT fk_sessions_user_id FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT uq_sessions_token_hash UNIQUE (token_hash),
    CONSTRAINT ck_sessions_token_hash_hex CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT ck_sessions_expiry_after_creation CHECK (expires_at > created_at),
    CONSTRAINT ck_sessions_revocation_time CHECK (is_revoked = (revoked_at IS NOT NULL))
);

CREATE INDEX idx_sessions_user_id ON sessions (user_id);
CREATE INDEX idx_sessions_active ON sessions (last_accessed_at DESC) WHERE NOT is_revoked;
CREATE INDEX idx_sessions_expires_at ON sessions (expires_at);

CREATE TRIGGER trg_sessions_updated_at BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- audio_files: one uploaded file, its probed metadata and its processing state.
CREATE TABLE audio_files (
    id                      uuid          NOT NULL DEFAULT uuid_generate_v4(),
    user_id                 uuid          NOT NULL,
    file_name               varchar(255)  NOT NULL,
    file_path               text          NOT NULL,
    file_size               bigint        NOT NULL,
    file_format             varchar(10)   NOT NULL,
    mime_type               varchar(100),
    checksum                char(64),
    duration_seconds        numeric(12,3),
    sample_rate             integer,
    channels                smallint,
    bitrate                 integer,
    codec                   varchar(50),
    -- pending -> processing -> completed | failed; `stage` says which step runs or ran last.
    status                  varchar(20)   NOT NULL DEFAULT 'pending',
    stage                   varchar(20)   NOT NULL DEFAULT 'ingest',
    attempts                integer       NOT NULL DEFAULT 0,
    lease_expires_at        timestamptz,
    error_message           text,
    error_details           jsonb,
    metadata                jsonb         NOT NULL DEFAULT '{}'::jsonb,
    upload_started_at       timestamptz   NOT NULL DEFAULT now(),
    upload_completed_at     timestamptz,
    processing_started_at   timestamptz,
    processing_completed_at timestamptz,
    created_at              timestamptz   NOT NULL DEFAULT now(),
    updated_at              timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT pk_audio_files PRIMARY KEY (id),
    -- Users are soft-deleted; a hard delete of a user who still owns audio is refused rather
    -- than silently destroying their recordings and transcripts.
    CONSTRAINT fk_audio_files_user_id FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT,
    CONSTRAINT ck_audio_files_file_format
        CHECK (file_format IN ('mp3', 'wav', 'ogg', 'm4a', 'flac', 'webm')),
    CONSTRAINT ck_audio_files_status
        CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    CONSTRAINT ck_audio_files_stage CHECK (stage IN ('ingest', 'transcribe', 'analyze')),
    CONSTRAINT ck_audio_files_file_size_nonnegative CHECK (file_size >= 0),
    CONSTRAINT ck_audio_files_file_name_nonempty CHECK (length(file_name) > 0),
    CONSTRAINT ck_audio_files_checksum_hex CHECK (checksum ~ '^[0-9a-f]{64}$'),
    CONSTRAINT ck_audio_files_duration_nonnegative CHECK (duration_seconds >= 0),
    CONSTRAINT ck_audio_files_sample_rate_positive CHECK (sample_rate > 0),
    CONSTRAINT ck_audio_files_channels_range CHECK (channels BETWEEN 1 AND 255),
    CONSTRAINT ck_audio_files_bitrate_positive CHECK (bitrate > 0),
    CONSTRAINT ck_audio_files_attempts_nonnegative CHECK (attempts >= 0),
    CONSTRAINT ck_audio_files_failed_has_message
        CHECK (status <> 'failed' OR error_message IS NOT NULL),
    CONSTRAINT ck_audio_files_processing_order
        CHECK (processing_completed_at IS NULL OR processing_started_at IS NULL
               OR processing_completed_at >= processing_started_at),
    CONSTRAINT ck_audio_files_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX idx_audio_files_user_id_created_at ON audio_files (user_id, created_at DESC);
CREATE INDEX idx_audio_files_status ON audio_files (status);
CREATE INDEX idx_audio_files_file_format ON audio_files (file_format);
-- The processing-queue query and the reaper only ever look at unfinished rows: a small partial
-- index stays small however many completed files pile up.
CREATE INDEX idx_audio_files_queue ON audio_files (status, upload_started_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX idx_audio_files_user_id_checksum ON audio_files (user_id, checksum);

CREATE TRIGGER trg_audio_files_updated_at BEFORE UPDATE ON audio_files
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- transcriptions: versioned transcripts; exactly one latest version per file.
CREATE TABLE transcriptions (
    id                      uuid          NOT NULL DEFAULT uuid_generate_v4(),
    audio_file_id           uuid          NOT NULL,
    version                 integer       NOT NULL DEFAULT 1,
    is_latest               boolean       NOT NULL DEFAULT true,
    transcription_text      text          NOT NULL,
    language_code           varchar(10),
    confidence_score        numeric(5,4),
    engine                  varchar(50),
    engine_version          varchar(50),
    model_name              varchar(200),
    segments                jsonb         NOT NULL DEFAULT '[]'::jsonb,
    word_count              integer,
    processing_time_seconds numeric(10,3),
    metadata                jsonb         NOT NULL DEFAULT '{}'::jsonb,
    search_vector           tsvector      GENERATED ALWAYS AS
                                (to_tsvector('english'::regconfig, transcription_text)) STORED,
    created_at              timestamptz   NOT NULL DEFAULT now(),
    updated_at              timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT pk_transcriptions PRIMARY KEY (id),
    -- Transcripts are derived data of their file: deleting the file deletes them.
    CONSTRAINT fk_transcriptions_audio_file_id FOREIGN KEY (audio_file_id)
        REFERENCES audio_files (id) ON DELETE CASCADE,
    CONSTRAINT uq_transcriptions_audio_file_id_version UNIQUE (audio_file_id, version),
    CONSTRAINT ck_transcriptions_version_positive CHECK (version >= 1),
    CONSTRAINT ck_transcriptions_confidence_range CHECK (confidence_score BETWEEN 0 AND 1),
    CONSTRAINT ck_transcriptions_language_code
        CHECK (language_code ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$'),
    CONSTRAINT ck_transcriptions_word_count_nonnegative CHECK (word_count >= 0),
    CONSTRAINT ck_transcriptions_processing_time_nonnegative CHECK (processing_time_seconds >= 0),
    CONSTRAINT ck_transcriptions_segments_array CHECK (jsonb_typeof(segments) = 'array'),
    CONSTRAINT ck_transcriptions_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

-- At most one latest version per file, enforced by the database; also the latest-version lookup.
CREATE UNIQUE INDEX uq_transcriptions_latest ON transcriptions (audio_file_id) WHERE is_latest;
CREATE INDEX idx_transcriptions_language_code ON transcriptions (language_code);
CREATE INDEX idx_transcriptions_search_vector ON transcriptions USING gin (search_vector);

CREATE TRIGGER trg_transcriptions_updated_at BEFORE UPDATE ON transcriptions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- analyses: AI analysis results of one transcription version.
CREATE TABLE analyses (
    id                      uuid          NOT NULL DEFAULT uuid_generate_v4(),
    transcription_id        uuid          NOT NULL,
    analysis_type           varchar(20)   NOT NULL,
    result                  jsonb         NOT NULL,
    model_name              varchar(200),
    parameters              jsonb         NOT NULL DEFAULT '{}'::jsonb,
    processing_time_seconds numeric(10,3),
    created_at              timestamptz   NOT NULL DEFAULT now(),
    updated_at              timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT pk_analyses PRIMARY KEY (id),
    -- Analyses belong to one transcription version and go with it.
    CONSTRAINT fk_analyses_transcription_id FOREIGN KEY (transcription_id)
        REFERENCES transcriptions (id) ON DELETE CASCADE,
    CONSTRAINT ck_analyses_analysis_type
        CHECK (analysis_type IN ('sentiment', 'summary', 'keywords', 'entities', 'custom')),
    CONSTRAINT ck_analyses_result_object CHECK (jsonb_typeof(result) = 'object'),
    CONSTRAINT ck_analyses_parameters_object CHECK (jsonb_typeof(parameters) = 'object'),
    CONSTRAINT ck_analyses_processing_time_nonnegative CHECK (processing_time_seconds >= 0)
);

-- One built-in analysis of each type per transcription version: a redelivered analyze task
-- cannot write a duplicate. 'custom' analyses may repeat.
CREATE UNIQUE INDEX uq_analyses_transcription_id_type ON analyses (transcription_id, analysis_type)
    WHERE analysis_type <> 'custom';
CREATE INDEX idx_analyses_transcription_id ON analyses (transcription_id);
CREATE INDEX idx_analyses_analysis_type ON analyses (analysis_type);
CREATE INDEX idx_analyses_result ON analyses USING gin (result jsonb_path_ops);

CREATE TRIGGER trg_analyses_updated_at BEFORE UPDATE ON analyses
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Views.

-- Per-user totals. LATERAL subqueries aggregate each user's rows separately (no join fan-out)
-- and let a `WHERE user_id = …` on the view use the per-user indexes.
CREATE VIEW user_activity_summary AS
SELECT
    u.id                                   AS user_id,
    u.username,
    u.email,
    u.role,
    u.is_active,
    COALESCE(f.total_files, 0)             AS total_files,
    COALESCE(t.total_transcriptions, 0)    AS total_transcriptions,
    COALESCE(a.total_analyses, 0)          AS total_analyses,
    f.last_upload_at,
    u.last_login_at
FROM users u
LEFT JOIN LATERAL (
    SELECT count(*) AS total_files, max(af.upload_started_at) AS last_upload_at
    FROM audio_files af WHERE af.user_id = u.id
) f ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS total_transcriptions
    FROM transcriptions tr JOIN audio_files af ON af.id = tr.audio_file_id
    WHERE af.user_id = u.id
) t ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS total_analyses
    FROM analyses an
    JOIN transcriptions tr ON tr.id = an.transcription_id
    JOIN audio_files af ON af.id = tr.audio_file_id
    WHERE af.user_id = u.id
) a ON true
WHERE u.deleted_at IS NULL;

-- Daily processing analytics by format and status. Days are UTC days so a refresh gives the
-- same rows whatever the session's TimeZone.
CREATE MATERIALIZED VIEW file_processing_analytics AS
SELECT
    (af.created_at AT TIME ZONE 'UTC')::date                     AS day,
    af.file_format,
    af.status,
    count(*)                                                     AS file_count,
    avg(af.file_size)                                            AS avg_file_size_bytes,
    avg(af.duration_seconds)                                     AS avg_duration_seconds,
    avg(EXTRACT(EPOCH FROM (af.processing_completed_at - af.processing_started_at)))
                                                                 AS avg_processing_seconds
FROM audio_files af
GROUP BY 1, 2, 3
WITH DATA;

-- REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index over all rows.
CREATE UNIQUE INDEX uq_file_processing_analytics_day_format_status
    ON file_processing_analytics (day, file_format, status);

-- ---------------------------------------------------------------------------------------------
-- Row-level security is enabled on every main table, as the spec asks. Until policies exist
-- (migration 002), roles other than the table owner see no rows; table owners and superusers
-- bypass RLS unless FORCE ROW LEVEL SECURITY is set.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE audio_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE transcriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE analyses ENABLE ROW LEVEL SECURITY;
