"""``teleai metrics``: the Prometheus endpoint (what it serves: :mod:`interfaces.metrics`)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from interfaces.cli.common import app, die, out
from pipeline.settings import get_settings


@app.command()
def metrics(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")] = 9808,
    host: Annotated[
        str, typer.Option(help="Address to bind (0.0.0.0 to be scraped from other hosts).")
    ] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics (files, stages, queues, timings) on /metrics until stopped."""
    from interfaces.metrics import build_registry, serve
    from pipeline.logs import configure_logging
    from workers.celeryconfig import QUEUES

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    registry = build_registry(
        settings.sqlalchemy_url(), settings.broker_url.get_secret_value(), QUEUES
    )
    try:
        server = serve(registry, host=host, port=port)
    except OSError as error:
        die(f"cannot listen on {host}:{port}: {error.strerror or error}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `docker stop` ends it cleanly
    out.print(f"serving metrics on http://{host}:{port}/metrics", highlight=False)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
