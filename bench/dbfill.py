"""Fill a freshly migrated database to scale with ``generate_series``: users, files, versions,
analyses that look like production rows.

At scale 1: 10,000 users, 1,000,000 ``audio_files``, 1,000,000 ``transcriptions`` and
3,000,000 ``analyses``. Per 1,000 files: 1 pending, 1 processing, 20 failed, 978 completed;
22 completed files have a second version (so 1,000 versions per 1,000 files, and ``is_latest``
matters). One user in 100 files is the heavy user 1 (10,000 files at scale 1). ``created_at``
grows with the row number over a year, as it does in a table filled over time.

Transcript texts are 50–500 words drawn from the 5,000 most frequent whole words of Whisper's
tokenizer vocabulary (tokenizer ranks follow corpus frequency) with Zipf weights, so common
words are common and rare ones selective. Generating a text per row in SQL would cost more than
the rest of the run, so a pool of distinct texts (with their segment lists) is made in Python
and rows take texts from it; every row still gets its own ``search_vector`` (generated column).

Bulk-load practice, stated in the results: secondary indexes are dropped before the load and
re-created after it with their exact definitions (pk/unique constraints stay), foreign-key
triggers are skipped (``session_replication_role = replica``; the data is consistent by
construction), and the tables are ``VACUUM ANALYZE``d, as autovacuum would have done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pipeline.transcription.model_files import tiny_en_dir

if TYPE_CHECKING:
    from bench.services import ServiceConfig

VOCABULARY_SIZE = 5_000
SEED = 20_240_601
TABLES = ("audio_files", "transcriptions", "analyses")
SESSION_SETTINGS = (
    "SET synchronous_commit = off",
    "SET session_replication_role = replica",
    "SET maintenance_work_mem = '512MB'",
    "SET work_mem = '64MB'",
)


@dataclass(frozen=True)
class Scale:
    users: int
    files: int
    pool: int  # distinct transcript texts

    @classmethod
    def of(cls, fraction: float) -> Scale:
        files = max(1_000, round(1_000_000 * fraction))
        users = max(10, round(10_000 * fraction))
        return cls(users=users, files=files, pool=max(200, min(20_000, files // 50)))

    @property
    def transcriptions(self) -> int:
        return self.files  # 978 first versions + 22 second versions per 1,000 files

    @property
    def analyses(self) -> int:
        return 3 * self.transcriptions


def vocabulary(size: int = VOCABULARY_SIZE) -> list[str]:
    """Whole lower-case words of the packaged tiny.en tokenizer, most frequent first."""
    vocab = json.loads((tiny_en_dir() / "tokenizer.json").read_text())["model"]["vocab"]
    words = sorted(
        (rank, token[1:])
        for token, rank in vocab.items()
        if token.startswith("Ġ")
        and token[1:].isascii()
        and token[1:].isalpha()
        and token[1:].islower()
        and len(token) > 2
    )
    return [word for _, word in words[:size]]


def zipf_weights(size: int) -> list[float]:
    """Cumulative weights ∝ 1/rank (Zipf, s = 1)."""
    total, cumulative = 0.0, []
    for rank in range(1, size + 1):
        total += 1.0 / rank
        cumulative.append(total)
    return cumulative


def text_pool(count: int, words: list[str], seed: int = SEED) -> list[tuple[str, int, str]]:
    """(text, word count, segments JSON) × count; segments of ~25 words at 2.5 words/s."""
    rng = random.Random(seed)
    cumulative = zipf_weights(len(words))
    pool = []
    for _ in range(count):
        n = rng.randint(50, 500)
        chosen = rng.choices(words, cum_weights=cumulative, k=n)
        segments, start = [], 0.0
        for index in range(0, n, 25):
            chunk = chosen[index : index + 25]
            end = start + len(chunk) / 2.5
            segments.append(
                {
                    "id": index // 25,
                    "start": round(start, 2),
                    "end": round(end, 2),
                    "text": " ".join(chunk),
                    "avg_logprob": -0.3,
                    "no_speech_prob": 0.01,
                }
            )
            start = end + 0.4
        pool.append((" ".join(chosen), n, json.dumps(segments)))
    return pool


def _copy_rows(conn: psycopg.Connection, statement: str, rows: list[tuple[object, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def secondary_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, CREATE INDEX …) of the three big tables' indexes not backing a constraint."""
    rows = conn.execute(
        """
        SELECT ci.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class ci ON ci.oid = i.indexrelid
        JOIN pg_class ct ON ct.oid = i.indrelid
        WHERE ct.relname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        ORDER BY ct.relname, ci.relname
        """,
        (list(TABLES),),
    ).fetchall()
    return [(str(name), str(definition)) for name, definition in rows]


