"""Liveness and readiness: what a load balancer and ``docker compose`` health checks ask."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from interfaces.api.deps import app_engine
from interfaces.api.limits import redis_client

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up (no dependencies checked)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="PostgreSQL and Redis answer", response_model=None)
def readyz() -> JSONResponse | dict[str, Any]:
    checks: dict[str, str] = {}
    try:
        with app_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["postgresql"] = "ok"
    except Exception as error:  # any failure means "not ready", said plainly
        checks["postgresql"] = f"unavailable: {type(error).__name__}"
    try:
        redis_client().ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"unavailable: {type(error).__name__}"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    return JSONResponse(
        {"status": "not ready", "error": "a dependency is unavailable", "checks": checks},
        status_code=503,
    )
