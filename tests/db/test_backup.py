"""``teleai db backup`` / ``teleai db restore``: real pg_dump and pg_restore round trips."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from typer.testing import CliRunner

from db import backup as db_backup
from db.analyses import record_analysis
from db.auth_sessions import create_session
from db.engine import libpq_url, unit_of_work
from interfaces.cli import app
from pipeline.settings import get_settings
from tests.conftest import DatabaseFactory
from tests.db.factories import make_file, make_transcription, make_user
from tests.harness import in_process_cli

TEXTS = ("First pass of the call.", "Second, corrected pass of the call.")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """Runs ``teleai`` in-process; each test points TELEAI_DATABASE_URL where it needs."""
    with in_process_cli() as runner:
        yield runner


def teleai(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, database_url: str, *args: str
) -> tuple[int, str]:
    monkeypatch.setenv("TELEAI_DATABASE_URL", database_url)
    get_settings.cache_clear()
    result = cli.invoke(app, list(args))
    return result.exit_code, result.output


def populate(engine: Engine) -> None:
    """Users, a session, two files, two transcription versions of one, analyses; committed."""
    with unit_of_work(engine) as session:
        owner = make_user(session, "owner", role="analyst")
        make_user(session, "boss", role="admin")
        create_session(
            session, owner.id, ip_address="192.0.2.9", user_agent="cli", ttl=dt.timedelta(hours=1)
        )
        call = make_file(session, owner, "call.mp3")
        make_file(session, owner, "memo.wav")
        for text_ in TEXTS:
            version = make_transcription(session, call, text_)
            for kind in ("sentiment", "keywords"):
                record_analysis(
                    session,
                    version.id,
                    analysis_type=kind,
                    result={"kind": kind, "version": version.version},
                    model_name="test",
                    parameters={},
                    processing_time_seconds=0.1,
                )
        session.execute(text("REFRESH MATERIALIZED VIEW file_processing_analytics"))


def contents(database_url: str) -> dict[str, object]:
    """Row counts of every public table and matview, the transcripts, policies, RLS flags."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        relations = conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND relkind IN ('r', 'm') ORDER BY relname"
        ).fetchall()
        counts = {
            name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()  # noqa: S608
            for (name,) in relations
        }
        transcripts = conn.execute(
            "SELECT version, is_latest, transcription_text FROM transcriptions ORDER BY version"
        ).fetchall()
        policies = conn.execute("SELECT count(*) FROM pg_policy").fetchone()
        forced = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relforcerowsecurity AND relkind = 'r'"
        ).fetchone()
    return {"counts": counts, "transcripts": transcripts, "policies": policies, "forced": forced}


def test_round_trip_into_a_fresh_database(
    engine: Engine,
    database_url: str,
    database_factory: DatabaseFactory,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    populate(engine)
    original = contents(database_url)
    archive = tmp_path / "backups" / "teleai_pro_backup.dump"

    code, output = teleai(cli, monkeypatch, database_url, "db", "backup", str(archive))
    assert code == 0, output
    assert "backup written" in output
    assert archive.read_bytes().startswith(db_backup.ARCHIVE_MAGIC)
    assert list(archive.parent.iterdir()) == [archive]  # no partial file left behind

    fresh = database_factory.empty()
    code, output = teleai(cli, monkeypatch, fresh, "db", "restore", str(archive), "--yes")
    assert code == 0, output

    restored = contents(fresh)
    assert restored == original
    counts = restored["counts"]
    assert isinstance(counts, dict)
    assert counts["transcriptions"] == (2,)
    assert counts["analyses"] == (4,)
    assert counts["file_processing_analytics"] == (2,)  # mp3 and wav, pending
    assert restored["transcripts"] == [(1, False, TEXTS[0]), (2, True, TEXTS[1])]


def test_restore_over_the_same_database_replaces_later_changes(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    populate(engine)
    archive = tmp_path / "before.dump"
    db_backup.backup(database_url, archive)
    original = contents(database_url)
    with unit_of_work(engine) as session:
        session.execute(text("DELETE FROM analyses"))
        make_user(session, "latecomer")

    db_backup.restore(database_url, archive)
    assert contents(database_url) == original


def test_password_goes_through_the_environment_only(database_url: str, tmp_path: Path) -> None:
    secret = "s3cret-Passw0rd"
    with_password = (
        make_url(database_url).set(password=secret).render_as_string(hide_password=False)
    )
    env = db_backup.libpq_env(with_password, base={})
    assert env["PGPASSWORD"] == secret
    assert env["PGDATABASE"] == make_url(database_url).database
    commands = [
        db_backup.backup_command(tmp_path / "x.dump"),
        db_backup.restore_command(tmp_path / "x.dump", env["PGDATABASE"]),
    ]
    assert all(secret not in " ".join(command) for command in commands)
    # And it works like that against the real server (which trusts 127.0.0.1 here).
    archive = tmp_path / "with-password.dump"
    assert db_backup.backup(with_password, archive) > 0
    db_backup.restore(with_password, archive)


def test_a_failed_backup_leaves_no_file(database_url: str, tmp_path: Path) -> None:
    missing = make_url(database_url).set(database="teleai_no_such_database")
    archive = tmp_path / "never.dump"
    with pytest.raises(db_backup.BackupError, match=r"pg_dump failed: .*teleai_no_such_database"):
        db_backup.backup(missing.render_as_string(hide_password=False), archive)
    assert list(tmp_path.iterdir()) == []


def test_backup_is_owner_only_whatever_the_umask(
    database_url: str,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The dump holds password hashes and every transcript: 0600, even over an older 0644 file."""
    archive = tmp_path / "teleai.dump"
    archive.write_bytes(b"an older, world-readable backup")
    archive.chmod(0o644)
    old_umask = os.umask(0o002)  # the permissive umask the issue reproduced the leak with
    try:
        code, output = teleai(cli, monkeypatch, database_url, "db", "backup", str(archive))
    finally:
        os.umask(old_umask)
    assert code == 0, output
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert archive.read_bytes().startswith(db_backup.ARCHIVE_MAGIC)
    assert list(tmp_path.iterdir()) == [archive]


def test_restore_refuses_what_is_not_an_archive(
    database_url: str, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = tmp_path / "notes.dump"
    bogus.write_text("SELECT 1;\n")
    code, output = teleai(cli, monkeypatch, database_url, "db", "restore", str(bogus), "--yes")
    assert code == 2
    assert "not a pg_dump custom-format archive" in output
    code, output = teleai(
        cli, monkeypatch, database_url, "db", "restore", str(tmp_path / "gone.dump"), "--yes"
    )
    assert code == 2
    assert "does not exist" in output
    with pytest.raises(db_backup.BackupError, match="not a pg_dump custom-format archive"):
        db_backup.restore(database_url, bogus)


def test_restore_asks_before_replacing(
    engine: Engine,
    database_url: str,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "empty-schema.dump"
    db_backup.backup(database_url, archive)
    with unit_of_work(engine) as session:
        make_user(session, "keeper")
    monkeypatch.setenv("TELEAI_DATABASE_URL", database_url)
    get_settings.cache_clear()
    result = cli.invoke(app, ["db", "restore", str(archive)], input="n\n")
    assert result.exit_code == 2
    assert "cancelled" in result.output
    with create_engine(database_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
