"""The one retry policy: transient errors back off and retry, permanent ones never do.

Which errors are transient is decided in one place, :func:`pipeline.errors.classify`, for
errors inside a stage's work and around it alike (claim, result write, sending the next
message: the row's claim makes a retry safe). Bounded by ``TELEAI_MAX_ATTEMPTS`` here and,
independently, by the attempt count on the row (``pipeline.jobs.claim``), which also covers
deliveries whose worker died mid-task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from pipeline.errors import PermanentError, is_transient
from pipeline.settings import get_settings

if TYPE_CHECKING:
    _BaseTask = Task[Any, Any]  # celery-types makes Task generic; the runtime class is not
else:
    _BaseTask = Task


class PipelineTask(_BaseTask):
    """Base task: retries what ``classify`` calls transient, with exponential backoff and jitter.

    Not Celery's ``autoretry_for``: a class list cannot express "a DBAPIError whose connection
    was invalidated", and a second list would drift from ``classify`` again.
    """

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
        except Exception as error:
            if not is_transient(error):
                raise  # a bug outside stage work: the lease and the reaper recover the row
            countdown = get_exponential_backoff_interval(
                factor=self.retry_backoff,
                retries=self.request.retries,
                maximum=self.retry_backoff_max,
                full_jitter=self.retry_jitter,
            )
            raise self.retry(exc=error, countdown=countdown) from error
