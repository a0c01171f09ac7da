"""``teleai watch DIR``: the drop folder. The logic lives in :mod:`interfaces.dropfolder`; this
wires it to PostgreSQL and Celery, the signals and the observer."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Collection
from pathlib import Path
from types import FrameType
from typing import Annotated

import structlog
import typer

from interfaces import dropfolder
from interfaces.cli.common import EXIT_FILE_FAILED, app, check_services, die, uow
from interfaces.dropfolder import RowState
from pipeline.settings import get_settings
from workers.submit import SubmitResult, submit


class DatabaseBackend:
    """Submits through the same path as ``teleai ingest`` and reads statuses from the rows."""

    def __init__(self, owner_id: uuid.UUID) -> None:
        self.owner_id = owner_id

    def submit(self, path: Path, *, force: bool = False) -> SubmitResult:
        return submit(path, owner_id=self.owner_id, force=force)

    def supersede(self, file_id: str) -> str | None:
        from pipeline import jobs

        with uow() as session:
            previous = jobs.supersede(session, uuid.UUID(file_id))
        return None if previous is None else previous.value

    def statuses(self, file_ids: Collection[str]) -> dict[str, RowState]:
        from pipeline import jobs

        with uow() as session:
            found = jobs.states(session, [uuid.UUID(i) for i in file_ids])
        return {str(i): RowState(st.status, st.error_message) for i, st in found.items()}


@app.command()
def watch(
    directory: Annotated[
        Path,
        typer.Argument(help="The drop folder.", exists=True, file_okay=False, dir_okay=True),
    ],
    user: Annotated[
        str | None, typer.Option(help="Owner (username or email); default: local operator.")
    ] = None,
    poll: Annotated[
        bool,
        typer.Option("--poll", help="Poll the folder (network file systems) instead of inotify."),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between looks at files and job statuses.")
    ] = 0.5,
    settle: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds a file's size and mtime must stay the same before it is taken "
            "(longer than the pauses of the slowest writer that keeps the file open).",
        ),
    ] = dropfolder.SETTLE_SECONDS,
    closed_settle: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds instead, once the writer closed the file or renamed it into place "
            "(inotify; --poll sees renames only).",
        ),
    ] = dropfolder.CLOSED_SETTLE_SECONDS,
    once: Annotated[
        bool,
        typer.Option("--once", help="Process what is there, wait for it to finish, then exit."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.0, help="With --once: give up after N seconds (0: never).")
    ] = 0.0,
) -> None:
    """Ingest every audio file dropped into DIRECTORY; move it to processed/ or failed/."""
    from interfaces.cli.files import resolve_owner
    from pipeline.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    log = structlog.get_logger("teleai.watch")
    check_services()
    root = directory.resolve()
    owner_id = resolve_owner(user)
    try:
        lock = dropfolder.acquire_lock(root)
    except dropfolder.AlreadyWatched as error:
        die(str(error))
    except OSError as error:
        die(f"cannot use {root} as a drop folder: {error}")

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    folder = dropfolder.DropFolder(
        root, DatabaseBackend(owner_id), settle=settle, closed_settle=closed_settle
    )
    observer = None
    log.info(
        "watching",
        directory=str(root),
        mode="once" if once else ("poll" if poll else "notify"),
        settle=settle,
        closed_settle=closed_settle,
        interval=interval,
    )
    try:
        try:
            folder.prepare()
        except OSError as error:
            die(f"cannot use {root} as a drop folder: {error}")
        if not once:  # before the first scan, so nothing dropped in between is missed
            observer = dropfolder.start_observer(folder, poll=poll, interval=interval)
        outcome = dropfolder.run(
            folder, stop=stop, interval=interval, once=once, timeout=timeout if once else 0.0
        )
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        lock.close()
    log.info(
        "stopped",
        outcome=str(outcome),
        processed=folder.processed,
        failed=folder.failed,
        superseded=folder.superseded,
        unfinished=folder.waiting,
    )
    if once and (folder.failed or outcome is dropfolder.Outcome.TIMED_OUT):
        raise typer.Exit(EXIT_FILE_FAILED)