FILES_SQL = """
INSERT INTO audio_files (
    id, user_id, file_name, file_path, file_size, file_format, mime_type, checksum,
    duration_seconds, sample_rate, channels, bitrate, codec, status, stage, attempts,
    lease_expires_at, error_message, error_details, metadata, upload_started_at,
    upload_completed_at, processing_started_at, processing_completed_at, created_at, updated_at)
SELECT
    md5('f' || i)::uuid,
    CASE WHEN i %% 100 = 0 THEN md5('u1')::uuid
         ELSE md5('u' || (2 + (i * 7919) %% (%(users)s - 1)))::uuid END,
    'call-' || i || '.' || fmt,
    '/srv/teleai/storage/' || to_char(created, 'YYYY/MM') || '/' || md5('f' || i) || '.' || fmt,
    50000 + (i * 7919) %% 40000000,
    fmt,
    'audio/' || fmt,
    md5('a' || i) || md5('b' || i),
    (10 + (i * 37) %% 1800)::numeric(12,3),
    CASE WHEN i %% 3 = 0 THEN 8000 WHEN i %% 3 = 1 THEN 16000 ELSE 44100 END,
    1 + i %% 2,
    CASE WHEN fmt IN ('wav', 'flac') THEN NULL ELSE 96000 END,
    CASE fmt WHEN 'mp3' THEN 'mp3' WHEN 'wav' THEN 'pcm_s16le' WHEN 'm4a' THEN 'aac'
             WHEN 'ogg' THEN 'vorbis' WHEN 'flac' THEN 'flac' ELSE 'opus' END,
    status, stage,
    CASE WHEN status = 'processing' THEN 1 WHEN status = 'completed' THEN 0 ELSE 1 END,
    CASE WHEN status = 'processing' THEN now() + interval '60 seconds' END,
    CASE WHEN status = 'failed' THEN stage || ' failed: could not read the stream' END,
    CASE WHEN status = 'failed' THEN jsonb_build_object('stage', stage, 'attempt', 1) END,
    CASE WHEN status = 'completed' THEN jsonb_build_object(
        'probe', jsonb_build_object('probed_with', 'mutagen'),
        'stage_seconds', jsonb_build_object('probe', 0.004, 'decode', 0.21,
            'transcribe', round((i %% 90)::numeric / 10 + 1, 2), 'analyze', 0.9))
         ELSE '{}'::jsonb END,
    created, created + interval '1 second',
    CASE WHEN status <> 'pending' THEN created + interval '2 seconds' END,
    CASE WHEN status IN ('completed', 'failed')
         THEN created + interval '2 seconds' + (10 + (i * 37) %% 1800) * interval '100 ms' END,
    created, created
FROM (
    SELECT i,
           now() - (%(files)s - i)::float8 / %(files)s * interval '365 days' AS created,
           CASE WHEN i %% 10 < 5 THEN 'mp3' WHEN i %% 10 < 7 THEN 'wav' WHEN i %% 10 = 7 THEN 'm4a'
                WHEN i %% 10 = 8 THEN 'ogg' WHEN i %% 20 = 9 THEN 'flac' ELSE 'webm' END AS fmt,
           CASE WHEN i %% 1000 = 0 THEN 'pending' WHEN i %% 1000 = 1 THEN 'processing'
                WHEN i %% 1000 < 22 THEN 'failed' ELSE 'completed' END AS status,
           CASE WHEN i %% 1000 = 0 THEN 'ingest' WHEN i %% 1000 = 1 THEN 'transcribe'
                WHEN i %% 1000 < 22
                THEN (ARRAY['ingest', 'transcribe', 'analyze'])[1 + (i %% 3)::int]
                ELSE 'analyze' END AS stage
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
) AS f
"""

