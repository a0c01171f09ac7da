"""structlog set-up shared by workers and the CLI: one event per line, console or JSON.

Nothing secret may reach a log line, so every event passes two processors before it is
rendered, in both modes: exceptions are turned into plain text here (a traceback without local
variables: structlog's default console formatter, Rich, prints every frame's locals, and those
hold connection strings), then every string, the traceback included, goes through
:func:`pipeline.redact.redact`. Console lines also get :func:`pipeline.redact.clean`, because a
user's file name can carry terminal escape sequences; JSON already escapes them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from pipeline.redact import clean, redact_value


def _redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    return {key: redact_value(value) for key, value in event_dict.items()}


def _clean(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    # The traceback keeps its line breaks; one-line values must stay on one line.
    return {
        key: clean(value, keep_newlines=key in {"exception", "stack"})
        if isinstance(value, str)
        else value
        for key, value in event_dict.items()
    }


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    """Route structlog and stdlib logging (Celery, SQLAlchemy) through one renderer on stderr."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    safe: list[structlog.typing.Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # plain text, no locals: see the docstring
        _redact,
    ]
    if not json:
        safe.append(_clean)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *safe,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
