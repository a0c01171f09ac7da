-- 009_rls_enforcement (down): back to exactly the schema of 008 (uploads through intake, the
-- idle timeout and key scopes enforced by the API, soft-deleted files hidden by the API).

REVOKE SELECT (id, email, username, full_name, role, is_active, last_login_at, last_activity_at,
               metadata, created_at, updated_at, deleted_at, is_operator)
    ON users FROM teleai_intake;
GRANT SELECT ON users TO teleai_intake;

DROP TRIGGER trg_audio_files_notify ON audio_files;
DROP FUNCTION audio_files_notify();

DROP TRIGGER trg_audio_files_new_stored_copy ON audio_files;
DROP FUNCTION audio_files_new_stored_copy();
DROP FUNCTION stored_copy_is_referenced(text);
DROP INDEX idx_audio_files_file_path;
DROP POLICY audio_files_insert_own ON audio_files;
REVOKE INSERT ON audio_files FROM teleai_app;

CREATE OR REPLACE FUNCTION search_latest_transcriptions(
    search_query text, max_results integer DEFAULT 20, only_owner uuid DEFAULT NULL)
RETURNS TABLE (transcription_id uuid, audio_file_id uuid, file_name varchar, rank real,
               snippet text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    caller name := CASE WHEN current_setting('role') = 'none' THEN session_user
                        ELSE current_setting('role')::name END;
    sees_all boolean;
    bypass boolean;
    acting uuid;
    acting_role text;
    words text;
    tsq tsquery;
BEGIN
    IF max_results IS NULL OR max_results NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'max_results must be between 1 and 100, got %', max_results
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT r.rolsuper OR r.rolbypassrls INTO sees_all FROM pg_roles r WHERE r.rolname = caller;
    bypass := coalesce(sees_all, false);
    IF NOT coalesce(sees_all, false) THEN
        IF NOT pg_has_role(caller, 'teleai_app', 'USAGE') THEN
            RETURN;
        END IF;
        acting := public.current_app_user_id();
        acting_role := public.current_app_role();
        IF acting IS NULL OR acting_role IS NULL THEN
            RETURN;
        END IF;
        sees_all := acting_role IN ('admin', 'manager', 'analyst');
    END IF;

    words := left(array_to_string(
        (regexp_split_to_array(btrim(coalesce(search_query, ''), E' \t\n\r\f\v'), E'\\s+'))[1:16],
        ' '), 256);
    tsq := websearch_to_tsquery('english', words);
    IF numnode(tsq) = 0 THEN  -- no searchable words (empty, punctuation, stop words only)
        RETURN;
    END IF;

    -- The top hits are picked first; only they get the (costly) ts_headline.
    RETURN QUERY
    WITH hits AS (
        SELECT t.id AS hit_id, t.audio_file_id AS hit_file, af.file_name AS hit_name,
               t.transcription_text AS body, ts_rank_cd(t.search_vector, tsq) AS hit_rank,
               t.created_at AS hit_created
        FROM public.transcriptions t
        JOIN public.audio_files af ON af.id = t.audio_file_id
        WHERE t.is_latest
          AND t.search_vector @@ tsq
          AND (sees_all OR af.user_id = acting)
          AND (only_owner IS NULL OR af.user_id = only_owner)
          AND (bypass OR public.pii_unredacted_visible(t.audio_file_id))
        ORDER BY hit_rank DESC, hit_created DESC, hit_id
        LIMIT max_results
    )
    SELECT h.hit_id, h.hit_file, h.hit_name, h.hit_rank,
           ts_headline('english', h.body, tsq,
                       'StartSel="**", StopSel="**", MaxWords=35, MinWords=15, MaxFragments=2')
    FROM hits h
    ORDER BY h.hit_rank DESC, h.hit_created DESC, h.hit_id;
END;
$$;

DROP POLICY analyses_deleted_hidden ON analyses;
DROP POLICY transcript_redactions_deleted_hidden ON transcript_redactions;
DROP POLICY transcriptions_deleted_hidden ON transcriptions;
DROP FUNCTION transcription_is_shown(uuid);
DROP FUNCTION file_is_shown(uuid);
DROP POLICY audio_files_deleted_frozen ON audio_files;
DROP POLICY audio_files_deleted_hidden ON audio_files;

DO $$
DECLARE
    tbl text;
    cmd text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['audio_files', 'transcriptions', 'analyses', 'transcript_redactions',
                               'user_webhooks', 'users', 'sessions', 'api_keys'] LOOP
        FOREACH cmd IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE format('DROP POLICY %I ON %I', tbl || '_scope_' || cmd, tbl);
        END LOOP;
    END LOOP;
END
$$;
DROP FUNCTION current_app_scope();

DROP FUNCTION app_open_session(text, text, text, inet, text, interval, interval);
CREATE FUNCTION app_open_session(login text, proof text, token text, ip inet, agent text,
                                 ttl interval)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    user_found uuid;
BEGIN
    IF ttl IS NULL OR ttl <= interval '0' OR token IS NULL OR length(token) < 32 THEN
        RAISE EXCEPTION 'a session needs a positive ttl and a token of at least 32 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.id INTO user_found FROM public.users u
    WHERE CASE WHEN strpos(login, '@') > 0 THEN u.email = lower(btrim(login))
               ELSE u.username = login END
      AND u.is_active AND u.deleted_at IS NULL
      AND u.password_hash = proof;
    IF user_found IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.sessions (user_id, token_hash, ip_address, user_agent, expires_at)
    VALUES (user_found, encode(sha256(convert_to(token, 'UTF8')), 'hex'), ip,
            left(agent, 1024), now() + ttl);
    UPDATE public.users SET last_login_at = now(), last_activity_at = now() WHERE id = user_found;
    RETURN user_found;
END;
$$;
REVOKE ALL ON FUNCTION app_open_session(text, text, text, inet, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_open_session(text, text, text, inet, text, interval) TO teleai_app;

CREATE OR REPLACE FUNCTION app_credential()
RETURNS TABLE (kind text, credential_id uuid, user_id uuid, scope text, last_used_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    presented text := NULLIF(current_setting('app.credential', true), '');
    hashed char(64);
BEGIN
    IF presented IS NULL THEN
        RETURN;
    END IF;
    hashed := encode(sha256(convert_to(presented, 'UTF8')), 'hex');
    RETURN QUERY
    SELECT 'session'::text, s.id, s.user_id, 'admin'::text, s.last_accessed_at
    FROM public.sessions s
    WHERE s.token_hash = hashed AND NOT s.is_revoked AND s.expires_at > now();
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT 'key'::text, k.id, k.user_id, k.scope::text, k.last_used_at
    FROM public.api_keys k
    WHERE k.key_hash = hashed AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now());
END;
$$;

ALTER TABLE sessions DROP CONSTRAINT ck_sessions_idle_timeout_positive;
ALTER TABLE sessions DROP COLUMN idle_timeout;
