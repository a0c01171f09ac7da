-- 002_security (up): database roles, tenant isolation with row-level security, an audit log.
--
-- Who connects as what (README "Security"):
--   * the schema owner (runs migrations, the operator CLI, maintenance) must be a superuser or
--     have BYPASSRLS: FORCE ROW LEVEL SECURITY below would otherwise hide every row from it;
--   * the application logs in as a role that is a member of `teleai_app` and names the acting
--     user per transaction:  SELECT set_config('app.current_user_id', '<uuid>', true);
--   * workers log in as a member of `teleai_worker`: every file, only the pipeline's writes.
-- The two group roles are NOLOGIN and cluster-wide. They are created here if missing (another
-- database of the same cluster may have created them first) and never dropped by the down
-- file: other databases of the cluster may still hold grants to them.
--
-- Policy matrix (a user whose account is inactive or soft-deleted counts as no user):
--   table           op       admin  manager  analyst  viewer   no user
--   users           SELECT   all    own      own      own      -
--                   INSERT   yes    -        -        -        -
--                   UPDATE   all    own*     own*     own*     -      (* role stays as it is)
--                   DELETE   all    -        -        -        -
--   sessions        any      all    own      own      own      -
--   audio_files     SELECT   all    all      all      own      -
--                   INS/UPD/DEL all all      own      -        -
--   transcriptions  SELECT   all    all      all      own file -
--                   INS/UPD/DEL all all      -        -        -
--   analyses        SELECT   all    all      all      own file -
--                   INS/UPD  all    all      all      -        -
--                   DELETE   all    all      -        -        -
--   teleai_worker: audio_files SELECT + UPDATE of the processing columns, transcriptions
--   SELECT/INSERT + UPDATE (is_latest), analyses SELECT/INSERT, on every row; nothing else.

-- ---------------------------------------------------------------------------------------------
-- Group roles.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['teleai_app', 'teleai_worker'] LOOP
        BEGIN
            EXECUTE format(
                'CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE '
                'NOREPLICATION INHERIT', role_name);
        EXCEPTION
            -- Exists already (another database), or another session created it just now.
            WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles
               WHERE rolname IN ('teleai_app', 'teleai_worker') AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'teleai_app/teleai_worker exist with SUPERUSER or BYPASSRLS'
            USING HINT = 'ALTER ROLE … NOSUPERUSER NOBYPASSRLS, then migrate again';
    END IF;
    IF NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'migration 002 must run as the schema owner with BYPASSRLS (or a superuser)'
            USING HINT = 'FORCE ROW LEVEL SECURITY hides every row from an owner without it';
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO teleai_app, teleai_worker;

-- ---------------------------------------------------------------------------------------------
-- The acting application user.

-- NULL when unset, or reset to '' after the transaction that set it ended.
CREATE FUNCTION current_app_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT NULLIF(current_setting('app.current_user_id', true), '')::uuid
$$;

-- The acting user's role, or NULL when no user is set or the account is inactive or deleted.
-- SECURITY DEFINER: a policy on users that read users as the invoker would recurse.
CREATE FUNCTION current_app_role() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT u.role::text FROM public.users u
    WHERE u.id = public.current_app_user_id() AND u.is_active AND u.deleted_at IS NULL
$$;

