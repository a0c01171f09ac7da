-- 005_http_api (up): API keys, usage records, and an acting user the database derives from the
-- credential a request presented.
--
-- Defence in depth. Under 002 the application role named the acting user itself
-- (set_config('app.current_user_id', <any id>)), and app_login_user_id() told it the id of any
-- user name, so a compromised API process could act as anyone, an admin included. From here on a
-- member of teleai_app names no user: it hands over the raw credential of the request,
--     SELECT set_config('app.credential', '<session token or API key>', true);
-- and current_app_user_id() hashes it (SHA-256, as stored) and looks it up: a live session
-- (not revoked, not past its absolute expiry) or an unrevoked, unexpired API key, of an active,
-- not deleted user (current_app_role() checks the account). The raw credential is never stored;
-- knowing a stored hash (an admin can read session rows) does not help, since the hash is what
-- the function computes, not what it accepts. So the API process needs a valid credential per
-- user, and a user's rights end the moment their session or key is revoked.
--
-- Who gets which answer from current_app_user_id():
--   * superuser / BYPASSRLS callers (the owner, the operator CLI): app.current_user_id as
--     before; it only labels audit rows for them, policies do not apply to them anyway;
--   * everyone else (teleai_app members, also via SET ROLE): the credential's user, or NULL.
-- "The caller" is read as in 003 (SET ROLE, else the login role): inside a SECURITY DEFINER
-- function current_user is the owner.
--
-- Login without handing out ids: app_login_user_id() and app_session_user_id() are no longer
-- executable by teleai_app. A login asks app_password_salt(login) for the stored hash's
-- parameters and salt (never the digest; an unknown login gets a stable decoy, so the answer does
-- not reveal which accounts exist), computes the hash of the offered password with them, and
-- app_open_session() compares that with the stored hash and only then creates the session. A
-- process without the password cannot open a session.
--
-- Not enforced here (the API enforces them): the idle timeout of sessions (a setting of the API;
-- the absolute expiry is enforced here) and the scope of an API key (read/write/admin).

-- ---------------------------------------------------------------------------------------------
-- API keys: for programs. Only the SHA-256 of the key is stored; key_prefix (the first
-- characters) is what lists show so a user can tell keys apart.
CREATE TABLE api_keys (
    id           uuid         NOT NULL DEFAULT uuid_generate_v4(),
    user_id      uuid         NOT NULL,
    name         varchar(100) NOT NULL,
    key_prefix   varchar(16)  NOT NULL,
    key_hash     char(64)     NOT NULL,
    -- read: GET only; write: also uploads and changes; admin: also the admin endpoints (for an
    -- admin user). A key never has more rights than its user's role gives.
    scope        varchar(10)  NOT NULL DEFAULT 'read',
    created_at   timestamptz  NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT pk_api_keys PRIMARY KEY (id),
    CONSTRAINT fk_api_keys_user_id FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT uq_api_keys_key_hash UNIQUE (key_hash),
    CONSTRAINT ck_api_keys_key_hash_hex CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT ck_api_keys_scope CHECK (scope IN ('read', 'write', 'admin')),
    CONSTRAINT ck_api_keys_name_not_blank CHECK (btrim(name) <> '')
);

CREATE INDEX idx_api_keys_user_id ON api_keys (user_id);

-- A revoked key stays revoked: the API can revoke, never revive (nor re-point) a key.
CREATE FUNCTION api_keys_revocation_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'API key % is revoked; revocation is final', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_api_keys_revocation_is_final BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_revocation_is_final();
CREATE TRIGGER trg_api_keys_audit AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('last_used_at');

