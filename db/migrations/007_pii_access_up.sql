-- 007_pii_access (up): redacted transcripts, and who may read the unredacted ones.
--
-- A job submitted with redact_pii (JobOptions, audio_files.metadata.options) gets, per
-- transcription version, a row in transcript_redactions: the transcript with the personal data
-- replaced ([PHONE], ####, or a stable hash), its segments, the redacted spans (type, words,
-- times, score; not the data), the policy, and the reference of a redacted audio copy when one
-- was asked for. The other analyses of such a version are computed on the redacted text, so
-- they hold no personal data; the `pii` analysis holds the data itself (what was found where).
--
-- Who may read the unredacted transcript (transcriptions row), the `pii` analysis and the
-- original audio of a redacted file (docs/call-intelligence.md):
--   admin, manager                       every redacted file
--   analyst                              redacted files they own (uploaded for themselves);
--                                        other users' redacted files: redacted form only
--   viewer                               redacted form only, even of their own files
--   no acting user                       nothing (as before)
-- Files without redaction are unchanged: the policies of 002 alone decide.
--
-- Added as RESTRICTIVE SELECT policies on transcriptions and analyses (ANDed with the permissive
-- ones of 002, which stay as they are), so no existing rule is widened; transcript_redactions
-- gets the SELECT rule of transcriptions (own file, or staff). Whether a file is redacted is
-- read from the options on its row (set at submission; only the owner and managers may update
-- the row, and an analyst owner may read it unredacted anyway) or from a redaction row, so the
-- unredacted text is hidden from the moment the transcription is written, before the analyze
-- stage has produced the redacted copy.
--
-- pii_unredacted_visible() is SECURITY DEFINER so the policies can call it per row without
-- recursing into the policies of audio_files and transcriptions; it answers one boolean about a
-- file the caller already sees (every caller of the policy does), and only teleai_app may call it.
-- search_latest_transcriptions (003) applies the same rule: a redacted file's snippets (cut
-- from the unredacted text) are not returned to callers who may not read it.

CREATE TABLE transcript_redactions (
    transcription_id uuid          NOT NULL,
    audio_file_id    uuid          NOT NULL,
    version          integer       NOT NULL,
    redacted_text    text          NOT NULL,
    segments         jsonb         NOT NULL DEFAULT '[]'::jsonb,
    spans            jsonb         NOT NULL DEFAULT '[]'::jsonb,
    policy           jsonb         NOT NULL DEFAULT '{}'::jsonb,
    audio_path       varchar(1024),
    created_at       timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT pk_transcript_redactions PRIMARY KEY (transcription_id),
    CONSTRAINT fk_transcript_redactions_transcription_id FOREIGN KEY (transcription_id)
        REFERENCES transcriptions (id) ON DELETE CASCADE,
    CONSTRAINT fk_transcript_redactions_audio_file_id FOREIGN KEY (audio_file_id)
        REFERENCES audio_files (id) ON DELETE CASCADE,
    CONSTRAINT ck_transcript_redactions_segments_array CHECK (jsonb_typeof(segments) = 'array'),
    CONSTRAINT ck_transcript_redactions_spans_array CHECK (jsonb_typeof(spans) = 'array'),
    CONSTRAINT ck_transcript_redactions_policy_object CHECK (jsonb_typeof(policy) = 'object')
);
CREATE INDEX idx_transcript_redactions_audio_file_id ON transcript_redactions (audio_file_id);

-- True when the acting user may read the unredacted data of this file (see the table above).
CREATE FUNCTION pii_unredacted_visible(file_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce((
        SELECT NOT (coalesce(f.metadata -> 'options' -> 'redact_pii' = 'true'::jsonb, false)
                    OR EXISTS (SELECT 1 FROM public.transcript_redactions r
                               WHERE r.audio_file_id = f.id))
               OR public.current_app_role() IN ('admin', 'manager')
               OR (public.current_app_role() = 'analyst'
                   AND f.user_id = public.current_app_user_id())
        FROM public.audio_files f WHERE f.id = file_id), false)
$$;
REVOKE ALL ON FUNCTION pii_unredacted_visible(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pii_unredacted_visible(uuid) TO teleai_app;

-- The analysis row's file, for the analyses policy (definer: no recursion into transcriptions).
CREATE FUNCTION pii_unredacted_visible_for_transcription(transcription_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce((SELECT public.pii_unredacted_visible(t.audio_file_id)
                     FROM public.transcriptions t WHERE t.id = transcription_id), false)
$$;
REVOKE ALL ON FUNCTION pii_unredacted_visible_for_transcription(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pii_unredacted_visible_for_transcription(uuid) TO teleai_app;

GRANT SELECT ON transcript_redactions TO teleai_app;
GRANT SELECT, INSERT ON transcript_redactions TO teleai_worker;
GRANT DELETE ON transcript_redactions TO teleai_app;  -- managers/admins, by the policy below

ALTER TABLE transcript_redactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE transcript_redactions FORCE ROW LEVEL SECURITY;

CREATE POLICY transcript_redactions_own_select ON transcript_redactions FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) IS NOT NULL AND EXISTS (
        SELECT 1 FROM audio_files f
        WHERE f.id = transcript_redactions.audio_file_id
          AND f.user_id = (SELECT current_app_user_id())));
CREATE POLICY transcript_redactions_staff_select ON transcript_redactions FOR SELECT
    TO teleai_app USING ((SELECT current_app_role()) IN ('admin', 'manager', 'analyst'));
CREATE POLICY transcript_redactions_manager_delete ON transcript_redactions FOR DELETE
    TO teleai_app USING ((SELECT current_app_role()) IN ('admin', 'manager'));
CREATE POLICY transcript_redactions_worker_select ON transcript_redactions FOR SELECT
    TO teleai_worker USING (true);
CREATE POLICY transcript_redactions_worker_insert ON transcript_redactions FOR INSERT
    TO teleai_worker WITH CHECK (true);

CREATE POLICY transcriptions_pii_unredacted ON transcriptions AS RESTRICTIVE FOR SELECT
    TO teleai_app USING (pii_unredacted_visible(audio_file_id));
CREATE POLICY analyses_pii_unredacted ON analyses AS RESTRICTIVE FOR SELECT TO teleai_app
    USING (analysis_type <> 'pii' OR pii_unredacted_visible_for_transcription(transcription_id));

-- 002's analyses_own_select found the owner through transcriptions, whose rows the restrictive
-- policy above now hides from a viewer of their own redacted file; it would lose the (redacted)
-- analyses too. The owner is looked up by a definer function instead (same rule as before).
CREATE FUNCTION transcription_owner_id(transcription_id uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT f.user_id FROM public.transcriptions t JOIN public.audio_files f
        ON f.id = t.audio_file_id WHERE t.id = transcription_id
$$;
REVOKE ALL ON FUNCTION transcription_owner_id(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION transcription_owner_id(uuid) TO teleai_app;
DROP POLICY analyses_own_select ON analyses;
CREATE POLICY analyses_own_select ON analyses FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) IS NOT NULL
           AND transcription_owner_id(transcription_id) = (SELECT current_app_user_id()));

-- Search (003) with the same rule.
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
