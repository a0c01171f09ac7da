"""The transcription task's time limit grows with the file (pure function, no services)."""

from __future__ import annotations

from pipeline.limits import longest_task_seconds, transcribe_time_limits
from pipeline.settings import Settings


def test_limit_grows_with_duration_from_the_configured_floor() -> None:
    settings = Settings(task_time_limit=1800, task_time_per_audio_second=0.5)
    assert transcribe_time_limits(None, settings) == {"time_limit": 1800, "soft_time_limit": 1770}
    assert transcribe_time_limits(5.0, settings)["time_limit"] == 1803  # ceil(2.5)
    four_hours = transcribe_time_limits(4 * 3600.0, settings)
    assert four_hours == {"time_limit": 9000, "soft_time_limit": 8970}
    assert transcribe_time_limits(-3.0, settings)["time_limit"] == 1800


def test_factor_zero_is_the_fixed_limit_and_soft_stays_positive() -> None:
    fixed = Settings(task_time_limit=600, task_time_per_audio_second=0.0)
    assert transcribe_time_limits(14_400.0, fixed)["time_limit"] == 600
    tiny = Settings(task_time_limit=10, task_time_per_audio_second=0.0)
    assert transcribe_time_limits(1.0, tiny)["soft_time_limit"] == 1


def test_the_longest_task_is_that_of_the_longest_accepted_file() -> None:
    settings = Settings(task_time_limit=1800, task_time_per_audio_second=0.5)
    assert settings.max_duration_seconds == 4 * 3600.0
    assert longest_task_seconds(settings) == 9000