-- Secrets never reach the audit log (002's audit_redact knows password_hash and token_hash).
CREATE OR REPLACE FUNCTION audit_redact(doc jsonb, previous jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT doc || COALESCE(
        (SELECT jsonb_object_agg(
                    secret,
                    CASE WHEN previous IS NOT NULL AND previous -> secret IS DISTINCT FROM doc -> secret
                         THEN '"[redacted: changed]"'::jsonb ELSE '"[redacted]"'::jsonb END)
         FROM unnest(ARRAY['password_hash', 'token_hash', 'key_hash']) AS secret
         WHERE doc ? secret),
        '{}'::jsonb)
$$;

-- ---------------------------------------------------------------------------------------------
-- Soft delete of files (DELETE /api/v1/files/{id}): the row, its transcripts and analyses stay
-- (audit, usage, a mistaken delete can be undone by an operator); the API no longer shows it,
-- and the stored copy is removed after TELEAI_RETENTION_DAYS by the retention purge.
ALTER TABLE audio_files ADD COLUMN deleted_at timestamptz;
CREATE INDEX idx_audio_files_deleted_at ON audio_files (deleted_at) WHERE deleted_at IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Usage per user and UTC day, kept by a trigger on audio_files, so every way in (API, CLI, drop
-- folder) and the workers' status changes count without any of them writing it. Submitted: a
-- new row, and its seconds once they are known (the probe sets duration_seconds). Processed: a
-- file reaching completed (again after a re-transcription: the work was done again).
CREATE TABLE usage_daily (
    user_id                 uuid          NOT NULL,
    day                     date          NOT NULL,
    files_submitted         integer       NOT NULL DEFAULT 0,
    audio_seconds_submitted numeric(14, 3) NOT NULL DEFAULT 0,
    files_processed         integer       NOT NULL DEFAULT 0,
    audio_seconds_processed numeric(14, 3) NOT NULL DEFAULT 0,
    CONSTRAINT pk_usage_daily PRIMARY KEY (user_id, day),
    CONSTRAINT fk_usage_daily_user_id FOREIGN KEY (user_id) REFERENCES users (id)
        ON DELETE CASCADE
);

CREATE FUNCTION usage_count() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    submitted_files integer := 0;
    submitted_seconds numeric := 0;
    processed_files integer := 0;
    processed_seconds numeric := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        submitted_files := 1;
        submitted_seconds := coalesce(NEW.duration_seconds, 0);
    ELSE
        IF OLD.duration_seconds IS NULL AND NEW.duration_seconds IS NOT NULL THEN
            submitted_seconds := NEW.duration_seconds;
        END IF;
        IF NEW.status = 'completed' AND OLD.status IS DISTINCT FROM 'completed' THEN
            processed_files := 1;
            processed_seconds := coalesce(NEW.duration_seconds, 0);
        END IF;
    END IF;
    IF submitted_files = 0 AND submitted_seconds = 0 AND processed_files = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.usage_daily AS u (user_id, day, files_submitted, audio_seconds_submitted,
                                         files_processed, audio_seconds_processed)
    VALUES (NEW.user_id, (now() AT TIME ZONE 'UTC')::date, submitted_files, submitted_seconds,
            processed_files, processed_seconds)
    ON CONFLICT (user_id, day) DO UPDATE SET
        files_submitted = u.files_submitted + EXCLUDED.files_submitted,
        audio_seconds_submitted = u.audio_seconds_submitted + EXCLUDED.audio_seconds_submitted,
        files_processed = u.files_processed + EXCLUDED.files_processed,
        audio_seconds_processed = u.audio_seconds_processed + EXCLUDED.audio_seconds_processed;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_audio_files_usage AFTER INSERT OR UPDATE OF duration_seconds, status
    ON audio_files FOR EACH ROW EXECUTE FUNCTION usage_count();

-- ---------------------------------------------------------------------------------------------
-- A per-database secret for the login decoys (no role but the owner can read it).
CREATE TABLE app_secret (
    id    boolean NOT NULL DEFAULT true,
    -- Two v4 UUIDs: 244 bits from the server's strong random source, no extension needed.
    value text    NOT NULL DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
    CONSTRAINT pk_app_secret PRIMARY KEY (id),
    CONSTRAINT ck_app_secret_single_row CHECK (id)
);
INSERT INTO app_secret DEFAULT VALUES;
REVOKE ALL ON app_secret FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- The credential of this transaction, resolved: kind, id, owner, scope, last use. Sessions get
-- scope 'admin': what they may do is their user's role.
-- plpgsql, not sql: a SQL function with a SET clause is never inlined and is planned again on
-- every call, and the policies call these once or more per statement; plpgsql keeps its plans.
CREATE FUNCTION app_credential()
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

CREATE OR REPLACE FUNCTION current_app_user_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    caller name := CASE WHEN current_setting('role') = 'none' THEN session_user
                        ELSE current_setting('role')::name END;
    privileged boolean;
BEGIN
    SELECT r.rolsuper OR r.rolbypassrls INTO privileged FROM pg_roles r WHERE r.rolname = caller;
    IF coalesce(privileged, false) THEN
        RETURN NULLIF(current_setting('app.current_user_id', true), '')::uuid;
    END IF;
    RETURN (SELECT c.user_id FROM public.app_credential() c);
END;
$$;

-- 002's definition as plpgsql (same rule), for the plan cache (see app_credential()).
CREATE OR REPLACE FUNCTION current_app_role() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (SELECT u.role::text FROM public.users u
            WHERE u.id = public.current_app_user_id() AND u.is_active AND u.deleted_at IS NULL);
END;
$$;

-- Who the credential is, in one call per request (the API's authentication).
CREATE FUNCTION app_whoami()
RETURNS TABLE (kind text, credential_id uuid, user_id uuid, username varchar, role varchar,
               scope text, last_used_at timestamptz, now timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT c.kind, c.credential_id, u.id, u.username, u.role, c.scope, c.last_used_at, now()
    FROM public.app_credential() c JOIN public.users u ON u.id = c.user_id
    WHERE u.is_active AND u.deleted_at IS NULL;
END;
$$;

-- set_config + app_whoami() in one round trip: the first statement of every API request.
-- (A SET clause only scopes the variables it names, so app.credential stays set for the rest
-- of the transaction.)
CREATE FUNCTION app_authenticate(credential text)
RETURNS TABLE (kind text, credential_id uuid, user_id uuid, username varchar, role varchar,
               scope text, last_used_at timestamptz, now timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM set_config('app.credential', coalesce(credential, ''), true);
    RETURN QUERY SELECT * FROM public.app_whoami();
END;
$$;

-- Record use of the credential: at most once a minute, so a busy client does not write a row
-- (and wait on its lock) per request.
CREATE FUNCTION app_touch_credential() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    cred record;
BEGIN
    SELECT * INTO cred FROM public.app_credential();
    IF cred.kind = 'session' THEN
        UPDATE public.sessions SET last_accessed_at = now()
        WHERE id = cred.credential_id AND last_accessed_at < now() - interval '1 minute';
        IF FOUND THEN
            UPDATE public.users SET last_activity_at = now() WHERE id = cred.user_id;
        END IF;
    ELSIF cred.kind = 'key' THEN
        UPDATE public.api_keys SET last_used_at = now()
        WHERE id = cred.credential_id
          AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
    END IF;
END;
$$;

-- Login, step 1: the stored hash without its digest (argon2: "$argon2id$v=19$m=..,t=..,p=..$salt",
-- bcrypt: the first 29 characters), and the digest's length in characters. An unknown or
-- inactive login gets a decoy argon2id prefix whose salt is stable per login name.
CREATE FUNCTION app_password_salt(login text)
RETURNS TABLE (prefix text, digest_chars integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    stored text;
    cut integer;
    normalised text := CASE WHEN strpos(login, '@') > 0 THEN lower(btrim(login)) ELSE login END;
BEGIN
    SELECT u.password_hash INTO stored FROM public.users u
    WHERE CASE WHEN strpos(login, '@') > 0 THEN u.email = normalised ELSE u.username = login END
      AND u.is_active AND u.deleted_at IS NULL;
    IF stored LIKE '$argon2%' THEN
        cut := length(stored) - strpos(reverse(stored), '$');
        RETURN QUERY SELECT left(stored, cut), length(stored) - cut - 1;
    ELSIF stored LIKE '$2_$%' THEN
        RETURN QUERY SELECT left(stored, 29), length(stored) - 29;
    ELSE
        RETURN QUERY SELECT '$argon2id$v=19$m=19456,t=2,p=1$' || rtrim(encode(substring(
                   sha256(convert_to((SELECT s.value FROM public.app_secret s) || normalised,
                                     'UTF8')) FROM 1 FOR 16), 'base64'), '='),
               43;
    END IF;
END;
$$;

-- Login, step 2: when ``proof`` (the offered password hashed with step 1's prefix) equals the
-- stored hash, open a session for ``token`` (stored as its SHA-256) and return the user's id;
-- else NULL. Only active, not deleted accounts.
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

REVOKE ALL ON FUNCTION app_credential(), app_whoami(), app_authenticate(text), app_touch_credential(),
    app_password_salt(text), app_open_session(text, text, text, inet, text, interval),
    usage_count(), api_keys_revocation_is_final() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_credential(), app_whoami(), app_authenticate(text),
    app_touch_credential(),
    app_password_salt(text), app_open_session(text, text, text, inet, text, interval)
    TO teleai_app;
-- The look-ups that answered "which user" without a credential.
REVOKE EXECUTE ON FUNCTION app_login_user_id(text), app_session_user_id(text) FROM teleai_app;

-- ---------------------------------------------------------------------------------------------
-- Privileges and policies of the new tables.
GRANT SELECT, INSERT ON api_keys TO teleai_app;
GRANT UPDATE (name, revoked_at) ON api_keys TO teleai_app;
GRANT SELECT ON usage_daily TO teleai_app;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_daily FORCE ROW LEVEL SECURITY;
ALTER TABLE app_secret ENABLE ROW LEVEL SECURITY;
ALTER TABLE app_secret FORCE ROW LEVEL SECURITY;

CREATE POLICY api_keys_own_all ON api_keys FOR ALL TO teleai_app
    USING (user_id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL)
    WITH CHECK (user_id = (SELECT current_app_user_id())
                AND (SELECT current_app_role()) IS NOT NULL);
CREATE POLICY api_keys_admin_all ON api_keys FOR ALL TO teleai_app
    USING ((SELECT current_app_role()) = 'admin')
    WITH CHECK ((SELECT current_app_role()) = 'admin');
CREATE POLICY usage_daily_own_select ON usage_daily FOR SELECT TO teleai_app
    USING (user_id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL);
CREATE POLICY usage_daily_admin_select ON usage_daily FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) = 'admin');
