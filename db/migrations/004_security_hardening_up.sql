-- 004_security_hardening (up): an operator account no user can take over, reserved user names,
-- stored-file references only intake may write, and the intake role the drop folder logs in as.
--
-- What a hostile user with an ordinary account could do before (issue 10):
--   * rename their own account to `operator` (002 lets a user edit their own row) and then own
--     every CLI upload made without --user, since the default owner was looked up by name;
--   * insert or update an audio_files row whose file_path points at another user's stored copy
--     (or any file the worker can read) and have it transcribed into their own account.
--
-- The operator account is now the one row with is_operator, a flag that only the schema owner
-- (superuser or BYPASSRLS) can set, and that operator_user_id() finds or creates. User names the
-- system or people rely on (reserved_usernames()) cannot be taken or given by anyone but the
-- owner, whatever their role. Rows that already hold such a name keep it.
--
-- audio_files: only intake writes where a file is. teleai_app may no longer INSERT audio_files
-- (a new file comes in through intake, `workers.submit.submit`, which stores the bytes first), and
-- nobody but the owner may change file_path, file_size or checksum of an existing row (the stored
-- copy's identity; workers only ever read them). Workers also check every reference against the
-- storage root before opening it (pipeline/storage), so a row written by the owner by mistake
-- cannot reach outside either.
--
-- teleai_intake (NOLOGIN, like the two group roles of 002) is for the processes that accept
-- files: the drop-folder watcher and anything else calling workers.submit with its own database
-- login. It reads accounts (to resolve --user and find the operator) and files (duplicates and
-- their state), inserts files and marks their upload complete; nothing else. Login roles for the
-- three groups are made by `teleai db upgrade --login-role NAME:GROUP:PASSWORD_VARIABLE` (see
-- docs/security.md), never here: a migration does not know passwords.

DO $$
BEGIN
    CREATE ROLE teleai_intake NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
        NOREPLICATION INHERIT;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;  -- another database made it first
END
$$;
DO $$
BEGIN
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'teleai_intake') THEN
        RAISE EXCEPTION 'teleai_intake exists with SUPERUSER or BYPASSRLS'
            USING HINT = 'ALTER ROLE teleai_intake NOSUPERUSER NOBYPASSRLS, then migrate again';
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO teleai_intake;

-- ---------------------------------------------------------------------------------------------
-- The operator account.
ALTER TABLE users ADD COLUMN is_operator boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX uq_users_is_operator ON users (is_operator) WHERE is_operator;

-- Adopt the account get_or_create_operator made before this migration: it was created as an
-- admin with these exact values. A user who renamed themselves to `operator` could not change
-- their role (002), so a squatter is never adopted; a new operator is then made on first use.
UPDATE users SET is_operator = true
WHERE id = (SELECT id FROM users
            WHERE username = 'operator' AND email = 'operator@localhost' AND role = 'admin'
              AND full_name = 'Local operator' AND deleted_at IS NULL
            ORDER BY created_at LIMIT 1);

-- Who counts as "the owner" in the checks below: a superuser or BYPASSRLS role, the same test
-- 002 makes of whoever migrates. current_user is the effective role (SET ROLE included).
CREATE FUNCTION caller_is_owner() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce((SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
                     WHERE r.rolname = current_user), false)
$$;

-- Compared in lower case: `Operator` would fool a person as well as `operator`.
CREATE FUNCTION reserved_usernames() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['operator', 'admin', 'administrator', 'root', 'system', 'teleai', 'postgres',
                 'superuser', 'support', 'security']
$$;

CREATE FUNCTION users_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF caller_is_owner() THEN
        RETURN NEW;
    END IF;
    IF NEW.is_operator IS DISTINCT FROM (CASE WHEN TG_OP = 'UPDATE' THEN OLD.is_operator
                                              ELSE false END) THEN
        RAISE EXCEPTION 'only the schema owner marks the operator account'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF lower(NEW.username) = ANY (reserved_usernames())
       AND (TG_OP = 'INSERT' OR NEW.username IS DISTINCT FROM OLD.username) THEN
        RAISE EXCEPTION 'the user name "%" is reserved', NEW.username
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_users_guard BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_guard();

-- The operator's id, creating the account on first use. SECURITY DEFINER so intake (which may
-- not write users) can call it; it writes exactly this one row. The password hash is no hash
-- at all ('!' + random): nothing verifies against it, so the account can never log in.
CREATE FUNCTION operator_user_id() RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    found uuid;
    name text := 'operator';
    mail text := 'operator@localhost';
BEGIN
    SELECT u.id INTO found FROM public.users u WHERE u.is_operator;
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    -- A name or address taken before 004 (a squatter keeps it, but does not become operator).
    IF EXISTS (SELECT 1 FROM public.users u WHERE u.username = name) THEN
        name := 'operator-' || substr(encode(public.gen_random_bytes(4), 'hex'), 1, 6);
    END IF;
    IF EXISTS (SELECT 1 FROM public.users u WHERE u.email = mail) THEN
        mail := 'operator+' || encode(public.gen_random_bytes(4), 'hex') || '@localhost';
    END IF;
    -- ON CONFLICT: two processes starting at once both found none; uq_users_is_operator lets
    -- one insert win, and the other reads the winner's row.
    INSERT INTO public.users (email, username, password_hash, role, full_name, is_operator)
    VALUES (mail, name, '!' || encode(public.gen_random_bytes(32), 'hex'), 'admin',
            'Local operator', true)
    ON CONFLICT DO NOTHING
    RETURNING id INTO found;
    IF found IS NULL THEN
        SELECT u.id INTO found FROM public.users u WHERE u.is_operator;
    END IF;
    RETURN found;
END;
$$;

REVOKE ALL ON FUNCTION operator_user_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION operator_user_id() TO teleai_intake;

-- ---------------------------------------------------------------------------------------------
-- Where stored files are.
REVOKE INSERT ON audio_files FROM teleai_app;

CREATE FUNCTION audio_files_stored_copy_is_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT caller_is_owner() THEN
        RAISE EXCEPTION 'file_path, file_size and checksum are set when a file is stored and '
            'never changed' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_audio_files_stored_copy_is_fixed
    BEFORE UPDATE OF file_path, file_size, checksum ON audio_files
    FOR EACH ROW
    WHEN (NEW.file_path IS DISTINCT FROM OLD.file_path
          OR NEW.file_size IS DISTINCT FROM OLD.file_size
          OR NEW.checksum IS DISTINCT FROM OLD.checksum)
    EXECUTE FUNCTION audio_files_stored_copy_is_fixed();

-- ---------------------------------------------------------------------------------------------
-- Intake.
GRANT SELECT ON users TO teleai_intake;
GRANT SELECT, INSERT ON audio_files TO teleai_intake;
GRANT UPDATE (upload_completed_at, updated_at) ON audio_files TO teleai_intake;

CREATE POLICY users_intake_select ON users FOR SELECT TO teleai_intake USING (true);
CREATE POLICY audio_files_intake_select ON audio_files FOR SELECT TO teleai_intake USING (true);
CREATE POLICY audio_files_intake_insert ON audio_files FOR INSERT TO teleai_intake
    WITH CHECK (true);
CREATE POLICY audio_files_intake_update ON audio_files FOR UPDATE TO teleai_intake
    USING (true) WITH CHECK (true);
