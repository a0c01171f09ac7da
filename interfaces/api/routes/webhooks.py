"""Webhook settings of the caller and the deliveries of their files (``/api/v1/webhooks``).

A job names its receiver in its options (``webhook_url`` and optionally
``webhook_auth_header_name``/``_value``); ``PUT /api/v1/webhooks/default`` sets the receiver
used for the caller's files whose options name none. ``GET /api/v1/webhooks/secret`` shows the
Standard Webhooks secret the caller's receivers verify with (derived per user from
``TELEAI_WEBHOOK_SECRET``; the API process needs that setting too). The auth header's value is
never shown back. Deliveries are read under row-level security (migration 008): a user sees the
messages of their own files.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from db.models import AudioFile, UserWebhook, WebhookAttempt, WebhookOutbox
from interfaces.api.deps import Reader, Writer, unit
from interfaces.api.errors import ApiError
from pipeline.options import InvalidOptions, parse_options
from pipeline.webhooks import MissingSecret, signing_secret

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


class DefaultWebhook(BaseModel):
    """The caller's default receiver."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    auth_header_name: str | None = Field(None, max_length=100)
    auth_header_value: str | None = Field(None, max_length=2000)


def _shown(row: UserWebhook) -> dict[str, Any]:
    return {
        "url": row.url,
        "auth_header_name": row.auth_header_name,
        "auth_header_set": row.auth_header_value is not None,
        "updated_at": row.updated_at.isoformat(),
    }


@router.get("/webhooks/default", summary="The caller's default webhook receiver")
def get_default(who: Reader) -> dict[str, Any]:
    with unit(who) as session:
        row = session.get(UserWebhook, who.user_id)
        if row is None:
            raise ApiError(404, "no default webhook is set")
        return _shown(row)


@router.put("/webhooks/default", summary="Set the receiver for files whose options name none")
def put_default(who: Writer, body: DefaultWebhook) -> dict[str, Any]:
    try:
        checked = parse_options(
            {
                "webhook_url": body.url,
                "webhook_auth_header_name": body.auth_header_name,
                "webhook_auth_header_value": body.auth_header_value,
            }
        )
    except InvalidOptions as error:
        raise ApiError(400, error.message) from None
    values = {
        "url": checked.webhook_url,
        "auth_header_name": checked.webhook_auth_header_name,
        "auth_header_value": checked.webhook_auth_header_value,
    }
    with unit(who) as session:
        session.execute(
            insert(UserWebhook)
            .values(user_id=who.user_id, **values)
            .on_conflict_do_update(
                index_elements=[UserWebhook.user_id], set_={**values, "updated_at": func.now()}
            )
        )
        row = session.get(UserWebhook, who.user_id, populate_existing=True)
        assert row is not None
        return _shown(row)


@router.delete("/webhooks/default", status_code=204, summary="Remove the default receiver")
def delete_default(who: Writer) -> Response:
    with unit(who) as session:
        session.execute(delete(UserWebhook).where(UserWebhook.user_id == who.user_id))
    return Response(status_code=204)


@router.get("/webhooks/secret", summary="The secret the caller's receivers verify signatures with")
def secret(who: Writer) -> dict[str, str]:
    try:
        return {"secret": signing_secret(who.user_id), "scheme": "standard-webhooks-v1"}
    except MissingSecret as error:
        raise ApiError(503, "webhook signing is not configured on this server") from error


@router.get("/files/{file_id}/webhooks", summary="Webhook messages of a file and their attempts")
def deliveries(who: Reader, file_id: uuid.UUID) -> dict[str, Any]:
    with unit(who) as session:
        row = session.get(AudioFile, file_id)
        if row is None or row.deleted_at is not None:
            raise ApiError(404, "file not found")
        messages = list(
            session.scalars(
                select(WebhookOutbox)
                .where(WebhookOutbox.audio_file_id == file_id)
                .order_by(WebhookOutbox.created_at)
            )
        )
        tried = list(
            session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.outbox_id.in_([m.id for m in messages]))
                .order_by(WebhookAttempt.attempt)
            )
        ) if messages else []  # fmt: skip
    by_message: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for attempt in tried:
        by_message.setdefault(attempt.outbox_id, []).append(
            {
                "attempt": attempt.attempt,
                "started_at": attempt.started_at.isoformat(),
                "duration_ms": attempt.duration_ms,
                "status_code": attempt.status_code,
                "result": attempt.result,
                "error": attempt.error,
            }
        )
    return {
        "items": [
            {
                "id": str(m.id),
                "event": m.event,
                "url": m.url,
                "status": m.status,
                "attempts": by_message.get(m.id, []),
                "next_attempt_at": m.next_attempt_at.isoformat() if m.status == "pending" else None,
                "last_error": m.last_error,
                "created_at": m.created_at.isoformat(),
                "finished_at": m.finished_at.isoformat() if m.finished_at else None,
            }
            for m in messages
        ]
    }
