"""The one retry policy: transient errors back off and retry, permanent ones never do.

Which errors are transient is decided in one place, :func:`pipeline.errors.classify`, for
errors inside a stage's work and around it alike (claim, result write, sending the next
message: the row's claim makes a retry safe). Bounded by ``TELEAI_MAX_ATTEMPTS`` here and,
independently, by the attempt count on the row (``pipeline.jobs.claim``), which also covers
deliveries whose worker died mid-task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from pipeline.errors import PermanentError, PipelineError, is_transient
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
            raise self.retry(exc=error, countdown=self.backoff()) from error

    def backoff(self) -> float:
        """Seconds before the next try of this delivery (exponential, jittered, bounded)."""
        return float(
            get_exponential_backoff_interval(
                factor=self.retry_backoff,
                retries=self.request.retries,
                maximum=self.retry_backoff_max,
                full_jitter=self.retry_jitter,
            )
        )


def retry_alone(batch: PipelineTask, task: PipelineTask, arg: str, error: PipelineError) -> bool:
    """Retry one item of a batch message (``batch``, the running task) as its own ``task``
    message, under the same policy as a task retrying itself: the same backoff, counted as
    one more retry of the batch's delivery, and none once ``TELEAI_MAX_ATTEMPTS`` retries are
    spent (the item's row is queued: the recovery sweep sends it, and the row's attempt count
    still bounds it). True when the message was sent."""
    logger = structlog.get_logger(__name__)
    retries = batch.request.retries + 1
    if retries > batch.max_retries:
        logger.warning("retry_alone_exhausted", item=arg, error=error.message)
        return False
    task.app.send_task(task.name, args=(arg,), countdown=batch.backoff(), retries=retries)
    logger.info("retry_alone", item=arg, retries=retries, error=error.message)
    return True
