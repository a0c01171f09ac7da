"""Settings of the HTTP API process (``TELEAI_API_*``), apart from the pipeline's settings.

The API connects to PostgreSQL as a member of ``teleai_app`` (``TELEAI_API_DATABASE_URL``), never
as the schema owner, so a compromised API process is held by row-level security and by the
credential-derived acting user of migration 005. Where the URL is unset (a laptop, the demo) the
pipeline's ``TELEAI_DATABASE_URL`` is used and every connection does ``SET ROLE teleai_app`` first,
which gives the same policies but not the same containment (the owner could ``RESET ROLE``).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """All knobs of the API server. Secrets are ``SecretStr`` so they never show in a ``repr``."""

    model_config = SettingsConfigDict(env_prefix="TELEAI_API_", extra="ignore")

    database_url: SecretStr | None = Field(
        None,
        description=(
            "SQLAlchemy URL of a LOGIN role in teleai_app. Unset: TELEAI_DATABASE_URL with "
            "SET ROLE teleai_app on every connection."
        ),
    )
    redis_url: SecretStr | None = Field(
        None,
        description="Redis for rate limits and login throttling; unset: TELEAI_BROKER_URL.",
    )
    pool_size: int = Field(10, ge=1, le=200, description="Database connections per process.")
    max_upload_bytes: int = Field(
        2 * 1024**3, gt=0, description="Larger request bodies are refused with 413."
    )
    upload_chunk_bytes: int = Field(
        1024 * 1024, ge=4096, description="Uploads are written to disk in chunks of this size."
    )
    session_idle_minutes: float = Field(
        30.0, gt=0, description="A login unused for this long stops working (OWASP: 15-30)."
    )
    login_max_failures_per_account: int = Field(
        5, ge=1, description="Failed logins for one account within the window before 429."
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one client address within the window."
    )
    login_window_seconds: int = Field(900, ge=1, description="Window of the login throttle.")
    rate_limit_per_second: float = Field(
        20.0, gt=0, description="Token-bucket refill rate per API key (requests per second)."
    )
    rate_limit_burst: int = Field(100, ge=1, description="Token-bucket size per API key.")
    sse_poll_seconds: float = Field(
        15.0,
        gt=0,
        description=(
            "The live-status streams wake on PostgreSQL notifications (LISTEN/NOTIFY, migration "
            "009); this is their fallback: they also re-read the database this often."
        ),
    )
    trust_forwarded_for: bool = Field(
        False,
        description=(
            "Take the client address from X-Forwarded-For (only behind a proxy you run); "
            "it decides the per-address login throttle and the recorded session IP."
        ),
    )


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    """The process-wide API settings, built on first use (never at import time)."""
    return ApiSettings()
