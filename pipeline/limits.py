"""Time limits per task: a transcription's grows with the file's length.

One fixed hard limit (``TELEAI_TASK_TIME_LIMIT``, 1800 s) cannot fit both a 5-second clip and
a four-hour call: a four-hour file at the ~11x real time two free cores manage takes ~22
minutes, and on a loaded machine 3-4x that (docs/performance.md, "Long files"), so the fixed
limit would kill it and the retries would kill it again. The ingest stage knows the decoded
duration, so the ``transcribe`` message it sends (``workers.tasks.ingest``) carries limits for
that file. Messages sent without them (the recovery sweep, ``teleai retranscribe``) run under
the configured default. The longest any task may now run, :func:`longest_task_seconds`, is
what the temporary-copy sweep waits for before it calls a copy an orphan.

A limit above the Redis visibility timeout is safe here: a message still unacknowledged when
the timeout passes is delivered again, but the second worker finds the row claimed under a
live lease (the running task renews it) and does nothing (``pipeline.jobs.claim``).
"""

from __future__ import annotations

import math
from typing import TypedDict

from pipeline.settings import Settings

SOFT_MARGIN_S = 30  # the soft limit comes this much earlier, as in workers.celeryconfig


class TimeLimits(TypedDict):
    """Keyword arguments of ``Task.apply_async``."""

    time_limit: int
    soft_time_limit: int


def transcribe_time_limits(duration_seconds: float | None, settings: Settings) -> TimeLimits:
    """Hard and soft limit for transcribing a file of ``duration_seconds`` (None: unknown,
    the default limit)."""
    audio = max(0.0, duration_seconds or 0.0)
    hard = settings.task_time_limit + math.ceil(audio * settings.task_time_per_audio_second)
    return {"time_limit": hard, "soft_time_limit": max(hard - SOFT_MARGIN_S, 1)}


def longest_task_seconds(settings: Settings) -> int:
    """The hard limit of the longest file the pipeline accepts (``TELEAI_MAX_DURATION_SECONDS``):
    no task holds a temporary copy longer than this."""
    return transcribe_time_limits(settings.max_duration_seconds, settings)["time_limit"]