# Every completed file (i % 1000 >= 22) has version 1; those with i % 1000 < 44 also version 2.
VERSIONS_SQL = """
INSERT INTO transcriptions (
    id, audio_file_id, version, is_latest, transcription_text, language_code, confidence_score,
    engine, engine_version, model_name, segments, word_count, processing_time_seconds,
    metadata, created_at, updated_at)
SELECT
    md5('t' || v.i || '-' || v.version)::uuid,
    md5('f' || v.i)::uuid,
    v.version,
    v.version = 2 OR v.i %% 1000 >= 44,
    p.body, 'en', (0.55 + (v.i %% 40)::numeric / 100)::numeric(5,4),
    'faster-whisper', '1.2.1', 'tiny.en', p.segments, p.words,
    round((v.i %% 90)::numeric / 10 + 1, 3),
    jsonb_build_object('audio_seconds', 10 + (v.i * 37) %% 1800, 'parameters',
                       jsonb_build_object('beam_size', 1, 'vad_filter', true)),
    v.created, v.created
FROM (
    SELECT i, version,
           now() - (%(files)s - i)::float8 / %(files)s * interval '365 days'
                 + version * interval '1 minute' AS created
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
    CROSS JOIN LATERAL (VALUES (1), (2)) AS versions(version)
    WHERE i %% 1000 >= 22 AND (version = 1 OR i %% 1000 < 44)
) AS v
JOIN bench_texts p ON p.id = (v.i * 31 + v.version) %% %(pool)s
"""

ANALYSES_SQL = """
INSERT INTO analyses (
    id, transcription_id, analysis_type, result, model_name, parameters,
    processing_time_seconds, created_at, updated_at)
SELECT
    md5('a' || v.i || '-' || v.version || '-' || k.kind)::uuid,
    md5('t' || v.i || '-' || v.version)::uuid,
    k.kind, r.result,
    CASE k.kind WHEN 'sentiment' THEN 'vader' ELSE 'all-MiniLM-L6-v2' END,
    '{}'::jsonb, 0.05 + (v.i %% 20)::numeric / 100, v.created, v.created
FROM (
    SELECT i, version,
           now() - (%(files)s - i)::float8 / %(files)s * interval '365 days'
                 + version * interval '2 minutes' AS created
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
    CROSS JOIN LATERAL (VALUES (1), (2)) AS versions(version)
    WHERE i %% 1000 >= 22 AND (version = 1 OR i %% 1000 < 44)
) AS v
CROSS JOIN unnest(ARRAY['sentiment', 'summary', 'keywords']) AS k(kind)
JOIN bench_results r ON r.kind = k.kind AND r.id = (v.i * 17 + v.version) %% 1000
"""


