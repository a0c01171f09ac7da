"""The ``teleai`` command: migrations, workers, ingest, inspection, operations.

Errors print one clear line on stderr and exit with a documented code (README "Exit codes"):
0 ok, 1 a file failed, 2 usage or input error, 3 a service (PostgreSQL/Redis) unavailable.
Each sub-module registers its commands on :data:`interfaces.cli.common.app`.
"""

from __future__ import annotations

import sys

# Importing a module registers its commands.
from interfaces.cli import (  # noqa: F401
    admin,
    backup,
    bench,
    files,
    inspect,
    keys,
    metrics,
    ops,
    serve,
    stats,
    watch,
)
from interfaces.cli.common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    from interfaces.cli.argv import expand_multi_value

    try:
        app(args=expand_multi_value(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
