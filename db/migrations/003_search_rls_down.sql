-- 003_search_rls (down): back to exactly the schema of 002 (search runs as a plain query again,
-- correct under RLS but without its GIN index for the app role).

DROP FUNCTION search_latest_transcriptions(text, integer, uuid);
