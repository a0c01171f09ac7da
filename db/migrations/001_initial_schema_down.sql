-- 001_initial_schema (down): removes every object that 001 up created, in dependency order.
--   psql -v ON_ERROR_STOP=1 -1 -d teleai_pro -f db/migrations/001_initial_schema_down.sql
-- The extensions go too: 001 up created them (in a database where they already existed before
-- 001, remove the two DROP EXTENSION lines).

DROP MATERIALIZED VIEW IF EXISTS file_processing_analytics;
DROP VIEW IF EXISTS user_activity_summary;

DROP TABLE IF EXISTS analyses;
DROP TABLE IF EXISTS transcriptions;
DROP TABLE IF EXISTS audio_files;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS users;

DROP FUNCTION IF EXISTS set_updated_at();

DROP EXTENSION IF EXISTS pgcrypto;
DROP EXTENSION IF EXISTS "uuid-ossp";
