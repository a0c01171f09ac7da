"""Read what a database holds from the system catalogs, in forms that compare by value.

``snapshot`` lists every named object (to prove a rollback leaves nothing behind); ``describe``
renders the public tables the way PostgreSQL itself prints them (``format_type``,
``pg_get_constraintdef``, ``pg_get_indexdef``), so two schemas built by different means compare
without any text normalisation of our own.
"""

from __future__ import annotations

from typing import Any

import psycopg

from db.engine import libpq_url

SNAPSHOT_QUERIES: dict[str, str] = {
    "namespaces": "SELECT nspname FROM pg_namespace",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace""",
    "types": """
        SELECT n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace""",
    "operators": """
        SELECT n.nspname, o.oprname, o.oprleft::regtype::text, o.oprright::regtype::text
        FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace""",
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger",
    "constraints": """
        SELECT n.nspname, c.conname FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace""",
    "policies": "SELECT polrelid::regclass::text, polname FROM pg_policy",
}


def snapshot(database_url: str) -> dict[str, set[tuple[Any, ...]]]:
    """Every named catalog object of the database, per catalog."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        return {
            name: {tuple(row) for row in conn.execute(query).fetchall()}
            for name, query in SNAPSHOT_QUERIES.items()
        }


def public_names(database_url: str) -> dict[str, set[str]]:
    """Names of the user-made objects by kind (the runner's schema_migrations table left out)."""
    queries = {
        "tables": "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND relkind = 'r' AND relname <> 'schema_migrations'",
        "views": "SELECT viewname FROM pg_views WHERE schemaname = 'public'",
        "matviews": "SELECT matviewname FROM pg_matviews WHERE schemaname = 'public'",
        "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename <> 'schema_migrations'",
        "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
        "extensions": "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'",
        "functions": "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_depend d "
        "WHERE d.objid = p.oid AND d.deptype = 'e')",
        "constraints": "SELECT conname FROM pg_constraint c JOIN pg_namespace n "
        "ON n.oid = c.connamespace WHERE n.nspname = 'public' "
        "AND conrelid IS DISTINCT FROM to_regclass('public.schema_migrations')",
        "rls_tables": "SELECT relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relrowsecurity",
    }
    with psycopg.connect(libpq_url(database_url)) as conn:
        return {
            kind: {row[0] for row in conn.execute(query).fetchall()}
            for kind, query in queries.items()
        }


DESCRIBE_QUERIES: dict[str, str] = {
    # (table, column) -> type, NOT NULL, default expression, generated expression
    "columns": """
        SELECT c.relname, a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull,
               CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
               CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname <> 'schema_migrations'""",
    # (table, constraint) -> kind (p, f, u, c) and its full definition (FK actions included)
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname <> 'schema_migrations'""",
    # (table, index) -> full definition: unique, method, columns, opclasses, WHERE clause
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
          AND tablename IN (SELECT relname FROM pg_class WHERE relkind = 'r')""",
}


def describe(database_url: str) -> dict[str, dict[tuple[str, str], tuple[Any, ...]]]:
    """Columns, constraints and indexes of the public tables, keyed by (table, name)."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        return {
            kind: {(row[0], row[1]): tuple(row[2:]) for row in conn.execute(query).fetchall()}
            for kind, query in DESCRIBE_QUERIES.items()
        }


def diff(
    left: dict[str, dict[tuple[str, str], tuple[Any, ...]]],
    right: dict[str, dict[tuple[str, str], tuple[Any, ...]]],
) -> list[str]:
    """Human-readable differences between two ``describe`` results (empty when equal)."""
    problems: list[str] = []
    for kind in DESCRIBE_QUERIES:
        a, b = left[kind], right[kind]
        for key in sorted(a.keys() - b.keys()):
            problems.append(f"{kind}: {key} only on the left: {a[key]}")
        for key in sorted(b.keys() - a.keys()):
            problems.append(f"{kind}: {key} only on the right: {b[key]}")
        for key in sorted(a.keys() & b.keys()):
            if a[key] != b[key]:
                problems.append(f"{kind}: {key} differs: {a[key]} != {b[key]}")
    return problems
