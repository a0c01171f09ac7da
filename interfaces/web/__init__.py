"""The web app: server-rendered pages over the HTTP API's own functions, in the API process.

Pages are Jinja2 templates with a little plain JavaScript (uploads with progress, live status,
the player that follows the transcript, the live dashboard); the one chart library, uPlot, is
vendored from npm under ``static/vendor`` (``scripts/vendor-web.sh``), so nothing is fetched
at run time and the app works offline. Sign-in uses the API's sessions in an HttpOnly cookie
(:mod:`interfaces.web.session`); every database read acts as the signed-in user under
row-level security, exactly as the API does. See docs/web.md.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse


def router() -> APIRouter:
    """Every page; order matters where paths overlap (``/files/rows`` before ``/files/{id}``)."""
    from interfaces.web import admin, auth, detail, files, queue, search
    from interfaces.web.render import WebRoute

    top = APIRouter(route_class=WebRoute, include_in_schema=False)

    @top.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/files", status_code=303)

    for part in (auth, files, detail, search, queue, admin):
        top.include_router(part.router)
    return top


def mount(app: FastAPI) -> None:
    """Add the pages and their static files to the API app (``create_app`` calls this)."""
    from interfaces.web.render import STATIC_DIR, StaticAssets

    app.include_router(router())
    app.mount("/static", StaticAssets(directory=STATIC_DIR), name="static")
