-- 012_policy_helpers (down): the helpers as LANGUAGE sql again (007, 009), the admin test first in
-- the *_deleted_hidden policies (009).

CREATE OR REPLACE FUNCTION pii_unredacted_visible(file_id uuid) RETURNS boolean
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

CREATE OR REPLACE FUNCTION pii_unredacted_visible_for_transcription(transcription_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce((SELECT public.pii_unredacted_visible(t.audio_file_id)
                     FROM public.transcriptions t WHERE t.id = transcription_id), false)
$$;

CREATE OR REPLACE FUNCTION transcription_owner_id(transcription_id uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT f.user_id FROM public.transcriptions t JOIN public.audio_files f
        ON f.id = t.audio_file_id WHERE t.id = transcription_id
$$;

CREATE OR REPLACE FUNCTION file_is_shown(file_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce((SELECT f.deleted_at IS NULL OR f.deleted_at = now()
                     FROM public.audio_files f WHERE f.id = file_id), false)
$$;

CREATE OR REPLACE FUNCTION transcription_is_shown(transcription_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce((SELECT f.deleted_at IS NULL OR f.deleted_at = now()
                     FROM public.transcriptions t JOIN public.audio_files f
                         ON f.id = t.audio_file_id
                     WHERE t.id = transcription_id), false)
$$;

ALTER POLICY transcriptions_deleted_hidden ON transcriptions
    USING ((SELECT current_app_role()) = 'admin' OR file_is_shown(audio_file_id));
ALTER POLICY transcript_redactions_deleted_hidden ON transcript_redactions
    USING ((SELECT current_app_role()) = 'admin' OR file_is_shown(audio_file_id));
ALTER POLICY analyses_deleted_hidden ON analyses
    USING ((SELECT current_app_role()) = 'admin' OR transcription_is_shown(transcription_id));
