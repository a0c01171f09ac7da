"""Benchmark 6: the application's queries on a database filled to scale, with their plans.

Every query is the one the application runs: it is captured from the real data-access function
(``db.files.list_user_files``, ``db.transcripts.search_transcripts``, …) through SQLAlchemy's
``before_cursor_execute`` event, then timed as sent (median of repeats, client round trip) and
explained with ``EXPLAIN (ANALYZE, BUFFERS)``. Plans are stored in the results; a sequential scan
of a big table is flagged, because an index may fix it.

Search runs inside a SQL function (migration 003), whose ``EXPLAIN`` is one "Function Scan"; for
those cases the plans of the statements inside it are collected too, with ``auto_explain``
(:mod:`db.explain`), so the results show whether the GIN index was used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session

from bench.context import Context
from bench.dbfill import Scale, filled_database, keep_name, vocabulary
from bench.results import Section, Table, Target
from db import auth_sessions, files, monitoring, transcripts, users
from db.explain import nested_plans
from tests.harness import statements_sent

BIG_TABLES = ("audio_files", "transcriptions", "analyses", "users")
APP_ROLE = "teleai_app"  # migration 002: the role the application logs in as (RLS applies)
LARGE_TABLE_ROWS = 10_000
SLOW_SECONDS = 1.0
QUERY_BUDGET_SECONDS = 5.0  # a sequential scan of a smaller table is the planner being sensible
GIN_INDEX = "idx_transcriptions_search_vector"
# A viewer sees only their own files: starting from them (this index, then the latest version of
# each) is the better plan when the words are common enough, and the planner may choose it.
OWN_FILES_INDEX = "idx_audio_files_user_id_created_at"
FUNCTION_CALL = re.compile(r"\bFROM search_latest_transcriptions\(")
# auto_explain also reports our own set-up statements and the outer EXPLAIN: not worth storing.
_SKIPPED_PLAN = re.compile(r"\AQuery Text: (?:EXPLAIN|SELECT set_config\()")
# The search before migration 003, a plain query: correct under RLS, but `@@` is not LEAKPROOF,
# so the GIN index cannot serve it for the app role. Kept to measure "before" side by side.
PLAIN_SEARCH_SQL = """
    WITH q AS (SELECT websearch_to_tsquery('english', :query) AS query),
    hits AS (
        SELECT t.id, t.audio_file_id, af.file_name, t.transcription_text, q.query,
               ts_rank_cd(t.search_vector, q.query) AS rank, t.created_at
        FROM transcriptions t
        JOIN audio_files af ON af.id = t.audio_file_id
        CROSS JOIN q
        WHERE t.is_latest AND t.search_vector @@ q.query
        ORDER BY rank DESC, t.created_at DESC, t.id
        LIMIT 20
    )
    SELECT id, audio_file_id, file_name, rank,
           ts_headline('english', transcription_text, query,
                       'StartSel="**", StopSel="**", MaxWords=35, MinWords=15, MaxFragments=2')
    FROM hits
    ORDER BY rank DESC, created_at DESC, id
