-- 011_fast_reads (down): search as 009 defined it; no app_read_file, app_read_transcript; default row estimates.

DROP FUNCTION IF EXISTS app_read_file(text, uuid);
DROP FUNCTION IF EXISTS app_read_transcript(text, uuid);
ALTER FUNCTION app_credential() ROWS 1000;
ALTER FUNCTION app_whoami() ROWS 1000;
ALTER FUNCTION app_authenticate(text) ROWS 1000;

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
