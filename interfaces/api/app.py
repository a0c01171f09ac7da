"""Build the ASGI app: routers, the JSON error shape, the body-size limit, offline docs.

``create_app()`` is what ``teleai serve`` runs (``uvicorn --factory``). The OpenAPI page at
``/docs`` is served with Swagger UI files from the ``fastapi-offline`` package, so it works on a
machine without internet (FastAPI's own page loads them from a CDN).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from interfaces.api import errors
from interfaces.api.bodylimit import BodySizeLimit
from interfaces.api.settings import get_api_settings

DESCRIPTION = """\
Upload call recordings, follow their processing live, read transcripts, analyses and exports.

Authenticate with `Authorization: Bearer <token>`: a session token from `POST /api/v1/auth/login`
or an API key (`teleai keys create`, or `POST /api/v1/keys`). Errors are JSON: `{"error": "..."}`.
"""


def routers() -> list[APIRouter]:
    """Every router of the app; add new areas here (imports are local: nothing at import time)."""
    from interfaces.api.routes.admin import router as admin
    from interfaces.api.routes.auth import router as auth
    from interfaces.api.routes.files import router as files
    from interfaces.api.routes.health import router as health
    from interfaces.api.routes.keys import router as keys
    from interfaces.api.routes.live import router as live

    found = [health, auth, keys, files, live, admin]
    found.extend(_optional_routers())
    return found


def _optional_routers() -> list[APIRouter]:
    # Areas other modules add (compatible endpoints, webhooks) register here when present.
    import importlib

    extra: list[APIRouter] = []
    for name in ("assemblyai", "openai", "webhooks"):
        try:
            module = importlib.import_module(f"interfaces.api.routes.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"interfaces.api.routes.{name}":
                raise
            continue
        extra.append(module.router)
    return extra


def create_app() -> FastAPI:
    """The TeleAI Pro HTTP API."""
    app = FastAPIOffline(
        title="TeleAI Pro API",
        version="1",
        description=DESCRIPTION,
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=get_api_settings().max_upload_bytes)
    for router in routers():
        app.include_router(router)
    from interfaces.web import mount as mount_web  # the web app's pages and static files

    mount_web(app)
    return app


__all__ = ["FastAPI", "create_app"]