"""


@dataclass(frozen=True)
class QueryCase:
    """One application query; ``as_user`` runs it as the application role acting for that user
    (``SET LOCAL ROLE teleai_app`` + ``app.credential``, a session token of that user), so
    row-level security applies."""

    name: str
    call: Callable[[Session], object]
    target_ms: float | None = None
    as_user: uuid.UUID | None = None
    required_index: tuple[str, ...] = ()  # the target also needs one of these in the plan


@dataclass
class Measured:
    case: QueryCase
    median_ms: float
    p90_ms: float
    server_ms: float | None
    rows: int
    plan: str

    large_tables: frozenset[str] = frozenset(BIG_TABLES)

    @property
    def seq_scans(self) -> list[str]:
        """Large tables read whole (a sensible planner scans small ones whole)."""
        return sorted(set(re.findall(r"Seq Scan on (\w+)", self.plan)) & self.large_tables)

    @property
    def indexes(self) -> list[str]:
        used = re.findall(r"Index (?:Only )?Scan (?:Backward )?using (\w+)", self.plan)
        used += re.findall(r"Bitmap Index Scan on (\w+)", self.plan)
        return sorted(set(used))


def capture(engine: Engine, call: Callable[[Session], object]) -> tuple[str, Any]:
    """The last statement (and its parameters) that ``call`` sends to the database."""
    with statements_sent(engine) as seen, Session(engine) as session, session.begin():
        call(session)
    if not seen:
        raise RuntimeError("the call sent no SQL")
    return seen[-1]


def _act(conn: Connection, case: QueryCase, credentials: dict[uuid.UUID, str]) -> None:
    """As the app role with the case's user's credential, for this transaction only.

    Migration 005: the app role names no user; the database derives it from the credential
    (here a session token made for the run, see :func:`sign_in`).
    """
    if case.as_user is not None:
        conn.exec_driver_sql(f"SET LOCAL ROLE {APP_ROLE}")
        conn.exec_driver_sql(
            "SELECT set_config('app.credential', %(token)s, true)",
            {"token": credentials[case.as_user]},
        )


def sign_in(engine: Engine, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """A live session token per user, made as the owner (the login path is not measured)."""
    tokens: dict[uuid.UUID, str] = {}
    with Session(engine) as session, session.begin():
        for user_id in dict.fromkeys(user_ids):
            _, tokens[user_id] = auth_sessions.create_session(
                session, user_id, ip_address=None, user_agent="bench", ttl=dt.timedelta(days=1)
            )
    with engine.connect() as conn:  # each token must act as its user, or RLS rows measure nobody
        for user_id, token in tokens.items():
            conn.exec_driver_sql(f"SET LOCAL ROLE {APP_ROLE}")
            conn.exec_driver_sql(
                "SELECT set_config('app.credential', %(token)s, true)", {"token": token}
            )
            acting = conn.exec_driver_sql("SELECT current_app_user_id()").scalar_one()
            conn.rollback()
            if acting != user_id:
                raise RuntimeError(f"a session token of {user_id} acts as {acting}")
    return tokens


def measure(
    engine: Engine,
    case: QueryCase,
    repeats: int,
    large: frozenset[str],
    credentials: dict[uuid.UUID, str],
) -> Measured:
    statement, parameters = capture(engine, case.call)
    rows = 0
    with engine.connect() as conn:
        _act(conn, case, credentials)
        counted: list[float] = []
        spent = 0.0
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            result = conn.exec_driver_sql(statement, parameters)
            rows = len(result.fetchall()) if result.returns_rows else 0
            elapsed = time.perf_counter() - started
            spent += elapsed
            # The first run warms the cache and is not counted, unless it is slow anyway; slow
            # queries stop repeating after a few seconds (their plan says why they are slow).
            if attempt or elapsed > SLOW_SECONDS:
                counted.append(1000 * elapsed)
            if counted and spent > QUERY_BUDGET_SECONDS:
                break
        conn.rollback()
        inner: list[str] = []
        with contextlib.ExitStack() as stack:
            if FUNCTION_CALL.search(statement):
                # Set up before SET LOCAL ROLE: auto_explain's settings need a superuser.
                inner = stack.enter_context(nested_plans(conn))
            _act(conn, case, credentials)
            plan_rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(str(r[0]) for r in plan_rows)
        conn.rollback()
    nested = [text for text in inner if not _SKIPPED_PLAN.search(text)]
    if nested:
        plan += "\n\n-- statements run inside the function (auto_explain):\n\n"
        plan += "\n\n".join(nested)
    found = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return Measured(
        case=case,
        median_ms=statistics.median(counted),
        p90_ms=statistics.quantiles(counted, n=10)[-1] if len(counted) >= 10 else max(counted),
        server_ms=float(found.group(1)) if found else None,
        rows=rows,
        plan=f"-- {case.name}\n{statement}\n-- parameters: {parameters}\n\n{plan}",
        large_tables=large,
    )


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 10 else max(values)


def interleaved(
    engine: Engine, planned: list[QueryCase], repeats: int, credentials: dict[uuid.UUID, str]
) -> dict[str, list[float]]:
    """Client round trips (ms) of ``planned`` run round-robin, one of each per round (after a
    warm-up round), so that a shared machine's load drifts over all of them alike."""
    statements = {case.name: capture(engine, case.call) for case in planned}
    times: dict[str, list[float]] = {case.name: [] for case in planned}
    with engine.connect() as conn:
        for round_number in range(repeats + 1):
            for case in planned:
                statement, parameters = statements[case.name]
                _act(conn, case, credentials)
                started = time.perf_counter()
                conn.exec_driver_sql(statement, parameters).fetchall()
                elapsed = 1000 * (time.perf_counter() - started)
                conn.rollback()
                if round_number:
                    times[case.name].append(elapsed)
    return times