def _results_pool(words: list[str], texts: list[tuple[str, int, str]]) -> list[tuple[object, ...]]:
    """1,000 results of each analysis type in the shapes the analyses write."""
    rng = random.Random(SEED + 1)
    rows: list[tuple[object, ...]] = []
    for index in range(1000):
        score = round(rng.uniform(-1, 1), 4)
        label = "positive" if score > 0.05 else "negative" if score < -0.05 else "neutral"
        sentiment = {
            "overall": {
                "label": label,
                "score": score,
                "units": rng.randint(3, 40),
                "scores": {"negative": 0.1, "neutral": 0.7, "positive": 0.2},
            },
            "segments": [],
        }
        body = texts[index % len(texts)][0]
        summary = {
            "summary": body[:300],
            "sentence_count": 3,
            "ratio": 0.2,
            "sentences": [{"index": 0, "text": body[:100], "score": 0.8}],
        }
        keywords = {
            "keywords": [
                {"keyword": rng.choice(words[100:2000]), "score": round(rng.random(), 3)}
                for _ in range(8)
            ]
        }
        rows += [
            (index, "sentiment", json.dumps(sentiment)),
            (index, "summary", json.dumps(summary)),
            (index, "keywords", json.dumps(keywords)),
        ]
    return rows


def _parallel(url: str, sql_text: str, params: dict[str, int], total: int, workers: int) -> None:
    """Run ``sql_text`` over ``1..total`` in chunks, ``workers`` connections at a time."""
    chunk = max(1, math.ceil(total / (workers * 4)))
    ranges = [(lo, min(total, lo + chunk - 1)) for lo in range(1, total + 1, chunk)]

    def load(bounds: tuple[int, int]) -> None:
        with psycopg.connect(url) as conn:
            for statement in SESSION_SETTINGS:
                conn.execute(statement)
            conn.execute(sql_text, {**params, "lo": bounds[0], "hi": bounds[1]})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(load, ranges))


@dataclass(frozen=True)
class Filled:
    steps: dict[str, float]  # seconds per step
    sample_text: str  # one of the pool's texts (queries pick search words from it)


def fill(url: str, scale: Scale, *, workers: int = 2) -> Filled:
    """Load the database at ``url`` (libpq URL, freshly migrated)."""
    steps: dict[str, float] = {}

    def step(name: str, action: Callable[[], object]) -> None:
        started = time.perf_counter()
        action()
        steps[name] = round(time.perf_counter() - started, 2)

    words = vocabulary()
    texts: list[tuple[str, int, str]] = []
    step("make text pool (Python)", lambda: texts.extend(text_pool(scale.pool, words)))
    params = {"files": scale.files, "users": scale.users, "pool": scale.pool}
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SESSION_SETTINGS:
            conn.execute(statement)

        def pools() -> None:
            conn.execute(
                "CREATE TABLE bench_texts (id int PRIMARY KEY, body text, words int, "
                "segments jsonb)"
            )
            _copy_rows(
                conn,
                "COPY bench_texts (id, body, words, segments) FROM STDIN",
                [(i, t, n, s) for i, (t, n, s) in enumerate(texts)],
            )
            conn.execute(
                "CREATE TABLE bench_results (id int, kind text, result jsonb, "
                "PRIMARY KEY (kind, id))"
            )
            _copy_rows(
                conn,
                "COPY bench_results (id, kind, result) FROM STDIN",
                _results_pool(words, texts),
            )

        step("text and result pools", pools)
        step("users", lambda: conn.execute(USERS_SQL, {"users": scale.users}))
        indexes = secondary_indexes(conn)

        def drop() -> None:
            for name, _ in indexes:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))

        step("drop secondary indexes", drop)
    step("audio_files", lambda: _parallel(url, FILES_SQL, params, scale.files, workers))
    step("transcriptions", lambda: _parallel(url, VERSIONS_SQL, params, scale.files, workers))
    step("analyses", lambda: _parallel(url, ANALYSES_SQL, params, scale.files, workers))
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SESSION_SETTINGS:
            conn.execute(statement)

        def recreate() -> None:
            for _, definition in indexes:
                conn.execute(definition)

        step("re-create secondary indexes", recreate)
        step("drop pools", lambda: conn.execute("DROP TABLE bench_texts, bench_results"))
        step("VACUUM ANALYZE", lambda: conn.execute("VACUUM ANALYZE"))
        step(
            "REFRESH MATERIALIZED VIEW (initial)",
            lambda: conn.execute("REFRESH MATERIALIZED VIEW file_processing_analytics"),
        )
    return Filled(steps, texts[0][0])


