"""Migration 011: the AssemblyAI status read in one statement (``app_read_transcript`` and
:func:`interfaces.api.fastread.transcript_parts`) gives every role exactly the transcript and
analyses the general path gives it (:func:`interfaces.api.compat.readable` and
:func:`db.analyses.analyses_for` in a transaction acting with the same credential), for its own
file and another user's, plain, redacted and redaction-pending (migration 007's matrix).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from db.analyses import analyses_for
from db.engine import unit_of_work
from db.models import AudioFile
from interfaces.api.compat import readable
from interfaces.api.fastread import transcript_parts
from tests.db.app_roles import mint_token
from tests.db.test_pii_access import KINDS, ROLES, SECRET_WORD, World, world

__all__ = ["world"]  # the module-scoped fixture of the 007 matrix, seeded once for this module

READ = text("SELECT * FROM app_read_transcript(:credential, :file_id)")


@pytest.fixture(scope="module")
def completed(world: World) -> World:
    """The seeded files as finished jobs (the compatible read shows a transcript only then)."""
    owner = create_engine(world.url)
    try:
        with unit_of_work(owner) as session:
            session.execute(text("UPDATE audio_files SET status = 'completed', stage = 'analyze'"))
    finally:
        owner.dispose()
    return world


def _fast(world: World, credential: str, file_id: uuid.UUID) -> Any:
    with world.app.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        rows = list(conn.execute(READ, {"credential": credential, "file_id": file_id}))
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["own", "other"])
@pytest.mark.parametrize("role", ROLES)
def test_the_one_statement_read_equals_the_general_path(
    completed: World, role: str, target: str, kind: str
) -> None:
    world = completed
    owner = role if target == "own" else "other"
    file_id = world.files[(owner, kind)].file
    token = mint_token(make_url(world.url).database or "", world.users[role])
    row = _fast(world, token, file_id)
    with unit_of_work(world.app) as session:
        session.execute(text("SELECT set_config('app.credential', :c, true)"), {"c": token})
        stored = session.get(AudioFile, file_id)
        if stored is None:
            assert row.id is None  # not visible: the same 404
            assert role == "viewer" and target == "other"
            return
        expected = readable(session, stored)
        expected_analyses = (
            [(a.analysis_type, a.result) for a in analyses_for(session, expected.transcription_id)]
            if expected is not None
            else []
        )
    found, analyses = transcript_parts(row)
    assert row.id == file_id and row.status == "completed"
    assert found == expected
    assert [(a.analysis_type, a.result) for a in analyses] == expected_analyses
    if found is not None and found.redacted:
        assert SECRET_WORD not in found.text
    if kind == "pending":
        assert found is None  # redact_pii asked, no redaction yet: nothing to read
    if kind == "redacted":
        assert found is not None and found.redacted