def time_refresh(engine: Engine, repeats: int) -> list[float]:
    seconds = []
    with engine.connect() as conn:
        for _ in range(repeats):
            started = time.perf_counter()
            conn.execute(text(monitoring.REFRESH_ANALYTICS_SQL))
            conn.commit()
            seconds.append(1000 * (time.perf_counter() - started))
    return seconds


def search_words(sample_text: str, words: list[str]) -> tuple[str, str]:
    """(two mid-frequency words that occur together in a stored text, one common word).

    Words of rank 1,000-3,000 match a few per cent of the texts each, so both together are a
    selective search with hits; the rank-800 word matches many texts (a broad search).
    """
    rank = {word: index for index, word in enumerate(words)}
    mid = [w for w in dict.fromkeys(sample_text.split()) if 1000 <= rank.get(w, -1) < 3000]
    if len(mid) < 2:
        raise RuntimeError("the sample text has too few mid-frequency words")
    return f"{mid[0]} {mid[1]}", words[800]


def _picks(engine: Engine, scale: Scale, sample_text: str) -> dict[str, Any]:
    """Concrete arguments: users, a file with two versions, search words."""
    with engine.connect() as conn:
        typical = conn.execute(text("SELECT md5('u2')::uuid")).scalar_one()
        two_versions = conn.execute(
            text("SELECT audio_file_id FROM transcriptions WHERE version = 2 LIMIT 1")
        ).scalar_one()
        viewer = conn.execute(text("SELECT md5('u3')::uuid")).scalar_one()  # role 'viewer'
        named = conn.execute(
            text(
                "SELECT username, role FROM users WHERE username IN ('user1', 'user2', 'user3') "
                "AND is_active AND deleted_at IS NULL"
            )
        )
        roles = {str(name): str(role) for name, role in named}
        viewer_file = conn.execute(
            text(
                "SELECT id FROM audio_files WHERE user_id = md5('u3')::uuid AND status = "
                "'completed' LIMIT 1"
            )
        ).scalar_one()
        has_rls = conn.execute(
            text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}
        ).scalar_one()
        viewer_text = conn.execute(
            text(
                "SELECT t.transcription_text FROM transcriptions t "
                "JOIN audio_files f ON f.id = t.audio_file_id "
                "WHERE f.user_id = md5('u3')::uuid AND t.is_latest ORDER BY t.id LIMIT 1"
            )
        ).scalar_one()
    # dbfill.USERS_SQL: role by user number; the RLS cases rely on these three.
    wanted = {"user1": "manager", "user2": "analyst", "user3": "viewer"}
    if roles != wanted:
        raise RuntimeError(f"the filled users' roles changed: {roles}, wanted {wanted}")
    two_words, one_word = search_words(sample_text, vocabulary())
    viewer_words, _ = search_words(str(viewer_text), vocabulary())
    return {
        "viewer_words": viewer_words,  # in one of the viewer's own transcripts: hits
        "viewer": uuid.UUID(str(viewer)),
        "analyst": uuid.UUID(str(typical)),
        "viewer_file": viewer_file,
        "rls": bool(has_rls),
        "heavy_user": uuid.UUID(str(_uuid(engine, "u1"))),
        "typical_user": uuid.UUID(str(typical)),
        "file_with_versions": two_versions,
        "two_words": two_words,
        "one_word": one_word,
        "email": f"user{min(123, scale.users - 1)}@example.com",
    }


