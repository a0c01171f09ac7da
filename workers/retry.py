"""The one retry policy: transient errors back off and retry, permanent ones never do.

Bounded by ``TELEAI_MAX_ATTEMPTS`` here and, independently, by the attempt count on the row
(``pipeline.jobs.claim``), which also covers deliveries whose worker died mid-task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Task

from pipeline.errors import PermanentError, TransientError
from pipeline.settings import get_settings

if TYPE_CHECKING:
    _BaseTask = Task[Any, Any]  # celery-types makes Task generic; the runtime class is not
else:
    _BaseTask = Task


class PipelineTask(_BaseTask):
    """Base task: retries :class:`TransientError` with exponential backoff and jitter."""

    # Our transient errors, plus lost connections outside a stage's work (claim, result write,
    # sending the next message): the row's claim makes a retry safe.
    autoretry_for = (
        TransientError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        redis.exceptions.ConnectionError,
        kombu.exceptions.OperationalError,
    )
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True
    acks_late = True
    reject_on_worker_lost = True

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return get_settings().max_attempts

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import structlog

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task=self.name, task_id=self.request.id, args=args)
        try:
            return super().__call__(*args, **kwargs)
        except PermanentError as error:
            # The row is already marked failed with this message; nothing to retry or re-raise.
            structlog.get_logger(__name__).info("task_failed_permanently", error=error.message)
            return {"failed": error.message}
