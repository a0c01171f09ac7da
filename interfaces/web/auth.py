"""Sign in and out. The login itself is the API's (:func:`interfaces.api.routes.auth.login`):
the database checks the password, failures are throttled per account and address, and a new
session is always created, so a session id planted in the browser before signing in is never
the one that gets signed in (session fixation). A live session presented at login is revoked.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from db import auth_sessions
from interfaces.api.deps import resolve, unit
from interfaces.api.errors import ApiError
from interfaces.api.routes.auth import Login
from interfaces.api.routes.auth import login as api_login
from interfaces.web.render import WebRoute, page
from interfaces.web.session import (
    LOGIN_CSRF_COOKIE,
    CsrfChecked,
    PageUser,
    check_csrf,
    clear_session_cookie,
    is_tls,
    new_login_csrf,
    session_token,
    set_session_cookie,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/files"
    if any(ord(c) < 32 for c in target):
        return "/files"
    return target


def _login_form(
    request: Request, *, next_url: str, message: str | None = None, status: int = 200,
    username: str = "",
) -> Response:  # fmt: skip
    token = new_login_csrf()
    response = page(
        request,
        "login.html",
        {"login_csrf": token, "next": next_url, "message": message, "username": username},
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, path="/login", httponly=True, samesite="strict",
        secure=is_tls(request),
    )  # fmt: skip
    return response


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    token = session_token(request)
    if token is not None and resolve(token) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_form(request, next_url=safe_next(next))


@router.post("/login")
async def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/files",
) -> Response:
    await check_csrf(request, request.cookies.get(LOGIN_CSRF_COOKIE) or "\x00no cookie")
    target = safe_next(next)
    try:
        body = Login(login=username, password=password)
    except ValidationError:
        return _login_form(request, next_url=target, message="Enter a username and a password.",
                           status=400, username=username)  # fmt: skip
    try:
        from starlette.concurrency import run_in_threadpool

        opened = await run_in_threadpool(api_login, body, request)
    except ApiError as error:
        message = "Wrong username or password." if error.status == 401 else error.message
        response = _login_form(request, next_url=target, message=message,
                               status=error.status, username=username)  # fmt: skip
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response
    previous = session_token(request)
    if previous is not None:
        await run_in_threadpool(_revoke, previous)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, opened["token"])
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _revoke(token: str) -> None:
    """End the session of ``token`` if it is still live (the one the browser had before)."""
    who = resolve(token)
    if who is None or who.kind != "session":
        return
    with unit(who) as session:
        auth_sessions.revoke_session(session, who.credential_id)


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, who: PageUser) -> Response:
    auth_sessions.revoke_session(who.session, who.credential_id)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response
