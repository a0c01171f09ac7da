"""``teleai users create`` keeps the password out of ``ps``; ``teleai db upgrade --login-role``
makes the service logins a deployment needs. Run in-process against a real database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine
from typer.testing import CliRunner

from db.engine import libpq_url, unit_of_work
from db.users import authenticate
from interfaces.cli import app
from tests.conftest import PgAdmin
from tests.db.app_roles import ROLE_PREFIX
from tests.db.test_rls import scram_matches
from tests.harness import in_process_cli

PASSWORD = "correct horse battery staple"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[CliRunner]:
    monkeypatch.setenv("TELEAI_DATABASE_URL", database_url)
    monkeypatch.delenv("TELEAI_NEW_PASSWORD", raising=False)
    with in_process_cli() as runner:
        yield runner


def can_log_in(database_url: str, login: str, password: str) -> bool:
    engine = create_engine(database_url)
    try:
        with unit_of_work(engine) as session:
            return authenticate(session, login, password) is not None
    finally:
        engine.dispose()


def test_the_password_is_asked_for_hidden_and_twice(cli: CliRunner, database_url: str) -> None:
    result = cli.invoke(
        app, ["users", "create", "dana", "dana@example.org"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert "Password for dana" in result.output and "Repeat for confirmation" in result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert can_log_in(database_url, "dana", PASSWORD)


def test_a_mistyped_confirmation_is_asked_again(cli: CliRunner, database_url: str) -> None:
    typed = f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n"
    result = cli.invoke(app, ["users", "create", "erin", "erin@example.org"], input=typed)
    assert result.exit_code == 0, result.output
    assert can_log_in(database_url, "erin", PASSWORD)


def test_no_terminal_and_no_password_is_a_clear_error(cli: CliRunner) -> None:
    result = cli.invoke(app, ["users", "create", "finn", "finn@example.org"], input="")
    assert result.exit_code == 2, result.output
    assert "TELEAI_NEW_PASSWORD" in result.output and "--generate-password" in result.output


def test_the_environment_variable_and_a_generated_password(
    cli: CliRunner, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEAI_NEW_PASSWORD", PASSWORD)
    result = cli.invoke(app, ["users", "create", "gail", "gail@example.org"])
    assert result.exit_code == 0, result.output
    assert "Password for" not in result.output and PASSWORD not in result.output
    assert can_log_in(database_url, "gail", PASSWORD)

    monkeypatch.delenv("TELEAI_NEW_PASSWORD")
    result = cli.invoke(app, ["users", "create", "hal", "hal@example.org", "--generate-password"])
    assert result.exit_code == 0, result.output
    generated = result.output.split("password (shown once):", 1)[1].split()[0]
    assert can_log_in(database_url, "hal", generated)


def test_password_on_the_command_line_still_works_with_a_warning(
    cli: CliRunner, database_url: str
) -> None:
    result = cli.invoke(app, ["users", "create", "ivy", "ivy@example.org", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    assert "--password is deprecated" in result.output and "ps" in result.output
    assert can_log_in(database_url, "ivy", PASSWORD)


def test_help_says_how_the_password_is_given(cli: CliRunner) -> None:
    result = cli.invoke(app, ["users", "create", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "hidden input" in text and "TELEAI_NEW_PASSWORD" in text
    assert "DEPRECATED" in text and "--generate-password" in text


# --- service logins ----------------------------------------------------------------------------


@pytest.fixture
def role_name(pg_admin: PgAdmin) -> Iterator[str]:
    name = f"{ROLE_PREFIX}login_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        pg_admin.conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def role_state(database_url: str, name: str) -> tuple[str, list[str], bool]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(
            "SELECT a.rolpassword, array(SELECT g.rolname FROM pg_auth_members m "
            "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid), "
            "a.rolsuper OR a.rolbypassrls OR NOT a.rolcanlogin FROM pg_authid a "
            "WHERE a.rolname = %s",
            (name,),
        ).fetchone()
    assert row is not None, f"no role {name}"
    return row[0], list(row[1]), bool(row[2])


def test_login_roles_are_created_then_updated(
    cli: CliRunner, database_url: str, role_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = f"{role_name}:teleai_worker:WORKER_DB_PASSWORD"
    monkeypatch.setenv("WORKER_DB_PASSWORD", "first-secret")
    result = cli.invoke(app, ["db", "upgrade", "--login-role", spec])
    assert result.exit_code == 0, result.output
    assert "created" in result.output and "first-secret" not in result.output
    verifier, groups, privileged = role_state(database_url, role_name)
    assert groups == ["teleai_worker"] and not privileged
    assert scram_matches(verifier, "first-secret")

    monkeypatch.setenv("WORKER_DB_PASSWORD", "rotated-secret")
    result = cli.invoke(app, ["db", "upgrade", "--login-role", spec])
    assert result.exit_code == 0, result.output
    assert "updated" in result.output
    assert scram_matches(role_state(database_url, role_name)[0], "rotated-secret")


def test_login_role_password_from_a_secret_file(
    cli: CliRunner,
    database_url: str,
    role_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "intake_db_password"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("INTAKE_DB_PASSWORD", raising=False)
    monkeypatch.setenv("INTAKE_DB_PASSWORD_FILE", str(secret))
    spec = f"{role_name}:teleai_intake:INTAKE_DB_PASSWORD"
    result = cli.invoke(app, ["db", "upgrade", "--login-role", spec])
    assert result.exit_code == 0, result.output
    verifier, groups, _ = role_state(database_url, role_name)
    assert groups == ["teleai_intake"] and scram_matches(verifier, "from-a-file")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("only_a_name", "expected NAME:GROUP:VARIABLE"),
        ("x:teleai_owner:V", "GROUP must be one of"),
        ("x:teleai_app:TELEAI_TEST_UNSET_VARIABLE", "set TELEAI_TEST_UNSET_VARIABLE"),
    ],
)
def test_bad_login_role_specs_are_usage_errors(cli: CliRunner, spec: str, message: str) -> None:
    result = cli.invoke(app, ["db", "upgrade", "--login-role", spec])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
