"""Migration 003: search as the app role never returns a row row-level security would hide.

``search_latest_transcriptions`` is SECURITY DEFINER (it reads as the schema owner, so the GIN
index works under RLS) and applies the SELECT policies' rule itself. These tests connect as a
real LOGIN role in ``teleai_app`` to a database seeded once: one user of each role plus another
viewer, a soft-deleted manager and a deactivated analyst, each owning one transcribed file with
a word of their own. Two oracles: the policies themselves (a plain SELECT of the row as the same
acting user), and the search as a plain query, which RLS filters (slowly) by the same rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db import access
from db.auth_sessions import token_hash
from db.engine import libpq_url, unit_of_work
from db.migrate import downgrade, upgrade
from db.models import User
from db.transcripts import search_transcripts
from tests.conftest import DatabaseFactory, PgAdmin
from tests.databases import rolled_back_session
from tests.db.app_roles import act_as, acting_as, login_role, mint_token
from tests.db.factories import make_file, make_transcription, make_user
from tests.db.test_rls import full_snapshot
from tests.db.test_search import HOSTILE

STAFF = ("admin", "manager", "analyst")
ACTING = (*STAFF, "viewer")
# username -> (role, the word only their transcript holds)
PEOPLE = {
    "admin": ("admin", "aardvark"),
    "manager": ("manager", "badger"),
    "analyst": ("analyst", "camel"),
    "viewer": ("viewer", "dolphin"),
    "other": ("viewer", "falcon"),
    "gone": ("manager", "gecko"),  # soft-deleted
    "idle": ("analyst", "heron"),  # deactivated
}
TARGETS = {"own": None, "other": "other", "deleted owner": "gone", "inactive owner": "idle"}
QUERIES = [
    "meeting",
    "budget meeting",
    '"budget meeting"',
    "giraffe or dolphin",
    "meeting -dolphin",
    "elephant",  # only in an old version
    "the and",  # stop words only
    "gecko heron falcon",
]
FUNCTION_SQL = text(
    "SELECT transcription_id, audio_file_id, file_name, rank, snippet "
    "FROM search_latest_transcriptions(:query, :limit, CAST(:owner AS uuid))"
)
# The search before migration 003, as a plain query: under RLS it returns exactly the rows the
# policies let through (the oracle), only slowly at scale.
PLAIN_SQL = text(
    """
    WITH q AS (SELECT websearch_to_tsquery('english', :query) AS query),
    hits AS (
        SELECT t.id, t.audio_file_id, af.file_name, t.transcription_text, q.query,
               ts_rank_cd(t.search_vector, q.query) AS rank, t.created_at
        FROM transcriptions t
        JOIN audio_files af ON af.id = t.audio_file_id
        CROSS JOIN q
        WHERE t.is_latest
          AND t.search_vector @@ q.query
          AND (CAST(:owner AS uuid) IS NULL OR af.user_id = CAST(:owner AS uuid))
        ORDER BY rank DESC, t.created_at DESC, t.id
        LIMIT :limit
    )
    SELECT id, audio_file_id, file_name, rank,
           ts_headline('english', transcription_text, query,
                       'StartSel="**", StopSel="**", MaxWords=35, MinWords=15, MaxFragments=2')
    FROM hits
    ORDER BY rank DESC, created_at DESC, id
    """
)


@dataclass(frozen=True)
class World:
    admin_url: str
    owner: Engine  # the superuser that migrated (bypasses RLS)
    app: Engine
    worker: Engine
    users: dict[str, uuid.UUID]
    files: dict[str, uuid.UUID]  # the file with the user's own word


def _seed(admin_url: str) -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID]]:
    engine = create_engine(admin_url)
    users: dict[str, uuid.UUID] = {}
    files: dict[str, uuid.UUID] = {}
    try:
        with unit_of_work(engine) as session:
            for index, (name, (role, word)) in enumerate(PEOPLE.items()):
                user = make_user(session, name, role=role)
                users[name] = user.id
                audio = make_file(session, user, f"{name}.mp3")
                files[name] = audio.id
                # Different lengths give different ranks, so the order is tested too.
                make_transcription(
                    session,
                    audio,
                    f"The {word} budget meeting. " + "Then we talked about the weather. " * index,
                )
                make_file(session, user, f"{name}-pending.wav")  # no transcript yet
            viewer = session.get_one(User, users["viewer"])
            zoo = make_file(session, viewer, "zoo.ogg")
            make_transcription(session, zoo, "An elephant walked into the meeting.")
            make_transcription(session, zoo, "A giraffe walked into the meeting.")
            session.execute(
                text("UPDATE users SET deleted_at = now() WHERE id = :id"), {"id": users["gone"]}
            )
            session.execute(
                text("UPDATE users SET is_active = false WHERE id = :id"), {"id": users["idle"]}
            )
    finally:
        engine.dispose()
    return users, files


@pytest.fixture(scope="module")
def world(pg_admin: PgAdmin, template_database: str) -> Iterator[World]:
    factory = DatabaseFactory(pg_admin, template_database)
    url = factory.migrated()
    users, files = _seed(url)
    owner = create_engine(url)
    with (
        login_role(pg_admin, "srch_app", access.APP_ROLE) as app_role,
        login_role(pg_admin, "srch_worker", access.WORKER_ROLE) as worker_role,
    ):
        app = app_role.engine(url)
        worker = worker_role.engine(url)
        try:
            yield World(url, owner, app, worker, users, files)
        finally:
            app.dispose()
            worker.dispose()
            owner.dispose()
    factory.drop_all()


@pytest.fixture
def app(world: World) -> Iterator[Session]:
    """The app role inside a transaction that is rolled back afterwards."""
    with rolled_back_session(world.app) as session:
        yield session


@pytest.fixture
def owner(world: World) -> Iterator[Session]:
    with rolled_back_session(world.owner) as session:
        yield session


def run(session: Session, statement: Any, query: str, **kw: Any) -> list[tuple[Any, ...]]:
    params = {"query": query, "limit": kw.get("limit", 100), "owner": kw.get("owner")}
    return [tuple(row) for row in session.execute(statement, params)]


def readable(session: Session, audio_file_id: uuid.UUID) -> bool:
    """The policies' answer: may the acting user read this file's latest transcript?"""
    found = session.execute(
        text(
            "SELECT count(*) FROM transcriptions t JOIN audio_files f ON f.id = t.audio_file_id "
            "WHERE t.is_latest AND f.id = :id"
        ),
        {"id": audio_file_id},
    ).scalar_one()
    return bool(found == 1)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("acting", ACTING)
def test_a_file_is_found_exactly_when_rls_lets_its_row_be_read(
    world: World, app: Session, acting: str, target: str
) -> None:
    act_as(app, world.users[acting])
    whose = TARGETS[target] or acting
    allowed = target == "own" or acting in STAFF
    assert readable(app, world.files[whose]) is allowed  # the policy matrix of 002
    hits = search_transcripts(app, PEOPLE[whose][1])
    assert [hit.audio_file_id for hit in hits] == ([world.files[whose]] if allowed else [])


@pytest.mark.parametrize("who", ["no user", "unknown user", "inactive user", "deleted user"])
def test_without_an_active_acting_user_nothing_is_found(
    world: World, app: Session, who: str
) -> None:
    acting = {"unknown user": uuid.uuid4(), "inactive user": world.users["idle"]}
    acting["deleted user"] = world.users["gone"]
    if who in acting:
        act_as(app, acting[who])
    for query in [*QUERIES, *(word for _, word in PEOPLE.values())]:
        assert run(app, FUNCTION_SQL, query) == [], query
        assert search_transcripts(app, query) == [], query
    assert app.execute(text("SELECT count(*) FROM transcriptions")).scalar_one() == 0


def test_the_user_is_forgotten_with_the_transaction(world: World) -> None:
    with acting_as(world.app, world.users["manager"]) as session:
        assert len(search_transcripts(session, "meeting")) == len(PEOPLE) + 1
    with unit_of_work(world.app) as session:
        assert search_transcripts(session, "meeting") == []


def test_a_revoked_credential_finds_nothing(world: World) -> None:
    token = mint_token(make_url(world.admin_url).database or "", world.users["manager"])
    with unit_of_work(world.app) as session:
        access.act_with(session, token)
        assert len(search_transcripts(session, "meeting")) == len(PEOPLE) + 1
    with unit_of_work(world.owner) as session:
        session.execute(
            text("UPDATE sessions SET is_revoked = true, revoked_at = now() WHERE token_hash = :h"),
            {"h": token_hash(token)},
        )
    with unit_of_work(world.app) as session:
        access.act_with(session, token)
        assert search_transcripts(session, "meeting") == []


def test_deactivation_takes_effect_at_the_next_statement(world: World, app: Session) -> None:
    act_as(app, world.users["admin"])
    assert len(search_transcripts(app, "meeting")) == len(PEOPLE) + 1
    app.execute(
        text("UPDATE users SET is_active = false WHERE id = :id"), {"id": world.users["admin"]}
    )
    assert search_transcripts(app, "meeting") == []


@pytest.mark.parametrize("acting", [*ACTING, "idle", None])
def test_results_equal_the_plain_query_under_rls(
    world: World, app: Session, acting: str | None
) -> None:
    if acting is not None:
        act_as(app, world.users[acting])
    compared = 0
    for query in QUERIES:
        for owner in (None, world.users["viewer"], world.users["other"]):
            expected = run(app, PLAIN_SQL, query, owner=owner)
            assert run(app, FUNCTION_SQL, query, owner=owner) == expected, (query, owner)
            compared += len(expected)
        top = run(app, PLAIN_SQL, query, limit=2)
        assert run(app, FUNCTION_SQL, query, limit=2) == top
    if acting in STAFF:
        assert compared > 20  # the comparison saw rows, with ranks and snippets
    if acting is None or acting == "idle":
        assert compared == 0


def test_the_owner_sees_what_a_plain_query_sees(owner: Session) -> None:
    """A caller that bypasses RLS (owner, operator CLI) sees every file, as it does anyway."""
    for query in QUERIES:
        assert run(owner, FUNCTION_SQL, query) == run(owner, PLAIN_SQL, query), query
    hits = search_transcripts(owner, "meeting")
    assert len(hits) == len(PEOPLE) + 1
    assert all("**meeting**" in hit.snippet for hit in hits)


def test_results_never_hold_an_unreadable_row(world: World, app: Session) -> None:
    for acting in ACTING:
        act_as(app, world.users[acting])
        for query in QUERIES:
            for hit in search_transcripts(app, query):
                assert readable(app, hit.audio_file_id), (acting, query, hit)


def test_the_owner_filter_narrows_and_never_widens(world: World, app: Session) -> None:
    act_as(app, world.users["viewer"])
    assert search_transcripts(app, "falcon", user_id=world.users["other"]) == []
    assert search_transcripts(app, "meeting", user_id=world.users["other"]) == []
    mine = search_transcripts(app, "meeting", user_id=world.users["viewer"])
    assert {hit.file_name for hit in mine} == {"viewer.mp3", "zoo.ogg"}
    act_as(app, world.users["analyst"])
    theirs = search_transcripts(app, "meeting", user_id=world.users["other"])
    assert [hit.file_name for hit in theirs] == ["other.mp3"]


def test_set_role_to_the_group_role_changes_nothing(world: World, app: Session) -> None:
    app.execute(text("SET LOCAL ROLE teleai_app"))
    assert search_transcripts(app, "meeting") == []
    act_as(app, world.users["viewer"])
    assert {hit.file_name for hit in search_transcripts(app, "meeting")} == {
        "viewer.mp3",
        "zoo.ogg",
    }


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_stay_inside_the_callers_rows(
    world: World, app: Session, query: str
) -> None:
    act_as(app, world.users["viewer"])
    for hit in search_transcripts(app, query):
        assert hit.file_name in {"viewer.mp3", "zoo.ogg"}
    # Straight to the function, past the Python-side clean-up (PostgreSQL text holds no NUL).
    raw = query.replace("\x00", "")
    for text_sent in (raw, f"falcon {raw}", f"{raw} or falcon", f'"{raw}'):
        found = {row[2] for row in run(app, FUNCTION_SQL, text_sent)}
        assert found <= {"viewer.mp3", "zoo.ogg"}, text_sent
    act_as(app, world.users["admin"])
    assert app.execute(text("SELECT count(*) FROM users")).scalar_one() == len(PEOPLE)
    assert app.execute(text("SELECT count(*) FROM transcriptions")).scalar_one() == len(PEOPLE) + 2


def test_the_function_guards_its_own_input(world: World, app: Session) -> None:
    act_as(app, world.users["manager"])
    assert run(app, FUNCTION_SQL, None) == []  # type: ignore[arg-type]  # SQL NULL on purpose
    # Only the first 16 words count, however the function is called.
    assert run(app, FUNCTION_SQL, "the " * 16 + "badger") == []
    assert len(run(app, FUNCTION_SQL, "the " * 15 + "badger")) == 1
    assert len(run(app, FUNCTION_SQL, "meeting " * 5000)) == len(PEOPLE) + 1
    for limit in (0, 101, None):
        with pytest.raises(DBAPIError) as caught, app.begin_nested():
            run(app, FUNCTION_SQL, "meeting", limit=limit)
        assert isinstance(caught.value.orig, psycopg.errors.InvalidParameterValue)


def test_only_the_app_role_may_execute_it(world: World) -> None:
    with world.worker.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(FUNCTION_SQL, {"query": "meeting", "limit": 10, "owner": None})
    assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
    with psycopg.connect(libpq_url(world.admin_url)) as conn:
        row = conn.execute(
            """
            SELECT p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner),
                   pg_get_userbyid(c.relowner),
                   array(SELECT x.grantee::regrole::text FROM aclexplode(p.proacl) x
                         WHERE x.privilege_type = 'EXECUTE' ORDER BY 1)
            FROM pg_proc p, pg_class c
            WHERE p.proname = 'search_latest_transcriptions' AND c.relname = 'transcriptions'
            """
        ).fetchone()
    assert row is not None
    definer, config, function_owner, table_owner, executors = row
    assert definer
    assert "search_path=pg_catalog, public, pg_temp" in config
    assert function_owner == table_owner
    assert sorted(executors) == sorted([function_owner, "teleai_app"])  # not PUBLIC


def test_003_up_down_up_restores_002_exactly(empty_database_url: str) -> None:
    assert upgrade(empty_database_url, target="002") == ["001", "002"]
    after_002 = full_snapshot(empty_database_url)

    assert upgrade(empty_database_url, target="003") == ["003"]
    assert full_snapshot(empty_database_url) != after_002

    assert downgrade(empty_database_url, target="002") == ["003"]
    assert full_snapshot(empty_database_url) == after_002

    assert upgrade(empty_database_url, target="003") == ["003"]
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        found = conn.execute("SELECT count(*) FROM search_latest_transcriptions('x')").fetchone()
    assert found == (0,)
