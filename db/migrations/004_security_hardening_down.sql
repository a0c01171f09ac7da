-- 004_security_hardening (down): back to the schema of 003. The operator row stays (a plain
-- admin account, as get_or_create_operator made it before 004); the teleai_intake role stays
-- too, like the group roles of 002, since other databases of the cluster may still use it.

DROP POLICY audio_files_intake_update ON audio_files;
DROP POLICY audio_files_intake_insert ON audio_files;
DROP POLICY audio_files_intake_select ON audio_files;
DROP POLICY users_intake_select ON users;
REVOKE ALL ON users, audio_files FROM teleai_intake;
REVOKE EXECUTE ON FUNCTION operator_user_id() FROM teleai_intake;
REVOKE USAGE ON SCHEMA public FROM teleai_intake;

DROP TRIGGER trg_audio_files_stored_copy_is_fixed ON audio_files;
DROP FUNCTION audio_files_stored_copy_is_fixed();
GRANT INSERT ON audio_files TO teleai_app;

DROP FUNCTION operator_user_id();
DROP TRIGGER trg_users_guard ON users;
DROP FUNCTION users_guard();
DROP FUNCTION reserved_usernames();
DROP FUNCTION caller_is_owner();
DROP INDEX uq_users_is_operator;
ALTER TABLE users DROP COLUMN is_operator;
