"""Native API: log in and out, rotate a session, who am I, my sessions.

A login runs through the database (:func:`db.access.open_session`): the API process never reads
a password hash and cannot open a session without the password. Failed logins are counted per
account and per client address in Redis and refused with 429 past the limit, before the
password is even checked.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from db import access, auth_sessions
from db.models import Base, User
from db.users import hash_password, needs_rehash
from interfaces.api import views
from interfaces.api.deps import CallerDep, Reader, app_engine, client_address
from interfaces.api.errors import ApiError, not_found
from interfaces.api.limits import check_login_allowed, clear_login_failures, record_login_failure
from interfaces.api.settings import get_api_settings
from pipeline.settings import get_settings

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# The table, not the mapped class: the class is being renamed (Session -> AuthSession).
SESSIONS = Base.metadata.tables["sessions"]


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=255, description="Username or email.")
    password: str = Field(min_length=1, max_length=1024)


def _ttl() -> dt.timedelta:
    return dt.timedelta(hours=get_settings().session_ttl_hours)


def _me(session: Any, user_id: uuid.UUID) -> dict[str, Any]:
    user = session.get(User, user_id)
    assert user is not None
    return {
        "id": str(user.id),
        "username": user.username,
        "email": user.email,
        "role": user.role,
        "full_name": user.full_name,
    }


@router.post("/login", summary="Username or email + password -> a session token")
def login(body: Login, request: Request) -> dict[str, Any]:
    address = client_address(request)
    check_login_allowed(body.login, address)
    with access.acting_with(app_engine(), "") as session:
        opened = access.open_session(
            session,
            body.login,
            body.password,
            ip_address=address,
            user_agent=request.headers.get("user-agent"),
            ttl_seconds=_ttl().total_seconds(),
            idle_seconds=get_api_settings().session_idle_minutes * 60,
        )
    if opened is None:
        record_login_failure(body.login, address)
        raise ApiError(401, "wrong login or password")
    clear_login_failures(body.login)
    with access.acting_with(app_engine(), opened.token) as session:
        user = session.get(User, opened.user_id)
        assert user is not None
        if needs_rehash(user.password_hash):  # bcrypt or weaker argon2 from before
            user.password_hash = hash_password(body.password)
        expires = session.execute(
            select(SESSIONS.c.expires_at).where(
                SESSIONS.c.token_hash == auth_sessions.token_hash(opened.token)
            )
        ).scalar_one()
        return {
            "token": opened.token,
            "token_type": "bearer",
            "expires_at": views.jsonable(expires),
            "user": _me(session, opened.user_id),
        }


@router.post("/logout", status_code=204, summary="Revoke the session token of this request")
def logout(who: CallerDep) -> Response:
    if who.kind != "session":
        raise ApiError(400, "an API key is revoked with DELETE /api/v1/keys/{id}, not logout")
    session = who.session
    auth_sessions.revoke_session(session, who.credential_id)
    return Response(status_code=204)


@router.post("/rotate", summary="Swap this session token for a new one (the old one stops)")
def rotate(who: CallerDep) -> dict[str, Any]:
    if who.kind != "session":
        raise ApiError(400, "only session tokens rotate; create a new API key instead")
    session = who.session
    rotated = auth_sessions.rotate_session(session, who.credential, ttl=_ttl(), idle_timeout=None)
    if rotated is None:
        raise ApiError(401, "the session is no longer live")
    row, token = rotated
    return {
        "token": token,
        "token_type": "bearer",
        "expires_at": views.jsonable(row.expires_at),
    }


@router.get("/me", summary="The caller: user, role, credential kind and scope")
def me(who: Reader) -> dict[str, Any]:
    session = who.session
    return {
        **_me(session, who.user_id),
        "credential": {"kind": who.kind, "id": str(who.credential_id), "scope": who.scope},
    }


def session_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "user_id": str(row.user_id),
        "ip_address": str(row.ip_address) if row.ip_address is not None else None,
        "user_agent": row.user_agent,
        "created_at": views.jsonable(row.created_at),
        "last_accessed_at": views.jsonable(row.last_accessed_at),
        "expires_at": views.jsonable(row.expires_at),
        "revoked": row.is_revoked,
    }


@router.get("/sessions", summary="My live sessions")
def my_sessions(who: Reader) -> dict[str, Any]:
    session = who.session
    rows = session.execute(
        select(SESSIONS)
        .where(SESSIONS.c.user_id == who.user_id, SESSIONS.c.is_revoked.is_(False))
        .order_by(SESSIONS.c.last_accessed_at.desc())
    )
    return {"items": [session_view(r) for r in rows]}


@router.delete("/sessions/{session_id}", status_code=204, summary="End one of my sessions")
def end_session(who: CallerDep, session_id: uuid.UUID) -> Response:
    session = who.session
    owner = session.execute(
        select(SESSIONS.c.user_id).where(SESSIONS.c.id == session_id)
    ).scalar_one_or_none()
    if owner != who.user_id:
        raise not_found("session")
    auth_sessions.revoke_session(session, session_id)
    return Response(status_code=204)