-- Before anyone is authenticated the app sees no rows, so the two look-ups a login and a
-- request start with are narrow SECURITY DEFINER functions: they answer "which user" and
-- nothing else; everything after runs under the policies as that user.
CREATE FUNCTION app_login_user_id(login text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT u.id FROM public.users u
    WHERE CASE WHEN strpos(login, '@') > 0 THEN u.email = lower(btrim(login))
               ELSE u.username = login END
      AND u.is_active AND u.deleted_at IS NULL
$$;

CREATE FUNCTION app_session_user_id(token_hash text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT s.user_id FROM public.sessions s
    WHERE s.token_hash = app_session_user_id.token_hash
      AND NOT s.is_revoked AND s.expires_at > now()
$$;

-- Periodic jobs a worker runs without owning the objects (REFRESH needs ownership; the
-- session clean-up needs no read access to sessions).
CREATE FUNCTION refresh_file_processing_analytics() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY public.file_processing_analytics;
END;
$$;

CREATE FUNCTION purge_expired_sessions(older_than interval) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    WITH gone AS (
        DELETE FROM public.sessions
        WHERE expires_at < now() - older_than OR revoked_at < now() - older_than
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

REVOKE ALL ON FUNCTION current_app_role(), app_login_user_id(text), app_session_user_id(text),
    refresh_file_processing_analytics(), purge_expired_sessions(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_app_role(), app_login_user_id(text), app_session_user_id(text)
    TO teleai_app;
GRANT EXECUTE ON FUNCTION refresh_file_processing_analytics(), purge_expired_sessions(interval)
    TO teleai_worker;

-- ---------------------------------------------------------------------------------------------
-- Table privileges. Never TRUNCATE (it ignores row-level security).
GRANT SELECT, INSERT, UPDATE, DELETE ON users, sessions, audio_files, transcriptions, analyses
    TO teleai_app;
GRANT SELECT ON user_activity_summary TO teleai_app;
-- file_processing_analytics is not granted: a materialized view cannot apply row-level security,
-- and its per-day counts span every tenant. Operators read it as the owner.

GRANT SELECT ON audio_files TO teleai_worker;
GRANT UPDATE (status, stage, attempts, lease_expires_at, error_message, error_details, metadata,
              file_format, mime_type, duration_seconds, sample_rate, channels, bitrate, codec,
              processing_started_at, processing_completed_at, updated_at)
    ON audio_files TO teleai_worker;
GRANT SELECT, INSERT ON transcriptions TO teleai_worker;
GRANT UPDATE (is_latest, updated_at) ON transcriptions TO teleai_worker;
GRANT SELECT, INSERT ON analyses TO teleai_worker;

-- Views read their tables with the caller's rights, so the policies below apply through them.
ALTER VIEW user_activity_summary SET (security_invoker = true);

-- ---------------------------------------------------------------------------------------------
-- Policies. `(SELECT f())` is evaluated once per statement, not once per row. Only roles named
-- in a policy get rows: every other role (that is not superuser or BYPASSRLS) sees none.
ALTER TABLE users FORCE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE audio_files FORCE ROW LEVEL SECURITY;
ALTER TABLE transcriptions FORCE ROW LEVEL SECURITY;
ALTER TABLE analyses FORCE ROW LEVEL SECURITY;

-- users
CREATE POLICY users_self_select ON users FOR SELECT TO teleai_app
    USING (id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL);
-- A user may edit their own row but not their role, nor deactivate or delete themselves:
-- current_app_role() reads the row as it was before this statement.
CREATE POLICY users_self_update ON users FOR UPDATE TO teleai_app
    USING (id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL)
    WITH CHECK (id = (SELECT current_app_user_id()) AND role = (SELECT current_app_role())
                AND is_active AND deleted_at IS NULL);
CREATE POLICY users_admin_all ON users FOR ALL TO teleai_app
    USING ((SELECT current_app_role()) = 'admin')
    WITH CHECK ((SELECT current_app_role()) = 'admin');

-- sessions (admins end other users' sessions on deactivation and role changes)
CREATE POLICY sessions_own_all ON sessions FOR ALL TO teleai_app
    USING (user_id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL)
    WITH CHECK (user_id = (SELECT current_app_user_id())
                AND (SELECT current_app_role()) IS NOT NULL);
CREATE POLICY sessions_admin_all ON sessions FOR ALL TO teleai_app
    USING ((SELECT current_app_role()) = 'admin')
    WITH CHECK ((SELECT current_app_role()) = 'admin');

-- audio_files
CREATE POLICY audio_files_own_select ON audio_files FOR SELECT TO teleai_app
    USING (user_id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL);
CREATE POLICY audio_files_staff_select ON audio_files FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) IN ('admin', 'manager', 'analyst'));
CREATE POLICY audio_files_analyst_own_all ON audio_files FOR ALL TO teleai_app
    USING (user_id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) = 'analyst')
    WITH CHECK (user_id = (SELECT current_app_user_id())
                AND (SELECT current_app_role()) = 'analyst');
CREATE POLICY audio_files_manager_all ON audio_files FOR ALL TO teleai_app
    USING ((SELECT current_app_role()) IN ('admin', 'manager'))
    WITH CHECK ((SELECT current_app_role()) IN ('admin', 'manager'));
CREATE POLICY audio_files_worker_select ON audio_files FOR SELECT TO teleai_worker
    USING (true);
CREATE POLICY audio_files_worker_update ON audio_files FOR UPDATE TO teleai_worker
    USING (true) WITH CHECK (true);

-- transcriptions
CREATE POLICY transcriptions_own_select ON transcriptions FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) IS NOT NULL AND EXISTS (
        SELECT 1 FROM audio_files f
        WHERE f.id = transcriptions.audio_file_id AND f.user_id = (SELECT current_app_user_id())));
CREATE POLICY transcriptions_staff_select ON transcriptions FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) IN ('admin', 'manager', 'analyst'));
CREATE POLICY transcriptions_manager_all ON transcriptions FOR ALL TO teleai_app
    USING ((SELECT current_app_role()) IN ('admin', 'manager'))
    WITH CHECK ((SELECT current_app_role()) IN ('admin', 'manager'));
CREATE POLICY transcriptions_worker_select ON transcriptions FOR SELECT TO teleai_worker
    USING (true);
CREATE POLICY transcriptions_worker_insert ON transcriptions FOR INSERT TO teleai_worker
    WITH CHECK (true);
CREATE POLICY transcriptions_worker_update ON transcriptions FOR UPDATE TO teleai_worker
    USING (true) WITH CHECK (true);

