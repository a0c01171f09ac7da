-- 003_search_rls (up): full-text search that keeps its GIN index under row-level security.
--
-- The problem (bench/results/2026-11-25-vm.md, 1M files): the search query runs in 15.7 ms as
-- the schema owner but 0.3 s as a viewer and 11 s as a manager through the app role. Under RLS,
-- PostgreSQL must apply the policies' conditions before any condition of the query that is not
-- LEAKPROOF (it could leak the rows it is shown through errors or side channels), and `@@`
-- (ts_match_vq) is not. So `search_vector @@ q` can no longer be a GIN index condition: every
-- latest transcription the caller may see is read and matched one by one.
--
-- Choices considered:
--   * A denormalised owner column on transcriptions (kept in step by a trigger) makes the
--     policy an indexable `owner = me`, which helps a viewer, but `@@` still waits for the
--     policy, so staff (analyst, manager, admin: every file) still read a million rows: 11 s.
--   * Marking ts_match_vq LEAKPROOF is a cluster-wide catalog edit of a built-in, needs a
--     superuser, is lost on a dump/restore or pg_upgrade, and vouches for C code we did not audit.
--   * A SECURITY DEFINER function (this file). It runs as the schema owner (BYPASSRLS or
--     superuser, required by 002), so the GIN index is used, and applies the same visibility
--     rule as the SELECT policies of 002 on transcriptions and audio_files itself:
--         no acting user, or the user inactive or deleted (current_app_role() IS NULL) -> nothing
--         admin, manager, analyst                                               -> every file
--         viewer                                                                -> own files
--     A caller that bypasses RLS itself (a superuser or BYPASSRLS role: the owner, the operator
--     CLI) gets every file, as a plain SELECT would give it. The rule is the policies' rule for
--     members of teleai_app; a role that is in neither teleai_app nor bypasses RLS gets nothing
--     (it may not execute the function anyway). So the function returns what a plain SELECT of
--     the same rows under RLS returns, never more: tests/db/test_search_rls.py checks that for
--     every role and for the owner, and compares both on one data set. If a policy of 002 on
--     transcriptions or audio_files changes, this function must change with it.
--
-- "The caller" is the role that called the function: inside a SECURITY DEFINER function
-- current_user is the owner, so it is read as the audit trigger of 002 reads it (SET ROLE,
-- else the login role). Only teleai_app may execute it (workers do not search).
--
-- The function also guards its own input (the app role can call it directly): at most 100
-- results, the query cut to its first 16 words and 256 characters (ts_headline's cost grows
-- fast with the number of query terms), and parsed by websearch_to_tsquery, which accepts any
-- text. The query text is a bound value throughout; no SQL is built from it.
-- plan_cache_mode = force_custom_plan: plpgsql would otherwise switch to a generic plan after
-- five calls, planned without knowing the words or whether the caller sees one user or all.

CREATE FUNCTION search_latest_transcriptions(
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

REVOKE ALL ON FUNCTION search_latest_transcriptions(text, integer, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION search_latest_transcriptions(text, integer, uuid) TO teleai_app;
