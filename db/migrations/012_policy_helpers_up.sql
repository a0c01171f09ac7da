-- 012_policy_helpers (up): the per-row helpers of the policies keep their plans, and the
-- soft-delete policies resolve the credential only for the rows that need it.
--
-- Measured on GET /v2/transcript/{id} (app_read_transcript, 011): its file, latest transcript,
-- redaction and analyses each pass the SELECT policies of 007 and 009, which call definer
-- helpers per row (file_is_shown, transcription_is_shown, pii_unredacted_visible,
-- pii_unredacted_visible_for_transcription, transcription_owner_id).
--
-- 1. The helpers were LANGUAGE sql with a SET clause: such a function is never inlined and
--    its query is parsed and planned again in every statement that calls it (005 says the same
--    of the credential functions, which are plpgsql for that reason). As plpgsql they keep
--    their plans for the session. Same rules, same signatures, same answers; in a copy of
--    the benchmark data this halved the database time of app_read_transcript.
-- 2. pii_unredacted_visible() asked current_app_role() twice and current_app_user_id() once
--    per redacted row (each one the credential hashed and looked up again); now the role once,
--    and the user only for an analyst, and neither for a file that is not redacted.
-- 3. The *_deleted_hidden policies of 009 were `(SELECT current_app_role()) = 'admin' OR
--    <the row's file is not deleted>`: the admin test came first, so every statement resolved
--    the credential once more per table only to learn the caller is not an admin, although
--    nearly every row is of a file that is not deleted. The two tests are swapped (an OR of
--    two side-effect-free booleans, neither ever NULL: the same rows pass): the init plan now
--    runs only when a row's file is deleted. An admin pays one helper call per row instead.

CREATE OR REPLACE FUNCTION file_is_shown(file_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT f.deleted_at IS NULL OR f.deleted_at = now()
                     FROM public.audio_files f WHERE f.id = file_is_shown.file_id), false);
END;
$$;

CREATE OR REPLACE FUNCTION transcription_is_shown(transcription_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT f.deleted_at IS NULL OR f.deleted_at = now()
                     FROM public.transcriptions t JOIN public.audio_files f
                         ON f.id = t.audio_file_id
                     WHERE t.id = transcription_is_shown.transcription_id), false);
END;
$$;

CREATE OR REPLACE FUNCTION transcription_owner_id(transcription_id uuid) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (SELECT f.user_id FROM public.transcriptions t JOIN public.audio_files f
                ON f.id = t.audio_file_id
            WHERE t.id = transcription_owner_id.transcription_id);
END;
$$;

-- 007's rule: true when the file is not redacted (no redact_pii option, no redaction row), or
-- the acting user is an admin or a manager, or an analyst who owns the file; false for a
-- missing file and for nobody acting.
CREATE OR REPLACE FUNCTION pii_unredacted_visible(file_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    redacted boolean;
    file_owner uuid;
    acting_role text;
BEGIN
    SELECT coalesce(f.metadata -> 'options' -> 'redact_pii' = 'true'::jsonb, false)
               OR EXISTS (SELECT 1 FROM public.transcript_redactions r
                          WHERE r.audio_file_id = f.id),
           f.user_id
    INTO redacted, file_owner
    FROM public.audio_files f WHERE f.id = pii_unredacted_visible.file_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT redacted THEN
        RETURN true;
    END IF;
    acting_role := public.current_app_role();
    RETURN coalesce(acting_role IN ('admin', 'manager')
                    OR (acting_role = 'analyst'
                        AND file_owner = public.current_app_user_id()), false);
END;
$$;

CREATE OR REPLACE FUNCTION pii_unredacted_visible_for_transcription(transcription_id uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT public.pii_unredacted_visible(t.audio_file_id)
                     FROM public.transcriptions t
                     WHERE t.id = pii_unredacted_visible_for_transcription.transcription_id),
                    false);
END;
$$;

ALTER POLICY transcriptions_deleted_hidden ON transcriptions
    USING (file_is_shown(audio_file_id) OR (SELECT current_app_role()) = 'admin');
ALTER POLICY transcript_redactions_deleted_hidden ON transcript_redactions
    USING (file_is_shown(audio_file_id) OR (SELECT current_app_role()) = 'admin');
ALTER POLICY analyses_deleted_hidden ON analyses
    USING (transcription_is_shown(transcription_id) OR (SELECT current_app_role()) = 'admin');
