"""The pipeline's small error tree. Each docstring is the condition; each message is for a human.

Workers retry :class:`TransientError` with backoff and never retry :class:`PermanentError`: bad
audio stays bad however often it is read. Library errors are translated into these at the boundary
so tasks decide retry policy on our types only.
"""

from __future__ import annotations

from pipeline.redact import redact


class PipelineError(Exception):
    """Raised when a pipeline stage cannot finish; ``str(err)`` is shown to users as-is.

    The message is stored in ``audio_files.error_message`` and printed, and it often quotes a
    library's message, which can hold a connection URL: passwords and configured secrets are
    taken out here, once, for every error of the tree (:func:`pipeline.redact.redact`).
    """

    def __init__(self, message: str) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message


class TransientError(PipelineError):
    """Raised when a stage failed for a reason that may go away (service down, disk busy)."""


class PermanentError(PipelineError):
    """Raised when a stage can never succeed on this input; retrying is pointless."""


class UnsupportedAudio(PermanentError):
    """Raised when the file is not audio in a supported format (by extension or by content)."""


class CorruptAudio(PermanentError):
    """Raised when the file claims to be audio but cannot be decoded (truncated, damaged)."""


class AudioTooLong(PermanentError):
    """Raised when the audio lasts longer than the configured maximum."""


class EmptyAudio(PermanentError):
    """Raised when the file has no bytes or no audio samples at all."""


class ModelUnavailable(PermanentError):
    """Raised when a configured model is neither installed nor allowed to be downloaded."""


class StorageError(TransientError):
    """Raised when managed storage cannot be written (disk full, permissions, I/O error)."""


class StorageUnavailable(StorageError):
    """Raised when object storage cannot be reached or answers with a server-side error."""


class StorageMisconfigured(PermanentError):
    """Raised when storage refuses us for a reason a retry cannot fix: a missing bucket, bad
    credentials, no permission, or a stored reference outside managed storage."""


class StoredFileMissing(PermanentError):
    """Raised when a file's stored copy is no longer in managed storage."""


def classify(error: BaseException) -> PipelineError:
    """Translate any exception into our tree: the one place that decides retry vs. give up.

    Both retry paths ask this: the runner, for errors inside a stage's work (fail the row or
    release it), and ``workers.retry.PipelineTask``, for errors around it (claim, result write,
    sending the next message). Lost connections to PostgreSQL or Redis and full disks may heal,
    so they are transient; anything else unexpected is a bug or an input the libraries choke
    on, and retrying the same input would fail the same way, so it is permanent (with the
    library's message kept).
    """
    if isinstance(error, PipelineError):
        return error
    if _service_unavailable(error):
        return TransientError(f"a service was unavailable: {type(error).__name__}: {error}")
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
        return StorageError(f"storage error: {error.strerror or error}")
    name = type(error).__name__
    if name == "SoftTimeLimitExceeded":
        return PermanentError("took longer than the task time limit")
    return PermanentError(f"unexpected error ({name}): {error}")


def is_transient(error: BaseException) -> bool:
    """True when :func:`classify` says retrying may succeed."""
    return isinstance(classify(error), TransientError)


def _service_unavailable(error: BaseException) -> bool:
    """A lost or refused connection to PostgreSQL or Redis (through any of their libraries)."""
    # Imported here so this module stays import-light for the CLI.
    from kombu.exceptions import OperationalError as BrokerOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(
        error,
        OperationalError
        | InterfaceError
        | RedisConnectionError
        | RedisTimeoutError
        | BrokerOperationalError
        | ConnectionError,  # the builtin: refused, reset, broken pipe
    ):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


_TRANSIENT_ERRNOS = frozenset(
    {28, 122, 5, 11, 110, 111}
)  # ENOSPC EDQUOT EIO EAGAIN ETIMEDOUT ECONNREFUSED
