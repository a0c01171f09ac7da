"""Webhooks: the message written when a file finishes, its signing secret, the settings.

:func:`enqueue` is called by :mod:`pipeline.jobs` in the transaction that writes a file's final
status (completed or failed), so the outbox row exists exactly when the status does: a crash
after the commit loses nothing, a rolled-back finish sends nothing. It writes a row only when a
receiver is configured: the job's ``webhook_url`` (with its optional auth header, as AssemblyAI
has it), else the owner's default (``user_webhooks``). Delivery is ``workers.webhooks``.

Signing follows Standard Webhooks (the ``standardwebhooks`` package): ``webhook-id`` (the outbox
id, stable across retries), ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 of
HMAC-SHA256(secret, id.timestamp.body)>``). The secret comes from ``TELEAI_WEBHOOK_SECRET``;
by default each user gets their own secret derived from it (:func:`signing_secret`), so one
tenant's receiver secret cannot forge messages to another's. The secret is a ``SecretStr`` and is
never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from db.models import (
    AudioFile,
    FileStatus,
    UserWebhook,
    WebhookEvent,
    WebhookOutbox,
)
from pipeline.netguard import AddressPolicy
from pipeline.options import options_of

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
_DERIVATION_LABEL: Final = b"teleai-webhook-signing-v1:"


class WebhookSettings(BaseSettings):
    """``TELEAI_WEBHOOK_*``: signing, the SSRF policy, timeouts and the retry schedule."""

    model_config = SettingsConfigDict(env_prefix="TELEAI_WEBHOOK_", extra="ignore")

    secret: SecretStr | None = Field(
        None,
        description=(
            "Signing secret: 'whsec_<base64>' (Standard Webhooks) or any string of 24+ "
            "characters. Unset: messages wait (retried) until it is set."
        ),
    )
    per_user_secrets: bool = Field(
        True,
        description="Sign each user's messages with a secret derived for that user "
        "(GET /api/v1/webhooks/secret shows it); false: the deployment secret itself.",
    )
    allow_private: bool = Field(
        False, description="Allow loopback, private and link-local receivers (not metadata)."
    )
    allowed_hosts: str = Field(
        "", description="Comma-separated host names, addresses or networks always allowed."
    )
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="Per connect/read/write.")
    retry_hours: float = Field(24.0, gt=0, description="Retry window from the first attempt.")
    backoff_base_seconds: float = Field(10.0, gt=0, description="Delay before the 2nd attempt.")
    backoff_max_seconds: float = Field(3600.0, gt=0, description="Longest delay between tries.")
    concurrency: int = Field(8, ge=1, le=200, description="Deliveries in flight per leader.")

    def policy(self) -> AddressPolicy:
        return AddressPolicy.from_settings(self.allow_private, self.allowed_hosts)


@lru_cache(maxsize=1)
def get_webhook_settings() -> WebhookSettings:
    return WebhookSettings()


def _secret_bytes(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :] + "==")
    return secret.encode()


class MissingSecret(RuntimeError):
    """``TELEAI_WEBHOOK_SECRET`` is not set (or too short): nothing can be signed."""


def signing_secret(user_id: uuid.UUID, settings: WebhookSettings | None = None) -> str:
    """The ``whsec_`` secret a user's receiver verifies with (derived per user by default)."""
    settings = settings or get_webhook_settings()
    if settings.secret is None or len(settings.secret.get_secret_value()) < 24:
        raise MissingSecret("TELEAI_WEBHOOK_SECRET is not set (24+ characters or whsec_...)")
    master = _secret_bytes(settings.secret.get_secret_value())
    if not settings.per_user_secrets:
        return SECRET_PREFIX + base64.b64encode(master).decode()
    derived = hmac.new(master, _DERIVATION_LABEL + user_id.bytes, hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(derived).decode()


@dataclass(frozen=True)
class Finished:
    """What a message needs from the file's row, read in the finishing transaction."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    file_name: str
    error_message: str | None
    metadata: dict[str, Any]


def payload_for(row: Finished, event: WebhookEvent, at: dt.datetime) -> dict[str, Any]:
    """The JSON body: the file's id and status (AssemblyAI's ``transcript_id`` and ``status``
    too, so a receiver written for it works unchanged), Standard Webhooks' ``type`` and
    ``timestamp``, and the error message of a failed file."""
    failed = event is WebhookEvent.FAILED
    return {
        "type": event.value,
        "timestamp": at.isoformat(),
        "id": str(row.id),
        "transcript_id": str(row.id),
        "status": "error" if failed else "completed",
        "file_status": row.status,
        "file_name": row.file_name,
        "error": row.error_message if failed else None,
    }


def receiver_of(session: Session, row: Finished) -> tuple[str, str | None, str | None] | None:
    """(url, auth header name, value) for the file: its job's, else its owner's default."""
    options = options_of(row.metadata)
    if options.webhook_url:
        return (
            options.webhook_url,
            options.webhook_auth_header_name,
            options.webhook_auth_header_value,
        )
    default = session.get(UserWebhook, row.user_id)
    if default is None:
        return None
    return default.url, default.auth_header_name, default.auth_header_value


def enqueue(
    session: Session, file_id: uuid.UUID, settings: WebhookSettings | None = None
) -> uuid.UUID | None:
    """Write the outbox row for a file that just finished (in the caller's transaction).

    Returns the message id, or None when no receiver is configured or the file is not in a
    final status.
    """
    settings = settings or get_webhook_settings()
    found = session.execute(
        select(
            AudioFile.id, AudioFile.user_id, AudioFile.status, AudioFile.file_name,
            AudioFile.error_message, AudioFile.metadata_,
        ).where(AudioFile.id == file_id)
    ).one_or_none()  # fmt: skip
    if found is None:
        return None
    row = Finished(*found)
    if row.status not in {FileStatus.COMPLETED.value, FileStatus.FAILED.value}:
        return None
    target = receiver_of(session, row)
    if target is None:
        return None
    url, header_name, header_value = target
    event = WebhookEvent.COMPLETED if row.status == FileStatus.COMPLETED.value else (
        WebhookEvent.FAILED
    )  # fmt: skip
    now = session.execute(select(func.now())).scalar_one()
    message_id: uuid.UUID = session.execute(
        insert(WebhookOutbox)
        .values(
            audio_file_id=row.id,
            user_id=row.user_id,
            event=event.value,
            url=url,
            auth_header_name=header_name,
            auth_header_value=header_value,
            payload=payload_for(row, event, now),
            give_up_at=now + dt.timedelta(hours=settings.retry_hours),
        )
        .returning(WebhookOutbox.id)
    ).scalar_one()
    return message_id
