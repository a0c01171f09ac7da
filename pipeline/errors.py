"""The pipeline's small error tree. Each docstring is the condition; each message is for a human.

Workers retry :class:`TransientError` with backoff and never retry :class:`PermanentError`: bad
audio stays bad however often it is read. Library errors are translated into these at the boundary
so tasks decide retry policy on our types only.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Raised when a pipeline stage cannot finish; ``str(err)`` is shown to users as-is."""

    def __init__(self, message: str) -> None:
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
