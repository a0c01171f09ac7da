"""db.models and the migrated schema must describe the same database.

Two independent checks. Alembic's ``compare_metadata`` diffs the models against the migrated
database (tables, columns, types, nullability, server defaults, keys, indexes). It ignores CHECK
constraints and does not compare index WHERE clauses, so a second check builds a database from
the models with ``create_all`` and compares the two catalogs as PostgreSQL prints them: every
column's type, NOT NULL, default and generation expression; every constraint's name and full
definition (FK ON DELETE, CHECK text); every index's full definition (unique, method, opclass,
WHERE). Both checks are shown to catch a drift before they are trusted to find none.
"""

from __future__ import annotations

from typing import Any

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, Text, create_engine

from db.engine import libpq_url
from db.models import Base
from tests.conftest import DatabaseFactory
from tests.db.catalog import describe, diff


def _not_bookkeeping(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (type_ == "table" and name == "schema_migrations")


def alembic_diffs(database_url: str, metadata: MetaData) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": _not_bookkeeping,
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def database_from_models(factory: DatabaseFactory, metadata: MetaData) -> str:
    url = factory.empty()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute('CREATE EXTENSION "uuid-ossp"')  # uuid_generate_v4() column defaults
    engine = create_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    return url


def copy_of_models() -> MetaData:
    copy = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def test_alembic_finds_no_difference(database_url: str) -> None:
    assert alembic_diffs(database_url, Base.metadata) == []


def test_catalogs_of_models_and_migrations_are_identical(
    database_url: str, database_factory: DatabaseFactory
) -> None:
    from_models = database_from_models(database_factory, Base.metadata)
    migrated = describe(database_url)
    assert migrated["columns"], "nothing described: the catalog queries are broken"
    assert diff(migrated, describe(from_models)) == []


def test_a_column_only_in_the_models_is_caught(
    database_url: str, database_factory: DatabaseFactory
) -> None:
    models = copy_of_models()
    models.tables["users"].append_column(Column("nickname", Text))

    diffs = alembic_diffs(database_url, models)
    assert [(d[0], d[2], d[3].name) for d in diffs] == [("add_column", "users", "nickname")]

    from_models = describe(database_from_models(database_factory, models))
    problems = diff(describe(database_url), from_models)
    assert problems == [
        "columns: ('users', 'nickname') only on the right: ('text', False, None, None)"
    ]


def test_drift_in_the_database_is_caught_including_checks_and_partial_indexes(
    database_url: str, database_factory: DatabaseFactory
) -> None:
    from_models = describe(database_from_models(database_factory, Base.metadata))
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("ALTER TABLE audio_files ADD COLUMN notes text")
        conn.execute(
            "ALTER TABLE audio_files RENAME CONSTRAINT ck_audio_files_status TO ck_status_renamed"
        )
        conn.execute("DROP INDEX idx_audio_files_queue")
        conn.execute(
            "CREATE INDEX idx_audio_files_queue ON audio_files (status, upload_started_at)"
        )

    diffs = alembic_diffs(database_url, Base.metadata)
    assert ("remove_column", "audio_files", "notes") in [
        (d[0], d[2], d[3].name) for d in diffs if isinstance(d, tuple)
    ]

    problems = diff(describe(database_url), from_models)
    keys = sorted(problem.split(" only on ")[0].split(" differs")[0] for problem in problems)
    assert keys == [
        "columns: ('audio_files', 'notes')",
        "constraints: ('audio_files', 'ck_audio_files_status')",
        "constraints: ('audio_files', 'ck_status_renamed')",
        "indexes: ('audio_files', 'idx_audio_files_queue')",
    ]
