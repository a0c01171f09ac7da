"""`teleai stats`: the processing-queue picture an operator watches while scaling workers."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from interfaces.cli.common import app, check_services, out, uow
from pipeline.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _workers(timeout: float) -> list[dict[str, Any]]:
    """Workers online and their active tasks, from Celery's remote control (inspect)."""
    from workers.app import app as celery_app

    inspector = celery_app.control.inspect(timeout=timeout)
    active = inspector.active() or {}
    return [
        {
            "name": name,
            "active": len(tasks),
            "tasks": sorted({t.get("name", "?") for t in tasks}),
        }
        for name, tasks in sorted(active.items())
    ]


def collect_stats(
    *, inspect_timeout: float = 1.0, session: Session | None = None
) -> dict[str, Any]:
    """One snapshot: the spec's queue query, the metrics collector's numbers, live workers.

    ``session``: read PostgreSQL in that transaction instead of as this process's own login.
    The HTTP API passes the caller's (``teleai_app`` acting with the caller's credential), so
    row-level security decides which files the numbers count (staff roles: every file; soft-
    deleted ones only for admins), not the API process's privileges.
    """
    from db.monitoring import processing_queue
    from interfaces.metrics import PipelineCollector
    from workers.celeryconfig import QUEUES

    settings = get_settings()
    collector = PipelineCollector(
        settings.sqlalchemy_url(), settings.broker_url.get_secret_value(), QUEUES
    )
    families: list[Any]
    if session is None:
        with uow() as own:
            queue_rows = processing_queue(own)
        families = list(collector.collect())
    else:
        queue_rows = processing_queue(session)
        families = list(collector.collect_in(session))
    metrics: dict[str, dict[str, float]] = {}
    for family in families:
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_gcount", "_gsum")):
                continue
            label = ",".join(f"{v}" for v in sample.labels.values()) or "value"
            metrics.setdefault(sample.name, {})[label] = sample.value
    return {
        "processing_queue": [
            {"status": r.status, "count": r.count, "avg_wait_seconds": r.avg_wait_seconds}
            for r in queue_rows
        ],
        "queue_depth": metrics.get("teleai_queue_messages", {}),
        "unacked_messages": metrics.get("teleai_queue_unacked_messages", {}).get("value", 0),
        "files_by_status": metrics.get("teleai_files", {}),
        "unfinished_by_stage": metrics.get("teleai_files_unfinished", {}),
        "queued_audio_seconds": metrics.get("teleai_queued_audio_seconds", {}),
        "finished_last_hour": metrics.get("teleai_files_finished_last_hour", {}),
        "avg_stage_seconds_last_hour": metrics.get("teleai_stage_seconds_avg", {}),
        "sources_up": metrics.get("teleai_up", {}),
        "workers": _workers(inspect_timeout),
    }


def render_stats(stats: dict[str, Any]) -> Group:
    queue = Table("status", "files", "avg wait (s)", title="processing queue")
    for row in stats["processing_queue"]:
        queue.add_row(row["status"], str(row["count"]), f"{row['avg_wait_seconds']:.1f}")
    if not stats["processing_queue"]:
        queue.caption = "nothing pending or processing"

    broker = Table("queue", "messages", "queued audio (s)", title="celery queues (Redis)")
    for name, depth in stats["queue_depth"].items():
        audio = stats["queued_audio_seconds"].get(name, 0.0)
        broker.add_row(name, str(int(depth)), f"{audio:.0f}")
    broker.caption = f"{int(stats['unacked_messages'])} delivered, not yet acknowledged"

    workers = Table("worker", "active tasks", "running", title="workers online")
    for worker in stats["workers"]:
        workers.add_row(worker["name"], str(worker["active"]), ", ".join(worker["tasks"]))
    if not stats["workers"]:
        workers.caption = "no worker answered"

    hour = Table("last hour", "value", title="throughput and stage times")
    for outcome, count in stats["finished_last_hour"].items():
        hour.add_row(outcome, str(int(count)))
    for step in ("validate", "probe", "decode", "transcribe", "analyze"):
        seconds = stats["avg_stage_seconds_last_hour"].get(step)
        if seconds is not None:
            hour.add_row(f"avg {step} (s)", f"{seconds:.2f}")
    return Group(queue, broker, workers, hour)


@app.command()
def stats(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place.")] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between refreshes.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Processing-queue stats: files by status, Celery queue depth, workers, stage times."""
    check_services()
    if as_json:
        typer.echo(json.dumps(collect_stats(), indent=2, default=str))
        return
    if not watch:
        out.print(render_stats(collect_stats()))
        return
    with Live(render_stats(collect_stats()), console=out, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(render_stats(collect_stats()), refresh=True)
        except KeyboardInterrupt:
            pass
