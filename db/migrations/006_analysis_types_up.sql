-- 006_analysis_types (up): the analyses of call audio and call intelligence.
--
-- ck_analyses_analysis_type listed the spec's five types; call recordings add
--   conversation  talk time and ratio, silence, overlap, interruptions, turns per speaker;
--   pii           personal data found in the transcript (type, span, words, times, score);
--   chapters      topical sections with headline, gist and summary;
--   topics        zero-shot labels from a configurable taxonomy, per chapter and per call;
--   llm_summary   an abstractive summary from an OpenAI-compatible server (optional).
-- 'custom' stays for user-defined analyses (and may repeat per version, as before). The column
-- is varchar(20), wide enough for every name here.

ALTER TABLE analyses DROP CONSTRAINT ck_analyses_analysis_type;
ALTER TABLE analyses ADD CONSTRAINT ck_analyses_analysis_type
    CHECK (analysis_type IN ('sentiment', 'summary', 'keywords', 'entities', 'conversation',
                             'pii', 'chapters', 'topics', 'llm_summary', 'custom'));
