"""Native API: API keys of the caller (create, list, revoke). The key is shown once."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from db import api_keys
from db.models import ApiKey, KeyScope
from interfaces.api import views
from interfaces.api.deps import SCOPE_RANK, Reader, Writer
from interfaces.api.errors import ApiError, not_found

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=api_keys.MAX_NAME_CHARS)
    scope: KeyScope = KeyScope.READ


def key_view(row: ApiKey) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "user_id": str(row.user_id),
        "name": row.name,
        "prefix": row.key_prefix,
        "scope": row.scope,
        "created_at": views.jsonable(row.created_at),
        "last_used_at": views.jsonable(row.last_used_at),
        "expires_at": views.jsonable(row.expires_at),
        "revoked_at": views.jsonable(row.revoked_at),
    }


@router.post("", status_code=201, summary="Create an API key (its value is shown only now)")
def create(body: NewKey, who: Writer) -> JSONResponse:
    # A credential cannot mint a stronger one, and only admins get admin keys.
    if SCOPE_RANK[body.scope.value] > SCOPE_RANK[who.scope]:
        raise ApiError(403, f"a '{who.scope}' credential cannot create a '{body.scope}' key")
    if body.scope is KeyScope.ADMIN and who.role != "admin":
        raise ApiError(403, "only admins can create admin keys")
    session = who.session
    row, key = api_keys.create_key(session, who.user_id, name=body.name, scope=body.scope)
    return JSONResponse({**key_view(row), "key": key}, status_code=201)


@router.get("", summary="My API keys (never their values)")
def list_keys(who: Reader, include_revoked: bool = False) -> dict[str, Any]:
    session = who.session
    rows = api_keys.list_keys(session, who.user_id, include_revoked=include_revoked)
    return {"items": [key_view(r) for r in rows]}


@router.delete("/{key_id}", status_code=204, summary="Revoke one of my API keys (final)")
def revoke(who: Writer, key_id: uuid.UUID) -> Response:
    session = who.session
    row = api_keys.get_key(session, key_id)
    if row is None or row.user_id != who.user_id or not api_keys.revoke_key(session, key_id):
        raise not_found("API key")
    return Response(status_code=204)
