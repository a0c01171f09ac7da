"""Every error the API returns is a JSON body ``{"error": "<message>"}``, never a stack trace.

The shape is AssemblyAI's (its SDK reads ``error``), so the compatible endpoints and the native
ones agree. Validation errors add ``details`` (where and what, without echoing the input back),
unexpected exceptions are logged with their traceback on the server and answered with a 500 that
says only that something went wrong and the request id to quote.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """Raised by handlers to answer with ``status`` and a message a client can act on."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def not_found(what: str = "file") -> ApiError:
    """The one 404: the same for an id that does not exist and one the caller may not see."""
    return ApiError(404, f"{what} not found")


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, **extra}


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    # The input itself is left out: it may be large, binary or a secret.
    return [
        {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", ""))}
        for item in error.errors()
    ]


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.message), status_code=exc.status, headers=exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return JSONResponse(
        error_body(message), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    if any(d["loc"][:1] == ["body"] and "JSON" in d["msg"] for d in details):
        message = "the request body is not valid JSON"
    else:
        message = "invalid request: " + "; ".join(
            f"{'.'.join(d['loc'][1:]) or d['loc'][0]}: {d['msg']}" for d in details[:5]
        )
    return JSONResponse(error_body(message, details=details), status_code=400)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    # A lost connection or a database that does not answer: the request may be retried.
    log.warning("api_database_unavailable", path=request.url.path, error=str(exc)[:200])
    return JSONResponse(
        error_body("the database is unavailable; try again shortly"),
        status_code=503,
        headers={"Retry-After": "2"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = str(uuid.uuid4())
    log.error(
        "api_unhandled_error",
        request_id=request_id,
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    return JSONResponse(
        error_body(f"internal error; quote request id {request_id}", request_id=request_id),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(Exception, _unexpected)
