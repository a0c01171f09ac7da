"""``python -m bench`` (``make bench``): the same command as ``teleai bench``."""

from __future__ import annotations

import typer

from interfaces.cli.bench import bench

if __name__ == "__main__":
    typer.run(bench)