def _uuid(engine: Engine, seed: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT md5(:s)::uuid"), {"s": seed}).scalar_one()


def cases(p: dict[str, Any]) -> list[QueryCase]:
    def second_page(session: Session) -> object:
        first = files.list_user_files(session, p["heavy_user"], limit=50)
        return files.list_user_files(
            session, p["heavy_user"], limit=50, before=first[-1].created_at, before_id=first[-1].id
        )

    return [
        QueryCase("processing queue (monitoring)", monitoring.processing_queue, 5),
        QueryCase(
            "file listing, heavy user, page 1",
            lambda s: files.list_user_files(s, p["heavy_user"], limit=50),
            5,
        ),
        QueryCase("file listing, heavy user, page 2 (keyset)", second_page, 5),
        QueryCase(
            "file listing, typical user, page 1",
            lambda s: files.list_user_files(s, p["typical_user"], limit=50),
            5,
        ),
        QueryCase(
            f"FTS search '{p['two_words']}'",
            lambda s: transcripts.search_transcripts(s, p["two_words"]),
            50,
        ),
        QueryCase(
            f"FTS search '{p['two_words']}', one user",
            lambda s: transcripts.search_transcripts(s, p["two_words"], user_id=p["typical_user"]),
            50,
        ),
        QueryCase(
            f"FTS search '{p['one_word']}' (broad: one common word)",
            lambda s: transcripts.search_transcripts(s, p["one_word"]),
        ),
        QueryCase("active-email lookup", lambda s: users.get_active_user(s, p["email"])),
        QueryCase(
            "is_latest lookup (latest version of a file)",
            lambda s: transcripts.latest_transcription(s, p["file_with_versions"]),
        ),
        QueryCase(
            "user activity view, heavy user",
            lambda s: monitoring.user_activity(s, p["heavy_user"]),
        ),
        QueryCase(
            "user activity view, typical user",
            lambda s: monitoring.user_activity(s, p["typical_user"]),
        ),
        QueryCase(
            "analytics view definition (what REFRESH computes)",
            lambda s: s.execute(text(_matview_sql(s))).all(),
        ),
        *(rls_cases(p) if p["rls"] else []),
    ]


def rls_cases(p: dict[str, Any]) -> list[QueryCase]:
    """The user-facing queries again, as the application role under row-level security."""
    viewer, analyst, manager = p["viewer"], p["analyst"], p["heavy_user"]
    words = p["two_words"]
    searchers = [("viewer", viewer, "own files"), ("analyst", analyst, "all files")]
    searchers.append(("manager", manager, "all files"))

    def plain(session: Session) -> object:
        return session.execute(text(PLAIN_SEARCH_SQL), {"query": words}).all()

    return [
        QueryCase(
            "RLS viewer: own file listing, page 1",
            lambda s: files.list_user_files(s, viewer, limit=50),
            5,
            viewer,
        ),
        QueryCase(
            "RLS manager: heavy user's file listing, page 1",
            lambda s: files.list_user_files(s, manager, limit=50),
            5,
            manager,
        ),
        *(
            QueryCase(
                f"RLS {role}: FTS search '{words}' ({seen})",
                lambda s: transcripts.search_transcripts(s, words),
                50,
                user,
                (GIN_INDEX, OWN_FILES_INDEX) if role == "viewer" else (GIN_INDEX,),
            )
            for role, user, seen in searchers
        ),
        QueryCase(
            f"RLS viewer: FTS search '{p['viewer_words']}' (own files, words of an own file)",
            lambda s: transcripts.search_transcripts(s, p["viewer_words"]),
            50,
            viewer,
            (GIN_INDEX, OWN_FILES_INDEX),
        ),
        *(
            QueryCase(
                f"RLS {role}: FTS search '{words}' as a plain query (before 003, no target)",
                plain,
                None,
                user,
            )
            for role, user, _ in searchers
            # Minutes each at 1M rows (every visible row through the policies): for tuning
            # runs, TELEAI_BENCH_DB_PLAIN_SEARCH=0 leaves them out.
            if os.environ.get("TELEAI_BENCH_DB_PLAIN_SEARCH", "1") != "0"
        ),
        QueryCase(
            "RLS viewer: is_latest lookup of an own file",
            lambda s: transcripts.latest_transcription(s, p["viewer_file"]),
            None,
            viewer,
        ),
        QueryCase(
            "RLS viewer: own user activity",
            lambda s: monitoring.user_activity(s, viewer),
            None,
            viewer,
        ),
    ]


def _matview_sql(session: Session) -> str:
    return str(
        session.execute(text("SELECT pg_get_viewdef('file_processing_analytics'::regclass)"))
        .scalar_one()
        .rstrip(";")
    )


def run(ctx: Context) -> Section:
    scale = Scale.of(ctx.db_scale)
    section = Section("db", "6. Database at scale: queries and plans")
    repeats = ctx.sizes.db_repeats
    keep = keep_name(ctx.keep_db)
    with filled_database(ctx.services, scale, "db", section.notes, keep, workers=ctx.threads) as (
        url,
        filled,
    ):
        steps = filled.steps
        engine = create_engine(url, pool_size=2)
        try:
            with Session(engine) as session:
                sizes = monitoring.table_sizes(session)
                counts = {
                    t: int(session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())  # noqa: S608
                    for t in BIG_TABLES
                }
            large = frozenset(t for t, n in counts.items() if n >= LARGE_TABLE_ROWS)
            picks = _picks(engine, scale, filled.sample_text)
            planned = cases(picks)
            credentials = sign_in(engine, [c.as_user for c in planned if c.as_user is not None])
            measured = [measure(engine, case, repeats, large, credentials) for case in planned]
            searches = [c for c in planned if c.as_user is not None and c.target_ms is not None]
            searches = [c for c in searches if "FTS search" in c.name]
            round_robin = interleaved(engine, searches, repeats, credentials)
            refresh = time_refresh(engine, max(2, repeats // 5))
        finally:
            engine.dispose()
    fill_table = Table("Fill (seconds per step)", ["step", "seconds"])
    for name, seconds in steps.items():
        fill_table.add(name, seconds)
    size_table = Table("Rows and sizes", ["table", "rows", "size (with indexes and TOAST)"])
    for entry in sizes:
        size_table.add(entry.tablename, counts.get(entry.tablename), entry.size)
    queries = Table(
        f"Queries (client round trip, median of {repeats}; server = EXPLAIN ANALYZE)",
        ["query", "median ms", "p90 ms", "server ms", "rows", "indexes used", "seq scans"],
    )
    for m in measured:
        queries.add(
            m.case.name,
            m.median_ms,
            m.p90_ms,
            m.server_ms,
            m.rows,
            ", ".join(m.indexes) or "-",
            ", ".join(m.seq_scans) or "-",
        )
        section.plans[m.case.name] = m.plan
        if m.case.target_ms is not None:
            # Searches under RLS are judged by their round-robin median (below): measured one
            # after the other, a role's 15 repeats could fall into a busy minute of its own.
            median = statistics.median(round_robin.get(m.case.name) or [m.median_ms])
            met = median < m.case.target_ms and not m.seq_scans
            needed = m.case.required_index
            met = met and (not needed or bool(set(needed) & set(m.indexes)))
            section.targets.append(
                Target(
                    m.case.name,
                    f"< {m.case.target_ms:.0f} ms, index-backed"
                    + (f" ({' or '.join(needed)})" if needed else ""),
                    f"{median:.2f} ms"
                    + (" round-robin" if m.case.name in round_robin else "")
                    + f" ({', '.join(m.indexes) or 'no index'})",
                    met,
                    "" if met else _cause(m),
                )
            )
    queries.add(
        "REFRESH MATERIALIZED VIEW CONCURRENTLY file_processing_analytics",
        statistics.median(refresh),
        max(refresh),
        None,
        None,
        "-",
        "audio_files (whole-table aggregate, by design)",
    )
    robin = Table(
        f"RLS searches round-robin ({repeats} rounds, each role once per round; ms)",
        ["query", "median ms", "p90 ms", "min ms"],
    )
    for name, times in round_robin.items():
        robin.add(name, statistics.median(times), _p90(times), min(times))
    section.tables += [queries, robin, size_table, fill_table]
    section.notes += [
        f"Scale {ctx.db_scale:g}: {scale.users:,} users, {scale.files:,} files, "
        f"{scale.transcriptions:,} transcriptions, {scale.analyses:,} analyses; transcript "
        f"texts drawn from a pool of {scale.pool:,} generated texts (50-500 Zipf-distributed "
        "words from a 5,000-word vocabulary); see bench/dbfill.py.",
        "Bulk load as an operator would do it: secondary indexes dropped and re-created with "
        "their exact definitions, FK triggers skipped during the load, then VACUUM ANALYZE.",
        "A sequential scan is flagged only on the big tables; the analytics refresh aggregates "
        "the whole of audio_files by design, so it reads every row whatever the indexes.",
        "Queries marked RLS run as the application role of migration 002 (SET LOCAL ROLE "
        "teleai_app + app.credential, a session token of the user, as migration 005 wants) for "
        "a viewer (own files only), an analyst or a manager (all files), so row-level security "
        "applies; the others run as the schema owner, which "
        "bypasses it (as the workers and the operator CLI do today).",
        "Search goes through search_latest_transcriptions (migration 003), a SECURITY DEFINER "
        "function that applies the read policies' rule itself so that the GIN index works under "
        "RLS; its plans include the statements run inside it (auto_explain). The rows marked "
        "'as a plain query (before 003)' run the previous search statement as the app role, "
        "side by side, for comparison.",
        "The RLS search targets are judged by the round-robin table: every role's search once "
        "per round, so load that drifts during the run (a shared machine) hits them alike.",
    ]
    section.data = {
        "scale": vars(scale),
        "fill_seconds": steps,
        "counts": counts,
        "queries": [
            {
                "name": m.case.name,
                "median_ms": m.median_ms,
                "p90_ms": m.p90_ms,
                "server_ms": m.server_ms,
                "rows": m.rows,
                "seq_scans": m.seq_scans,
                "indexes": m.indexes,
            }
            for m in measured
        ],
        "refresh_ms": refresh,
        "rls_search_round_robin_ms": round_robin,
    }
    return section


def _cause(m: Measured) -> str:
    needed = m.case.required_index
    if needed and not set(needed) & set(m.indexes):
        return f"{' or '.join(needed)} is not in the plan"
    if m.case.as_user is not None and re.search(r"Filter: .*search_vector @@", m.plan):
        return (
            "row-level security: @@ (ts_match_vq) is not LEAKPROOF, so PostgreSQL may not use "
            "it as an index condition under RLS; the GIN index is bypassed and every visible "
            "latest transcription is read (an index cannot fix this)"
        )
    if m.case.as_user is not None and m.seq_scans:
        return (
            f"row-level security: the OR of the permissive policies' conditions is not "
            f"indexable, so {', '.join(m.seq_scans)} is read whole"
        )
    if m.seq_scans:
        return f"sequential scan on {', '.join(m.seq_scans)}"
    buffers = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", m.plan)
    detail = f"; {buffers.group(0)}" if buffers else ""
    return f"index-backed but {m.median_ms:.1f} ms with {m.rows} rows{detail}"
