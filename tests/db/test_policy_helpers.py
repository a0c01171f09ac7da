"""Migration 012: the policies' per-row helpers as plpgsql, the soft-delete policies with the
row's test first.

What the rules decide is tested where the rules are (tests/db/test_pii_access.py's matrix,
tests/db/test_rls_enforcement.py's soft-deleted files, tests/db/test_fast_reads*.py, all at the
newest migration); here: 012 changes only the helpers' language and the order of the two tests
in the three policies, and its down file gives back 011's definitions exactly (function bodies
and policy expressions included, which the catalog snapshot alone does not compare).
"""

from __future__ import annotations

from typing import Any

import psycopg

from db.engine import libpq_url
from db.migrate import downgrade, upgrade
from tests.db.test_rls import full_snapshot

HELPERS = (
    "file_is_shown",
    "transcription_is_shown",
    "transcription_owner_id",
    "pii_unredacted_visible",
    "pii_unredacted_visible_for_transcription",
)
DELETED_HIDDEN = (
    "transcriptions_deleted_hidden",
    "transcript_redactions_deleted_hidden",
    "analyses_deleted_hidden",
)


def _definitions(database_url: str) -> dict[str, set[tuple[Any, ...]]]:
    """Every public function's full definition and every policy's expressions."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        functions = conn.execute(
            "SELECT p.proname, pg_get_functiondef(p.oid), p.prorows FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.prokind = 'f'"
        ).fetchall()
        policies = conn.execute(
            "SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check "
            "FROM pg_policies"
        ).fetchall()
    return {"functions": {tuple(r) for r in functions}, "policies": {tuple(r) for r in policies}}


def _state(database_url: str) -> dict[str, set[tuple[Any, ...]]]:
    return {**full_snapshot(database_url), **_definitions(database_url)}


def test_012_up_down_up_restores_011_exactly(empty_database_url: str) -> None:
    upgrade(empty_database_url, target="011")
    after_011 = _state(empty_database_url)
    assert upgrade(empty_database_url, target="012") == ["012"]
    assert _state(empty_database_url) != after_011
    assert downgrade(empty_database_url, target="011") == ["012"]
    assert _state(empty_database_url) == after_011
    assert upgrade(empty_database_url, target="012") == ["012"]


def test_the_helpers_keep_their_plans_and_their_privileges(database_url: str) -> None:
    """plpgsql (plans kept for the session; a SQL function with a SET clause is planned again
    in every statement), still SECURITY DEFINER with a fixed search_path, callable by the API
    role only."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute(
            "SELECT p.proname, l.lanname, p.prosecdef, p.provolatile, p.proconfig, "
            "has_function_privilege('teleai_app', p.oid, 'EXECUTE'), "
            "has_function_privilege('teleai_worker', p.oid, 'EXECUTE') "
            "FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
            "WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY(%s)",
            (list(HELPERS),),
        ).fetchall()
    assert {r[0] for r in rows} == set(HELPERS)
    for name, language, definer, volatility, config, app, worker in rows:
        assert (language, definer, volatility) == ("plpgsql", True, "s"), name
        assert config == ["search_path=pg_catalog, public, pg_temp"], name
        assert app and not worker, name


def test_the_deleted_hidden_policies_test_the_row_first(database_url: str) -> None:
    """The credential's init plan runs only for a row whose file is deleted."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows: dict[str, str] = dict(
            conn.execute(
                "SELECT policyname, qual FROM pg_policies WHERE policyname = ANY(%s)",
                (list(DELETED_HIDDEN),),
            ).fetchall()
        )
    assert set(rows) == set(DELETED_HIDDEN)
    for name, qual in rows.items():
        assert qual.startswith("(" + ("transcription_is_shown" if "analyses" in name else
                                       "file_is_shown")), qual  # fmt: skip
        assert qual.index("_is_shown(") < qual.index("current_app_role()"), qual
