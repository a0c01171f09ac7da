"""`teleai serve`: the HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from interfaces.cli.common import app


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (each with its own database pool).", min=1)
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API: native /api/v1, health /healthz and /readyz, docs at /docs."""
    import uvicorn

    uvicorn.run(
        "interfaces.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # Behind a proxy, TELEAI_API_TRUST_FORWARDED_FOR decides the client address instead.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
