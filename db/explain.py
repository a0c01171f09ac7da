"""Plans of the statements that run inside a function, for benchmarks and tests.

``EXPLAIN`` of ``SELECT … FROM search_latest_transcriptions(…)`` shows one "Function Scan":
the query inside a plpgsql function is planned and run on its own. PostgreSQL's ``auto_explain``
module can report the plan of every nested statement as it runs; with ``log_level = notice`` the
plans come back to the client as notices instead of going to the server log, so a benchmark
can store them and a test can assert on them.

Loading the module and its settings need a superuser. The settings are transaction-local, so
call :func:`nested_plans` inside the transaction that runs the statement, before any
``SET LOCAL ROLE`` (the settings stay in force after it), and end that transaction soon after.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Connection

_PLAN_RE = re.compile(r"^duration: [0-9.]+ ms\s+plan:\n", re.DOTALL)


@contextmanager
def nested_plans(conn: Connection, *, analyze: bool = True) -> Iterator[list[str]]:
    """Collect the plan of every statement run on ``conn`` (nested ones too) inside the block.

    Yields a list that fills as statements finish, innermost first. ``analyze`` adds actual
    times, rows and buffers, at the cost of timing every plan node.
    """
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError("nested_plans needs a psycopg (3) connection")
    conn.exec_driver_sql("LOAD 'auto_explain'")
    settings = {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_analyze": "on" if analyze else "off",
        "auto_explain.log_buffers": "on" if analyze else "off",
        "auto_explain.log_timing": "on" if analyze else "off",
        "auto_explain.log_format": "text",
        "auto_explain.log_level": "notice",
        "client_min_messages": "notice",
    }
    for name, value in settings.items():
        conn.exec_driver_sql(
            "SELECT set_config(%(name)s, %(value)s, true)", {"name": name, "value": value}
        )
    plans: list[str] = []

    def collect(diagnostic: psycopg.errors.Diagnostic) -> None:
        message = diagnostic.message_primary or ""
        if _PLAN_RE.match(message):
            plans.append(_PLAN_RE.sub("", message, count=1))

    raw.add_notice_handler(collect)
    try:
        yield plans
    finally:
        raw.remove_notice_handler(collect)
        # Stop reporting for the rest of the transaction; after a SET LOCAL ROLE only the end of
        # the transaction can (the setting is superuser-only), and that is soon enough.
        conn.exec_driver_sql(
            "SELECT CASE WHEN current_setting('is_superuser') = 'on' "
            "THEN set_config('auto_explain.log_min_duration', '-1', true) END"
        )
