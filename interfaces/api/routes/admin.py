"""Native API: administration (users, their keys and sessions, usage). Admin role and scope.

The checks here only give a clear 403; the policies of 002/005 are what actually limit a
non-admin (an admin scope on a viewer's key reaches nothing more than the viewer sees).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import api_keys, auth_sessions, users
from db.models import Role, UsageDaily, User
from interfaces.api import views
from interfaces.api.deps import Admin, Caller
from interfaces.api.errors import ApiError, not_found
from interfaces.api.routes.auth import SESSIONS, session_view
from interfaces.api.routes.keys import key_view

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def _admin(who: Caller) -> Caller:
    if who.role != "admin":
        raise ApiError(403, "admin endpoints need an admin account")
    return who


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "email": user.email,
        "role": user.role,
        "full_name": user.full_name,
        "is_active": user.is_active,
        "deleted": user.deleted_at is not None,
        "created_at": views.jsonable(user.created_at),
        "last_login_at": views.jsonable(user.last_login_at),
    }


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=50)
    email: str = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=12, max_length=1024)
    role: Role = Role.VIEWER
    full_name: str | None = Field(None, max_length=255)


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


@router.get("/users", summary="Every user")
def list_users(who: Admin, include_deleted: bool = False) -> dict[str, Any]:
    _admin(who)
    session = who.session
    rows = users.list_users(session, include_deleted=include_deleted)
    return {"items": [user_view(u) for u in rows]}


@router.post("/users", status_code=201, summary="Create a user")
def create_user(who: Admin, body: NewUser) -> JSONResponse:
    _admin(who)
    try:
        session = who.session
        user = users.create_user(
            session,
            email=str(body.email),
            username=body.username,
            password=body.password,
            role=body.role.value,
            full_name=body.full_name,
        )
        return JSONResponse(user_view(user), status_code=201)
    except IntegrityError as error:
        raise ApiError(
            409, "a user with this username or email exists, or the name is invalid"
        ) from error


def _change(who: Caller, user_id: uuid.UUID, action: Any) -> dict[str, Any]:
    session = who.session
    try:
        action(session)
    except LookupError as error:
        raise not_found("user") from error
    user = session.get(User, user_id)
    assert user is not None
    return user_view(user)


@router.post("/users/{user_id}/deactivate", summary="Block a user (ends their sessions)")
def deactivate(who: Admin, user_id: uuid.UUID) -> dict[str, Any]:
    _admin(who)
    if user_id == who.user_id:
        raise ApiError(400, "you cannot deactivate yourself")
    return _change(who, user_id, lambda s: users.deactivate_user(s, user_id))


@router.post("/users/{user_id}/reactivate", summary="Undo a deactivation")
def reactivate(who: Admin, user_id: uuid.UUID) -> dict[str, Any]:
    _admin(who)
    return _change(who, user_id, lambda s: users.reactivate_user(s, user_id))


@router.put("/users/{user_id}/role", summary="Set a user's role (ends their sessions)")
def set_role(who: Admin, user_id: uuid.UUID, body: RoleChange) -> dict[str, Any]:
    _admin(who)
    if user_id == who.user_id:
        raise ApiError(400, "you cannot change your own role")
    return _change(who, user_id, lambda s: users.set_role(s, user_id, body.role.value))


@router.get("/users/{user_id}/sessions", summary="A user's live sessions")
def user_sessions(who: Admin, user_id: uuid.UUID) -> dict[str, Any]:
    _admin(who)
    session = who.session
    if session.get(User, user_id) is None:
        raise not_found("user")
    rows = session.execute(
        select(SESSIONS)
        .where(SESSIONS.c.user_id == user_id, SESSIONS.c.is_revoked.is_(False))
        .order_by(SESSIONS.c.last_accessed_at.desc())
    )
    return {"items": [session_view(r) for r in rows]}


@router.delete("/users/{user_id}/sessions", summary="End every session of a user")
def end_user_sessions(who: Admin, user_id: uuid.UUID) -> dict[str, Any]:
    _admin(who)
    session = who.session
    if session.get(User, user_id) is None:
        raise not_found("user")
    return {"revoked": auth_sessions.revoke_all_sessions(session, user_id)}


@router.get("/keys", summary="API keys of every user, or ?user_id=")
def all_keys(
    who: Admin, user_id: uuid.UUID | None = None, include_revoked: bool = False
) -> dict[str, Any]:
    _admin(who)
    session = who.session
    rows = api_keys.list_keys(session, user_id, include_revoked=include_revoked)
    return {"items": [key_view(r) for r in rows]}


@router.delete("/keys/{key_id}", status_code=200, summary="Revoke any user's API key")
def revoke_key(who: Admin, key_id: uuid.UUID) -> dict[str, Any]:
    _admin(who)
    session = who.session
    if api_keys.get_key(session, key_id) is None:
        raise not_found("API key")
    return {"revoked": api_keys.revoke_key(session, key_id)}


@router.get("/usage", summary="Audio seconds submitted and processed per user and day")
def usage(
    who: Admin,
    user_id: uuid.UUID | None = None,
    since: Annotated[dt.date | None, Query(description="First day (UTC), inclusive")] = None,
    until: Annotated[dt.date | None, Query(description="Last day (UTC), inclusive")] = None,
) -> dict[str, Any]:
    _admin(who)
    stmt = select(UsageDaily).order_by(UsageDaily.day.desc(), UsageDaily.user_id)
    if user_id is not None:
        stmt = stmt.where(UsageDaily.user_id == user_id)
    if since is not None:
        stmt = stmt.where(UsageDaily.day >= since)
    if until is not None:
        stmt = stmt.where(UsageDaily.day <= until)
    session = who.session
    return {
        "items": [
            {
                "user_id": str(r.user_id),
                "day": r.day.isoformat(),
                "files_submitted": r.files_submitted,
                "audio_seconds_submitted": float(r.audio_seconds_submitted),
                "files_processed": r.files_processed,
                "audio_seconds_processed": float(r.audio_seconds_processed),
            }
            for r in session.scalars(stmt.limit(5000))
        ]
    }
