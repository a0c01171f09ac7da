"""The Celery application: Redis broker, JSON only, three queues, deliberate delivery settings.

``teleai worker --queues transcribe`` / ``python -m workers -Q transcribe`` (:mod:`workers.launch`)
or ``celery -A workers.app worker -Q transcribe`` starts a worker. Settings
are read when Celery first configures the app (``workers.celeryconfig``), not at import.
Periodic jobs need no ``celery beat``: see :mod:`workers.periodic`.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from workers.periodic import PeriodicJobsStep

app = Celery("teleai", include=["workers.tasks"])
app.config_from_object("workers.celeryconfig")
# Every worker runs the periodic jobs (recovery sweep, analytics refresh, session purge), one
# elected worker at a time across the cluster; `celery beat` is possible but not needed.
app.steps["worker"].add(PeriodicJobsStep)


@worker_process_init.connect
def _fresh_pool_in_child(**_: Any) -> None:
    """A forked pool child must not reuse the parent's database connections; it loads its
    models, and opens its first connection while Whisper loads (:func:`_open_database`)."""
    from db.engine import reset_after_fork
    from pipeline.settings import get_settings
    from pipeline.warmup import warm_up

    reset_after_fork()
    settings = get_settings()
    if settings.preload_models:
        queues = set(app.amqp.queues.consume_from or app.amqp.queues)
        warm_up(queues, settings, alongside=lambda: _open_database(settings.sqlalchemy_url()))


def _open_database(url: str) -> None:
    """Connect once, so the first task's claim finds a pooled connection (SQLAlchemy's first
    connect also reads the server's settings): done beside the model load, it is off the
    cold-start path. Best effort: a database that is not up yet is the first task's error."""
    from sqlalchemy import text

    from db.engine import get_engine

    try:
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # reported by the first task that needs it
        structlog.get_logger(__name__).warning(
            "database_not_reachable_at_start", error=type(error).__name__
        )


@worker_process_shutdown.connect
def _close_pool(**_: Any) -> None:
    from db.engine import dispose_all

    dispose_all()


@setup_logging.connect
def _logging(**_: Any) -> None:
    """Use our structured logging instead of Celery's default root-logger setup."""
    from pipeline.logs import configure_logging
    from pipeline.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
