"""Pages out: the templates, the security headers, and errors as pages instead of JSON.

Templates are Jinja2 with autoescaping on, so every value a user or a recording controls (file
names, transcripts, usernames) reaches the page as text. Scripts never run inline: the Content
Security Policy allows only this origin's own files, so even markup that slipped through could
not execute. Data a script needs travels in ``<script type="application/json">`` blocks written
with Jinja's ``tojson`` (which escapes ``<``, ``>`` and ``&``).

:class:`WebRoute` is the route class of every web page: the errors the shared API functions
raise (:class:`interfaces.api.errors.ApiError`, validation errors) become an HTML page with the
same status, a missing session becomes a redirect to ``/login``, and every answer gets the
security headers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.requests import Request

from interfaces.api.deps import Caller
from interfaces.api.errors import ApiError
from interfaces.web.session import (
    CSRF_FIELD,
    CsrfRejected,
    LoginRequired,
    csrf_token,
    session_token,
)

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
TEMPLATES: Final = Jinja2Templates(directory=HERE / "templates")

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def marked(snippet: str, start: str = "**", stop: str = "**") -> Markup:
    """A search snippet with its ``**hit**`` markers as ``<mark>``; everything else escaped."""
    out: list[str] = []
    rest = snippet
    while True:
        head, found, tail = rest.partition(start)
        out.append(str(escape(head)))
        if not found:
            break
        hit, closed, rest = tail.partition(stop)
        out.append(f"<mark>{escape(hit)}</mark>" if closed else str(escape(start + hit)))
        if not closed:
            break
    return Markup("".join(out))  # noqa: S704 - built from escaped parts only


def clock(seconds: Any) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour) for a duration or a position."""
    if seconds is None:
        return "–"
    total = round(float(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def when(value: dt.datetime | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(value: int | Decimal | None) -> str:
    if value is None:
        return "–"
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"


TEMPLATES.env.filters.update(marked=marked, clock=clock, when=when, size=size)


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    who: Caller | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``template`` with the signed-in user and the session's CSRF token."""
    token = session_token(request) if who is not None else None
    values: dict[str, Any] = {
        "who": who,
        "csrf": csrf_token(token) if token else None,
        "csrf_field": CSRF_FIELD,
        "nav": request.url.path.strip("/").split("/")[0],
        **(context or {}),
    }
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    who = getattr(request.state, "caller", None)
    return page(
        request, "error.html", {"status": status, "message": message}, who=who, status_code=status
    )


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" not in accept and (
        "application/json" in accept or "text/event-stream" in accept
    )


class WebRoute(APIRoute):
    """Route class of the web pages: HTML errors, the login redirect, security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except LoginRequired:
                response = to_login(request)
            except CsrfRejected:
                response = _failure(request, 403, "the form was too old or came from elsewhere; "
                                    "reload the page and try again")  # fmt: skip
            except ApiError as error:
                response = _failure(request, error.status, error.message, error.headers)
            except RequestValidationError as error:
                in_path = any(item.get("loc", ("",))[0] == "path" for item in error.errors())
                response = (
                    _failure(request, 404, "not found")
                    if in_path
                    else _failure(request, 400, "the request was not understood")
                )
            for name, value in SECURITY_HEADERS.items():
                if name == "Cache-Control" and name.lower() in response.headers:
                    continue
                response.headers.setdefault(name, value)
            return response

        return handler


def _failure(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    response: Response
    if _wants_json(request):
        response = JSONResponse({"error": message}, status_code=status)
    else:
        response = error_page(request, status, message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class StaticAssets(StaticFiles):
    """The app's own scripts, styles and the vendored chart library, never sniffed as
    something else, cached briefly (they change with a deploy)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "public, max-age=300"
        return response
