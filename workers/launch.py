"""Start a Celery worker through Celery's own ``app.Worker`` without the ``celery`` command.

``celery -A workers.app worker`` first builds the whole ``celery`` command line: click, every
``celery.commands`` plug-in installed (Flower's web app with tornado, click-repl with
prompt_toolkit) and each sub-command's module, about 0.46 s of imports a worker never uses.
On the two-core machine that was 0.3-0.5 s of the 3.5-s cold start (bench ``coldstart``). The
worker itself is the same object the command makes (``celery.apps.worker.Worker``: the same
bootsteps, pool, signal handlers and ``setup_logging`` hook), given the options our launchers
use; anything else is the worker's settings in :mod:`workers.celeryconfig`.

``python -m workers -Q ingest,transcribe -c 2`` and ``teleai worker`` start it this way.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def parser() -> argparse.ArgumentParser:
    """The ``celery worker`` options the project's launchers pass, with the same spellings."""
    p = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    p.add_argument("-Q", "--queues", default=None, help="Comma-separated queues (default: all).")
    p.add_argument("-c", "--concurrency", type=int, default=None, help="Pool processes.")
    p.add_argument("-l", "--loglevel", default="INFO", help="Log level.")
    p.add_argument("-n", "--hostname", default=None, help="Node name; %%h is the host name.")
    p.add_argument("-B", "--beat", action="store_true", help="Embed celery beat.")
    p.add_argument("-s", "--schedule", default=None, help="Beat's schedule file.")
    p.add_argument("--without-gossip", action="store_true")
    p.add_argument("--without-mingle", action="store_true")
    p.add_argument("--without-heartbeat", action="store_true")
    return p


def worker_options(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``argv`` as the keyword arguments of ``app.Worker`` (what ``celery worker`` gives it)."""
    from celery.utils.log import mlevel
    from celery.utils.nodenames import default_nodename, host_format

    args = parser().parse_args(argv)
    options: dict[str, Any] = {
        "hostname": host_format(default_nodename(args.hostname)),
        "loglevel": mlevel(args.loglevel.upper()),
        "without_gossip": args.without_gossip,
        "without_mingle": args.without_mingle,
        "without_heartbeat": args.without_heartbeat,
    }
    if args.queues:
        options["queues"] = [q.strip() for q in args.queues.split(",") if q.strip()]
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    if args.beat:
        options["beat"] = True
    if args.schedule:
        options["schedule_filename"] = args.schedule
    return options


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the worker until it stops, return its exit code."""
    from workers.app import app

    worker = app.Worker(**worker_options(argv))
    worker.start()
    return int(worker.exitcode or 0)
