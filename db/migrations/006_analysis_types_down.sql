-- 006_analysis_types (down): back to the spec's five types. Rows of the newer types are deleted
-- first (they cannot satisfy the old CHECK); their transcriptions and the spec's analyses stay.

DELETE FROM analyses
 WHERE analysis_type IN ('conversation', 'pii', 'chapters', 'topics', 'llm_summary');
ALTER TABLE analyses DROP CONSTRAINT ck_analyses_analysis_type;
ALTER TABLE analyses ADD CONSTRAINT ck_analyses_analysis_type
    CHECK (analysis_type IN ('sentiment', 'summary', 'keywords', 'entities', 'custom'));
