"""Migration 007: who reads the unredacted transcript, the ``pii`` analysis and the redacted copy.

The policy matrix of docs/call-intelligence.md, on real LOGIN roles (as tests/db/test_rls.py):
every role reads, for its own file and another user's, a *plain* file and a *redacted* one (a
``redact_pii`` job with its redaction row), and a *pending* one (``redact_pii`` asked, the
redaction not written yet). The unredacted rows of a redacted file are for admins, managers and
an analyst who owns it; everyone who sees the file reads the redacted copy; a plain file is
exactly as migration 002 decides. Search (003, replaced in 007) follows the same rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from db import access
from db.analyses import record_analysis
from db.engine import unit_of_work
from db.redactions import record_redaction
from tests.conftest import DatabaseFactory, PgAdmin
from tests.db.app_roles import acting_as, login_role
from tests.db.factories import make_file, make_transcription, make_user

ROLES = ("admin", "manager", "analyst", "viewer")
KINDS = ("plain", "redacted", "pending")
SECRET_WORD = "zanzibarcard"  # searchable, only in the unredacted text


@dataclass(frozen=True)
class Rows:
    file: uuid.UUID
    transcription: uuid.UUID


@dataclass(frozen=True)
class World:
    url: str
    app: Engine
    worker: Engine
    users: dict[str, uuid.UUID]
    files: dict[tuple[str, str], Rows]  # (owner name, kind)


def _seed(url: str) -> tuple[dict[str, uuid.UUID], dict[tuple[str, str], Rows]]:
    engine = create_engine(url)
    users: dict[str, uuid.UUID] = {}
    files: dict[tuple[str, str], Rows] = {}
    try:
        with unit_of_work(engine) as session:
            for name, role in [*((r, r) for r in ROLES), ("other", "analyst")]:
                user = make_user(session, f"pii_{name}", role=role)
                users[name] = user.id
                for kind in KINDS:
                    options = {"redact_pii": True} if kind != "plain" else {}
                    audio = make_file(
                        session, user, f"{name}-{kind}.wav", metadata={"options": options}
                    )
                    said = f"My card is {SECRET_WORD} {name} {kind}."
                    version = make_transcription(session, audio, said)
                    for analysis_type in ("pii", "sentiment"):
                        record_analysis(
                            session,
                            version.id,
                            analysis_type=analysis_type,
                            result={"found": said},
                            model_name="test",
                            parameters={},
                            processing_time_seconds=0.1,
                        )
                    if kind == "redacted":
                        record_redaction(
                            session,
                            version.id,
                            redacted_text=f"My card is [CARD] {name} {kind}.",
                            segments=[{"start": 0.0, "end": 1.0, "text": "My card is [CARD]."}],
                            spans=[{"type": "card", "start": 0.2, "end": 0.9}],
                            policy={"types": ["card"], "substitution": "type"},
                            audio_path=None,
                        )
                    files[(name, kind)] = Rows(audio.id, version.id)
    finally:
        engine.dispose()
    return users, files


@pytest.fixture(scope="module")
def world(pg_admin: PgAdmin, template_database: str) -> Iterator[World]:
    factory = DatabaseFactory(pg_admin, template_database)
    url = factory.migrated()
    users, files = _seed(url)
    with (
        login_role(pg_admin, "app", access.APP_ROLE) as app_role,
        login_role(pg_admin, "worker", access.WORKER_ROLE) as worker_role,
    ):
        app, worker = app_role.engine(url), worker_role.engine(url)
        try:
            yield World(url, app, worker, users, files)
        finally:
            app.dispose()
            worker.dispose()
    factory.drop_all()


def sees_file(role: str, own: bool) -> bool:
    """Migration 002: staff see every file, a viewer their own."""
    return own or role in ("admin", "manager", "analyst")


def sees_unredacted(role: str, own: bool, kind: str) -> bool:
    """Migration 007 on top of 002 (the table in docs/call-intelligence.md)."""
    if not sees_file(role, own):
        return False
    if kind == "plain":
        return True
    return role in ("admin", "manager") or (role == "analyst" and own)


def _count(session: object, sql: str, **params: object) -> int:
    return int(session.execute(text(sql), params).scalar_one())  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["own", "other"])
@pytest.mark.parametrize("role", ROLES)
def test_unredacted_data_matrix(world: World, role: str, target: str, kind: str) -> None:
    own = target == "own"
    rows = world.files[(role if own else "other", kind)]
    with acting_as(world.app, world.users[role]) as session:
        transcript = _count(
            session, "SELECT count(*) FROM transcriptions WHERE id = :t", t=rows.transcription
        )
        pii = _count(
            session,
            "SELECT count(*) FROM analyses WHERE transcription_id = :t AND analysis_type = 'pii'",
            t=rows.transcription,
        )
        sentiment = _count(
            session,
            "SELECT count(*) FROM analyses WHERE transcription_id = :t "
            "AND analysis_type = 'sentiment'",
            t=rows.transcription,
        )
        redaction = _count(
            session,
            "SELECT count(*) FROM transcript_redactions WHERE transcription_id = :t",
            t=rows.transcription,
        )
        hits = _count(
            session,
            "SELECT count(*) FROM search_latest_transcriptions(:q, 100) WHERE audio_file_id = :f",
            q=SECRET_WORD,
            f=rows.file,
        )
    unredacted = sees_unredacted(role, own, kind)
    assert bool(transcript) == unredacted
    assert bool(pii) == unredacted
    assert bool(hits) == unredacted
    # Analyses of a redacted job are computed on the redacted text: readable with the file.
    assert bool(sentiment) == sees_file(role, own)
    assert bool(redaction) == (kind == "redacted" and sees_file(role, own))


def test_app_cannot_write_redactions_but_the_worker_can(world: World) -> None:
    rows = world.files[("other", "pending")]
    with acting_as(world.app, world.users["manager"]) as session, pytest.raises(DBAPIError):
        session.execute(
            text(
                "INSERT INTO transcript_redactions (transcription_id, audio_file_id, version, "
                "redacted_text) VALUES (:t, :f, 1, 'x')"
            ),
            {"t": rows.transcription, "f": rows.file},
        )
    with world.worker.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(
                text(
                    "INSERT INTO transcript_redactions (transcription_id, audio_file_id, "
                    "version, redacted_text) VALUES (:t, :f, 1, 'x')"
                ),
                {"t": rows.transcription, "f": rows.file},
            )
            # The worker reads every transcription, redacted or not (it redacts them).
            assert conn.execute(text("SELECT count(*) FROM transcriptions")).scalar_one() == 15
        finally:
            transaction.rollback()


def test_no_acting_user_reads_no_redaction(world: World) -> None:
    with world.app.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM transcript_redactions")).scalar_one() == 0
        assert conn.execute(text("SELECT pii_unredacted_visible(id) FROM audio_files")).all() == []


def test_down_then_up_again(world: World, empty_database_url: str) -> None:
    from db.migrate import downgrade, upgrade

    upgrade(empty_database_url)
    downgrade(empty_database_url, "006")
    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            gone = conn.execute(text("SELECT to_regclass('transcript_redactions')")).scalar()
            assert gone is None
            policies = conn.execute(
                text("SELECT count(*) FROM pg_policies WHERE policyname LIKE '%pii%'")
            ).scalar_one()
            assert policies == 0
    finally:
        engine.dispose()
    upgrade(empty_database_url)
