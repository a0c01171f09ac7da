-- 009_rls_enforcement (up): what the API still decided in Python, decided by the database.
--
-- After 005 the database derived the acting user from the credential, but four rules were
-- still the API's: uploads (teleai_app could not INSERT files, so API uploads went through the
-- intake role, which may insert a file for anyone), the idle timeout of sessions, the scope of
-- API keys (read / write / admin) and the hiding of soft-deleted files. A compromised or buggy
-- API process could therefore insert files for any user, keep using an idle session, write
-- with a read-only key, and show deleted files. From here on:
--
--   * Uploads: teleai_app may INSERT audio_files again, under a RESTRICTIVE policy: the row's
--     owner is the acting user (derived from the credential, so another user's file needs that
--     user's credential), the role is one that may own files (analyst, manager, admin, as the
--     permissive policies of 002 say; viewers only read), and the row starts as a fresh
--     submission (pending at ingest, not leased, not deleted, no error). What 004 protected
--     stays protected: a new row's file_path must not be a stored copy another row already
--     points at (trg_audio_files_new_stored_copy; the owner is exempt), so a user cannot have
--     someone else's recording transcribed into their own account; file_path, file_size and
--     checksum stay fixed after the insert (004's trigger). The API records uploads as the
--     caller through the one submit function (workers.submit), like the CLI and drop folder.
--   * Idle timeout: a session carries the idle timeout it was opened with (sessions.idle_timeout,
--     set by app_open_session from the API's setting; NULL: none, for sessions the owner mints),
--     and app_credential() refuses a session unused for longer, as it refuses a revoked or
--     expired one. last_accessed_at is touched at most once a minute (005), so a session ends
--     between idle_timeout and idle_timeout + 1 minute after its last use.
--   * Scope: current_app_scope() is the credential's scope (sessions: 'admin'; the role still
--     limits them). RESTRICTIVE policies on every table teleai_app writes: a 'read' credential
--     can INSERT, UPDATE or DELETE nothing; changing another user's account, sessions or keys
--     needs 'admin' (an admin user with a 'write' key changes only their own).
--   * Soft delete: a deleted file (audio_files.deleted_at) is invisible to every role but admin
--     (RESTRICTIVE SELECT policy), and so are its transcripts, redactions and analyses, in
--     search too; a deleted file cannot be changed by a non-admin. The one exception is the
--     transaction that deleted it (deleted_at = now(), the transaction's start time): an UPDATE
--     whose new row its own SELECT policies hid would fail ("new row violates row-level
--     security policy"), so the deleting transaction still sees what it deleted, nobody later.
--
-- Also here:
--   * Live status: trg_audio_files_notify sends NOTIFY teleai_file_status with the file id when
--     a file is inserted or its status, stage or deleted_at changes (delivered at commit), so
--     the API's event streams wake on a change instead of polling every second. The payload
--     is the id only; a listener re-reads the row under its own policies.
--   * Intake reads accounts without their secret: teleai_intake has SELECT on every column of
--     users but password_hash (it resolves --user and the operator account; it never logs in).

-- ---------------------------------------------------------------------------------------------
-- Idle timeout of sessions.
ALTER TABLE sessions ADD COLUMN idle_timeout interval;
ALTER TABLE sessions ADD CONSTRAINT ck_sessions_idle_timeout_positive
    CHECK (idle_timeout > interval '0');

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
    WHERE s.token_hash = hashed AND NOT s.is_revoked AND s.expires_at > now()
      AND (s.idle_timeout IS NULL OR s.last_accessed_at > now() - s.idle_timeout);
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

-- 005's login step 2 with the session's idle timeout (NULL: none).
DROP FUNCTION app_open_session(text, text, text, inet, text, interval);
CREATE FUNCTION app_open_session(login text, proof text, token text, ip inet, agent text,
                                 ttl interval, idle interval DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    user_found uuid;
BEGIN
    IF ttl IS NULL OR ttl <= interval '0' OR token IS NULL OR length(token) < 32 THEN
        RAISE EXCEPTION 'a session needs a positive ttl and a token of at least 32 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF idle IS NOT NULL AND idle <= interval '0' THEN
        RAISE EXCEPTION 'an idle timeout must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.id INTO user_found FROM public.users u
    WHERE CASE WHEN strpos(login, '@') > 0 THEN u.email = lower(btrim(login))
               ELSE u.username = login END
      AND u.is_active AND u.deleted_at IS NULL
      AND u.password_hash = proof;
    IF user_found IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.sessions (user_id, token_hash, ip_address, user_agent, expires_at,
                                 idle_timeout)
    VALUES (user_found, encode(sha256(convert_to(token, 'UTF8')), 'hex'), ip,
            left(agent, 1024), now() + ttl, idle);
    UPDATE public.users SET last_login_at = now(), last_activity_at = now() WHERE id = user_found;
    RETURN user_found;
END;
$$;
REVOKE ALL ON FUNCTION app_open_session(text, text, text, inet, text, interval, interval)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_open_session(text, text, text, inet, text, interval, interval)
    TO teleai_app;

-- ---------------------------------------------------------------------------------------------
-- Scope of the credential.
CREATE FUNCTION current_app_scope() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (SELECT c.scope FROM public.app_credential() c);
END;
$$;
REVOKE ALL ON FUNCTION current_app_scope() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_app_scope() TO teleai_app;

-- Data tables: any write needs 'write' (or 'admin').
DO $$
DECLARE
    tbl text;
    cmd text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['audio_files', 'transcriptions', 'analyses',
                               'transcript_redactions', 'user_webhooks'] LOOP
        FOREACH cmd IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE format(
                'CREATE POLICY %I ON %I AS RESTRICTIVE FOR %s TO teleai_app %s',
                tbl || '_scope_' || cmd, tbl, upper(cmd),
                CASE cmd
                    WHEN 'insert' THEN 'WITH CHECK ((SELECT current_app_scope()) IN (''write'', ''admin''))'
                    WHEN 'update' THEN 'USING ((SELECT current_app_scope()) IN (''write'', ''admin'')) '
                                       'WITH CHECK ((SELECT current_app_scope()) IN (''write'', ''admin''))'
                    ELSE 'USING ((SELECT current_app_scope()) IN (''write'', ''admin''))'
                END);
        END LOOP;
    END LOOP;
END
$$;

-- Accounts, sessions, keys: one's own with 'write', anyone's with 'admin'.
DO $$
DECLARE
    tbl text;
    owner_column text;
    cmd text;
    rule text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['users', 'sessions', 'api_keys'] LOOP
        owner_column := CASE tbl WHEN 'users' THEN 'id' ELSE 'user_id' END;
        rule := format('((SELECT current_app_scope()) = ''admin'' OR '
                       '((SELECT current_app_scope()) = ''write'' '
                       'AND %I = (SELECT current_app_user_id())))', owner_column);
        FOREACH cmd IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE format(
                'CREATE POLICY %I ON %I AS RESTRICTIVE FOR %s TO teleai_app %s',
                tbl || '_scope_' || cmd, tbl, upper(cmd),
                CASE cmd
                    WHEN 'insert' THEN 'WITH CHECK ' || rule
                    WHEN 'update' THEN 'USING ' || rule || ' WITH CHECK ' || rule
                    ELSE 'USING ' || rule
                END);
        END LOOP;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Soft-deleted files: invisible but to admins (and to the transaction that deleted them).
CREATE POLICY audio_files_deleted_hidden ON audio_files AS RESTRICTIVE FOR SELECT TO teleai_app
    USING (deleted_at IS NULL OR deleted_at = now() OR (SELECT current_app_role()) = 'admin');
CREATE POLICY audio_files_deleted_frozen ON audio_files AS RESTRICTIVE FOR UPDATE TO teleai_app
    USING (deleted_at IS NULL OR (SELECT current_app_role()) = 'admin')
    WITH CHECK (true);

-- Whether a file is not deleted (or deleted by this very transaction): definer, so the policies
-- of the rows derived from a file can ask without recursing into the policies of audio_files;
-- it answers one boolean about a file id. The admin exception is the policies' own initplan
-- (evaluated once per statement), so a row costs one index look-up, not a credential check.
CREATE FUNCTION file_is_shown(file_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce((SELECT f.deleted_at IS NULL OR f.deleted_at = now()
                     FROM public.audio_files f WHERE f.id = file_id), false)
$$;
CREATE FUNCTION transcription_is_shown(transcription_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce((SELECT f.deleted_at IS NULL OR f.deleted_at = now()
                     FROM public.transcriptions t JOIN public.audio_files f
                         ON f.id = t.audio_file_id
                     WHERE t.id = transcription_id), false)
$$;
REVOKE ALL ON FUNCTION file_is_shown(uuid), transcription_is_shown(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION file_is_shown(uuid), transcription_is_shown(uuid) TO teleai_app;

CREATE POLICY transcriptions_deleted_hidden ON transcriptions AS RESTRICTIVE FOR SELECT
    TO teleai_app
    USING ((SELECT current_app_role()) = 'admin' OR file_is_shown(audio_file_id));
CREATE POLICY transcript_redactions_deleted_hidden ON transcript_redactions AS RESTRICTIVE
    FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) = 'admin' OR file_is_shown(audio_file_id));
CREATE POLICY analyses_deleted_hidden ON analyses AS RESTRICTIVE FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) = 'admin' OR transcription_is_shown(transcription_id));

-- Search (007's function) with the same rule.
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
    sees_deleted boolean;
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
    sees_deleted := bypass;
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
        sees_deleted := acting_role = 'admin';
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
          AND (sees_deleted OR af.deleted_at IS NULL)
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

-- ---------------------------------------------------------------------------------------------
-- Uploads as the caller.
GRANT INSERT ON audio_files TO teleai_app;
CREATE POLICY audio_files_insert_own ON audio_files AS RESTRICTIVE FOR INSERT TO teleai_app
    WITH CHECK (user_id = (SELECT current_app_user_id())
                AND (SELECT current_app_role()) IN ('admin', 'manager', 'analyst')
                AND status = 'pending' AND stage = 'ingest' AND attempts = 0
                AND lease_expires_at IS NULL AND deleted_at IS NULL
                AND error_message IS NULL AND error_details IS NULL
                AND processing_started_at IS NULL AND processing_completed_at IS NULL);

-- A stored copy is referenced by one row: the one intake (or the API, as the caller) stored it
-- for. A hash index: equality is the only question, and it stays small at a million rows.
CREATE INDEX idx_audio_files_file_path ON audio_files USING hash (file_path);

CREATE FUNCTION stored_copy_is_referenced(path text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM public.audio_files f WHERE f.file_path = path)
$$;
REVOKE ALL ON FUNCTION stored_copy_is_referenced(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stored_copy_is_referenced(text) TO teleai_app, teleai_intake;

-- Not SECURITY DEFINER: caller_is_owner() must see the inserting role.
CREATE FUNCTION audio_files_new_stored_copy() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT caller_is_owner() AND stored_copy_is_referenced(NEW.file_path) THEN
        RAISE EXCEPTION 'this stored copy belongs to another file; a new file is stored anew'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER trg_audio_files_new_stored_copy BEFORE INSERT ON audio_files
    FOR EACH ROW EXECUTE FUNCTION audio_files_new_stored_copy();

-- ---------------------------------------------------------------------------------------------
-- Live status.
CREATE FUNCTION audio_files_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.stage IS DISTINCT FROM OLD.stage OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at
    THEN
        PERFORM pg_notify('teleai_file_status', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER trg_audio_files_notify AFTER INSERT OR UPDATE OF status, stage, deleted_at
    ON audio_files FOR EACH ROW EXECUTE FUNCTION audio_files_notify();

-- ---------------------------------------------------------------------------------------------
-- Intake reads accounts without their password hash.
REVOKE SELECT ON users FROM teleai_intake;
GRANT SELECT (id, email, username, full_name, role, is_active, last_login_at, last_activity_at,
              metadata, created_at, updated_at, deleted_at, is_operator)
    ON users TO teleai_intake;
