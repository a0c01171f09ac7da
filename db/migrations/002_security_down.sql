-- 002_security (down): back to exactly the schema of 001.
--
-- The group roles teleai_app and teleai_worker are cluster-wide and stay: other databases of
-- the cluster may still grant them privileges (DROP ROLE would fail there or break them), and
-- login roles made members of them would lose their grouping. Drop them by hand once no
-- database uses them:  DROP ROLE teleai_app; DROP ROLE teleai_worker;

DROP TRIGGER trg_users_audit ON users;
DROP TRIGGER trg_sessions_audit ON sessions;
DROP TRIGGER trg_audio_files_audit ON audio_files;
DROP TRIGGER trg_transcriptions_audit ON transcriptions;
DROP TRIGGER trg_analyses_audit ON analyses;
DROP FUNCTION audit_row_change();
DROP FUNCTION audit_redact(jsonb, jsonb);
DROP TABLE audit_log;

DROP POLICY users_self_select ON users;
DROP POLICY users_self_update ON users;
DROP POLICY users_admin_all ON users;
DROP POLICY sessions_own_all ON sessions;
DROP POLICY sessions_admin_all ON sessions;
DROP POLICY audio_files_own_select ON audio_files;
DROP POLICY audio_files_staff_select ON audio_files;
DROP POLICY audio_files_analyst_own_all ON audio_files;
DROP POLICY audio_files_manager_all ON audio_files;
DROP POLICY audio_files_worker_select ON audio_files;
DROP POLICY audio_files_worker_update ON audio_files;
DROP POLICY transcriptions_own_select ON transcriptions;
DROP POLICY transcriptions_staff_select ON transcriptions;
DROP POLICY transcriptions_manager_all ON transcriptions;
DROP POLICY transcriptions_worker_select ON transcriptions;
DROP POLICY transcriptions_worker_insert ON transcriptions;
DROP POLICY transcriptions_worker_update ON transcriptions;
DROP POLICY analyses_own_select ON analyses;
DROP POLICY analyses_staff_select ON analyses;
DROP POLICY analyses_analyst_insert ON analyses;
DROP POLICY analyses_analyst_update ON analyses;
DROP POLICY analyses_manager_all ON analyses;
DROP POLICY analyses_worker_select ON analyses;
DROP POLICY analyses_worker_insert ON analyses;

-- RLS itself stays ENABLED: 001 enabled it.
ALTER TABLE users NO FORCE ROW LEVEL SECURITY;
ALTER TABLE sessions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE audio_files NO FORCE ROW LEVEL SECURITY;
ALTER TABLE transcriptions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE analyses NO FORCE ROW LEVEL SECURITY;

ALTER VIEW user_activity_summary RESET (security_invoker);

-- A table-level REVOKE also removes the column-level grants.
REVOKE ALL ON users, sessions, audio_files, transcriptions, analyses, user_activity_summary
    FROM teleai_app, teleai_worker;

DROP FUNCTION purge_expired_sessions(interval);
DROP FUNCTION refresh_file_processing_analytics();
DROP FUNCTION app_session_user_id(text);
DROP FUNCTION app_login_user_id(text);
DROP FUNCTION current_app_role();
DROP FUNCTION current_app_user_id();

REVOKE USAGE ON SCHEMA public FROM teleai_app, teleai_worker;