USERS_SQL = """
INSERT INTO users (id, email, username, password_hash, full_name, role, is_active,
                   last_login_at, created_at, updated_at, deleted_at)
SELECT md5('u' || i)::uuid, 'user' || i || '@example.com', 'user' || i,
       '$argon2id$v=19$m=65536,t=3,p=4$bench$bench', 'User ' || i,
       (ARRAY['admin', 'manager', 'analyst', 'viewer'])[1 + i %% 4],
       i %% 50 <> 0, now() - (i %% 30) * interval '1 day',
       now() - interval '400 days', now() - interval '400 days',
       CASE WHEN i %% 200 = 0 THEN now() - interval '10 days' END
FROM generate_series(1, %(users)s) AS i
"""


# --- a filled database kept between runs ------------------------------------------------------

KEEP_ENV = "TELEAI_BENCH_KEEP_DB"
LEGACY_KEEP_ENV = "TELEAI_BENCH_API_KEEP_DB"  # the api benchmark's earlier name, still honoured
_FILLED_MARK = "teleai bench: filled to {files} files"


def keep_name(option: str | None = None) -> str | None:
    """The database to keep: ``--keep-db``, else ``TELEAI_BENCH_KEEP_DB`` (or the older
    ``TELEAI_BENCH_API_KEEP_DB``), else None (a fresh database, dropped after)."""
    return option or os.environ.get(KEEP_ENV) or os.environ.get(LEGACY_KEEP_ENV) or None


@contextlib.contextmanager
def filled_database(
    services: ServiceConfig,
    scale: Scale,
    tag: str,
    notes: list[str],
    keep: str | None = None,
    workers: int = 2,
) -> Iterator[tuple[str, Filled]]:
    """(SQLAlchemy URL, fill report) of a database filled to ``scale``.

    Without ``keep``: a fresh database, dropped when the block ends. With it: the database of
    that name, filled once and reused by every later run (the 1M fill takes 10-20 minutes, a
    tuning iteration seconds); new migrations are applied to it first. The fill is marked
    complete in the database's comment only after its last step, so an interrupted fill is
    dropped and redone rather than measured. Drop it by hand when done.
    """
    # Imported here: filling needs only psycopg (a fill can run from a bare virtualenv).
    from sqlalchemy import make_url

    from bench.services import drop_database, fresh_database
    from db.engine import libpq_url
    from db.migrate import MigrationError, upgrade

    if keep is None:
        with fresh_database(services, tag) as url:
            yield url, fill(libpq_url(url), scale, workers=workers)
        return
    url = make_url(services.admin_url).set(database=keep).render_as_string(hide_password=False)
    mark = _FILLED_MARK.format(files=scale.files)
    with psycopg.connect(libpq_url(services.admin_url), autocommit=True) as admin:
        found = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (keep,),
        ).fetchone()
        if found is not None and found[0] != mark:
            notes.append(f"The kept database {keep} was not completely filled: filled again.")
            drop_database(services, keep)
            found = None
        if found is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(keep)))
    try:
        upgrade(libpq_url(url))
    except MigrationError as error:  # a migration edited since it was applied (work in progress)
        if found is None:
            raise
        notes.append(f"The kept database {keep} was not migrated again: {error}")
    if found is None:
        filled = fill(libpq_url(url), scale, workers=workers)
        with psycopg.connect(libpq_url(services.admin_url), autocommit=True) as admin:
            admin.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(keep), sql.Literal(mark)
                )
            )
    else:
        # The pool's first text is the first one drawn from the seeded generator.
        filled = Filled({}, text_pool(1, vocabulary())[0][0])
        notes.append(
            f"Reused the database {keep} filled by an earlier run ({scale.files:,} files)."
        )
    try:
        yield url, filled
    finally:
        from db.engine import dispose_all

        dispose_all()
