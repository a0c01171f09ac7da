"""Who is looking at a page: the API's login sessions, carried in a cookie, and CSRF tokens.

The browser holds the session token of ``POST /api/v1/auth/login`` (the same ``sessions`` row,
idle timeout and revocation as the API) in the cookie ``teleai_session``: ``HttpOnly`` (no
script can read it, so an injected script cannot steal it), ``SameSite=Lax`` (other sites'
POSTs do not carry it), ``Secure`` when the page was served over TLS. A page's database work is
done exactly as the API does it: the raw token is handed to the database, which derives the
acting user from it, so row-level security applies (:func:`interfaces.api.deps.unit`).

CSRF: every form and every script request that changes something carries a token, checked on
each POST. A signed-in page's token is an HMAC of the session token (so it is per session,
changes when the session does, and reveals nothing of the token); the login form, which has no
session yet, uses a random token in a cookie of its own (double submit). A POST whose
``Origin`` names another site is refused as well.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.responses import Response

from interfaces.api.deps import Caller, credential_from, resolve, unit
from interfaces.api.errors import ApiError
from interfaces.api.settings import get_api_settings

SESSION_COOKIE: Final = "teleai_session"
LOGIN_CSRF_COOKIE: Final = "teleai_login_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
_CSRF_CONTEXT: Final = b"teleai-web-csrf-v1"


class LoginRequired(Exception):
    """Raised when a page needs a signed-in user and the request has no live session."""


class CsrfRejected(Exception):
    """Raised when a POST lacks the page's CSRF token or comes from another origin."""


def _forwarded(request: Request, name: str) -> str | None:
    """A proxy's ``X-Forwarded-*`` header, only where the proxy is trusted
    (``TELEAI_API_TRUST_FORWARDED_FOR``, the setting that trusts its client address)."""
    if not get_api_settings().trust_forwarded_for:
        return None
    value = request.headers.get(name, "").split(",")[0].strip()
    return value or None


def is_tls(request: Request) -> bool:
    """Served over TLS: directly, or by a trusted proxy that says so (X-Forwarded-Proto)."""
    return (_forwarded(request, "x-forwarded-proto") or request.url.scheme) == "https"


def own_origin(request: Request) -> str:
    """The origin the browser sees this site at (scheme and host, as a trusted proxy says)."""
    host = _forwarded(request, "x-forwarded-host") or request.headers.get("host", "")
    return f"{'https' if is_tls(request) else 'http'}://{host}"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    """A browser-session cookie (no Max-Age: closing the browser drops it; the database ends
    the session itself after its lifetime or idle time)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_tls(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_tls(request)
    )


def session_token(request: Request) -> str | None:
    """The cookie's token when it is well formed (the API's rules for a credential)."""
    return credential_from(request.cookies.get(SESSION_COOKIE))


def csrf_token(credential: str) -> str:
    """The CSRF token of the session whose raw token is ``credential``."""
    return hmac.new(credential.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def same_origin(request: Request) -> bool:
    """False only when the browser said the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # "null" comes from privacy-sensitive contexts; the token check still applies.
        return True
    return origin == own_origin(request)


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse the POST unless it carries ``expected`` (header, or the form field)."""
    if not same_origin(request):
        raise CsrfRejected
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfRejected


def _live(request: Request) -> Caller | None:
    token = session_token(request)
    if token is None:
        return None
    found = resolve(token)
    # The cookie holds login sessions only: an API key pasted into it is not a browser login.
    if found is None or found.kind != "session":
        return None
    return found


def _with_unit(who: Caller) -> Iterator[Caller]:
    with unit(who) as session:
        yield dataclasses.replace(who, session=session)


def page_user(request: Request) -> Iterator[Caller]:
    """Dependency of pages: the signed-in user acting in a unit of work (committed after the
    handler, before the response), else a redirect to ``/login``."""
    who = _live(request)
    if who is None:
        raise LoginRequired
    request.state.caller = who
    yield from _with_unit(who)


def script_user(request: Request) -> Iterator[Caller]:
    """Dependency of the endpoints scripts and media elements call: 401, never a redirect."""
    who = _live(request)
    if who is None:
        raise ApiError(401, "not signed in (or the session ended): sign in again")
    request.state.caller = who
    yield from _with_unit(who)


def stream_user(request: Request) -> Caller:
    """Dependency of long streams: the signed-in user without a transaction held open."""
    who = _live(request)
    if who is None:
        raise ApiError(401, "not signed in (or the session ended): sign in again")
    request.state.caller = who
    return who


async def page_post(request: Request) -> None:
    """Dependency of every signed-in POST: the session's CSRF token must come with it."""
    token = session_token(request)
    if token is None:
        raise LoginRequired
    await check_csrf(request, csrf_token(token))


PageUser = Annotated[Caller, Depends(page_user, scope="function")]
ScriptUser = Annotated[Caller, Depends(script_user, scope="function")]
StreamUser = Annotated[Caller, Depends(stream_user)]
CsrfChecked = Depends(page_post)
