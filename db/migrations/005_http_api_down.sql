-- 005_http_api (down): back to exactly the schema of 003 (the acting user named by
-- app.current_user_id again, the look-ups of 002 executable by teleai_app again).

DROP POLICY usage_daily_admin_select ON usage_daily;
DROP POLICY usage_daily_own_select ON usage_daily;
DROP POLICY api_keys_admin_all ON api_keys;
DROP POLICY api_keys_own_all ON api_keys;

GRANT EXECUTE ON FUNCTION app_login_user_id(text), app_session_user_id(text) TO teleai_app;

CREATE OR REPLACE FUNCTION current_app_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER AS $$
    SELECT NULLIF(current_setting('app.current_user_id', true), '')::uuid
$$;

CREATE OR REPLACE FUNCTION current_app_role() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT u.role::text FROM public.users u
    WHERE u.id = public.current_app_user_id() AND u.is_active AND u.deleted_at IS NULL
$$;

DROP FUNCTION app_open_session(text, text, text, inet, text, interval);
DROP FUNCTION app_password_salt(text);
DROP FUNCTION app_touch_credential();
DROP FUNCTION app_authenticate(text);
DROP FUNCTION app_whoami();
DROP FUNCTION app_credential();

DROP TABLE app_secret;

DROP INDEX idx_audio_files_deleted_at;
ALTER TABLE audio_files DROP COLUMN deleted_at;

DROP TRIGGER trg_audio_files_usage ON audio_files;
DROP FUNCTION usage_count();
DROP TABLE usage_daily;

CREATE OR REPLACE FUNCTION audit_redact(doc jsonb, previous jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT doc || COALESCE(
        (SELECT jsonb_object_agg(
                    secret,
                    CASE WHEN previous IS NOT NULL AND previous -> secret IS DISTINCT FROM doc -> secret
                         THEN '"[redacted: changed]"'::jsonb ELSE '"[redacted]"'::jsonb END)
         FROM unnest(ARRAY['password_hash', 'token_hash']) AS secret
         WHERE doc ? secret),
        '{}'::jsonb)
$$;

DROP TRIGGER trg_api_keys_audit ON api_keys;
DROP TRIGGER trg_api_keys_revocation_is_final ON api_keys;
DROP FUNCTION api_keys_revocation_is_final();
DROP TABLE api_keys;