-- analyses
CREATE POLICY analyses_own_select ON analyses FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) IS NOT NULL AND EXISTS (
        SELECT 1 FROM transcriptions t JOIN audio_files f ON f.id = t.audio_file_id
        WHERE t.id = analyses.transcription_id AND f.user_id = (SELECT current_app_user_id())));
CREATE POLICY analyses_staff_select ON analyses FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) IN ('admin', 'manager', 'analyst'));
CREATE POLICY analyses_analyst_insert ON analyses FOR INSERT TO teleai_app
    WITH CHECK ((SELECT current_app_role()) = 'analyst');
CREATE POLICY analyses_analyst_update ON analyses FOR UPDATE TO teleai_app
    USING ((SELECT current_app_role()) = 'analyst')
    WITH CHECK ((SELECT current_app_role()) = 'analyst');
CREATE POLICY analyses_manager_all ON analyses FOR ALL TO teleai_app
    USING ((SELECT current_app_role()) IN ('admin', 'manager'))
    WITH CHECK ((SELECT current_app_role()) IN ('admin', 'manager'));
CREATE POLICY analyses_worker_select ON analyses FOR SELECT TO teleai_worker
    USING (true);
CREATE POLICY analyses_worker_insert ON analyses FOR INSERT TO teleai_worker
    WITH CHECK (true);

-- ---------------------------------------------------------------------------------------------
-- Audit log: one row per inserted, changed or deleted row of the five tables, written by a
-- SECURITY DEFINER trigger. No application role holds any privilege on it, so entries can be
-- neither forged nor erased through the app; the owner reads it.
CREATE TABLE audit_log (
    id          bigserial    NOT NULL,
    occurred_at timestamptz  NOT NULL DEFAULT now(),
    table_name  varchar(63)  NOT NULL,
    operation   varchar(6)   NOT NULL,
    row_id      uuid,
    -- The application user acting (current_app_user_id()); NULL for the pipeline and operators.
    app_user_id uuid,
    -- The database role that ran the statement (SET ROLE, else the login role).
    db_role     varchar(63)  NOT NULL,
    old_data    jsonb,
    new_data    jsonb,
    CONSTRAINT pk_audit_log PRIMARY KEY (id),
    CONSTRAINT ck_audit_log_operation CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    CONSTRAINT ck_audit_log_data_present
        CHECK ((operation = 'INSERT' AND old_data IS NULL AND new_data IS NOT NULL)
            OR (operation = 'UPDATE' AND old_data IS NOT NULL AND new_data IS NOT NULL)
            OR (operation = 'DELETE' AND old_data IS NOT NULL AND new_data IS NULL))
);

CREATE INDEX idx_audit_log_table_name_row_id ON audit_log (table_name, row_id);
CREATE INDEX idx_audit_log_occurred_at ON audit_log (occurred_at);
CREATE INDEX idx_audit_log_app_user_id ON audit_log (app_user_id);

REVOKE ALL ON audit_log FROM PUBLIC;

-- Secrets never reach the log: a stored hash is still an offline-crackable password or a token
-- lookup key. An UPDATE marks whether the secret changed, without showing it.
CREATE FUNCTION audit_redact(doc jsonb, previous jsonb) RETURNS jsonb
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

-- Trigger arguments name "heartbeat" columns (lease renewals, last activity): an UPDATE that
-- changes only those (and updated_at) is not logged, or every request would write a row.
CREATE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    old_doc jsonb;
    new_doc jsonb;
    ignored text[] := TG_ARGV || ARRAY['updated_at'];
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_doc := to_jsonb(OLD) - 'search_vector';
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_doc := to_jsonb(NEW) - 'search_vector';
    END IF;
    IF TG_OP = 'UPDATE' AND (old_doc - ignored) = (new_doc - ignored) THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.audit_log
        (table_name, operation, row_id, app_user_id, db_role, old_data, new_data)
    VALUES (
        TG_TABLE_NAME,
        TG_OP,
        (COALESCE(new_doc, old_doc) ->> 'id')::uuid,
        public.current_app_user_id(),
        -- current_user here is this function's owner; the caller is the SET ROLE or login role.
        CASE WHEN current_setting('role') = 'none' THEN session_user
             ELSE current_setting('role') END,
        public.audit_redact(old_doc, NULL),
        public.audit_redact(new_doc, old_doc)
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_users_audit AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('last_activity_at');
CREATE TRIGGER trg_sessions_audit AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('last_accessed_at');
CREATE TRIGGER trg_audio_files_audit AFTER INSERT OR UPDATE OR DELETE ON audio_files
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('lease_expires_at');
CREATE TRIGGER trg_transcriptions_audit AFTER INSERT OR UPDATE OR DELETE ON transcriptions
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER trg_analyses_audit AFTER INSERT OR UPDATE OR DELETE ON analyses
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
