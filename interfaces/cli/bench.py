"""``teleai bench``: the benchmarks in ``bench/`` (same as ``python -m bench`` / ``make bench``).

The benchmark package lives in the source checkout (it writes ``bench/results/`` and caches its
corpus under ``var/bench/``), so it is imported only when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from interfaces.cli.common import EXIT_USAGE, app, die, out

_CHECKOUT = Path(__file__).resolve().parents[2]


def _import_bench_run() -> ModuleType:
    """``bench.run``, from the checkout this package was installed from (editable install)."""
    if not (_CHECKOUT / "bench" / "run.py").is_file():
        die("`teleai bench` needs the source checkout (bench/ next to pipeline/); run it there")
    if str(_CHECKOUT) not in sys.path:
        sys.path.insert(0, str(_CHECKOUT))
    import bench.run

    return bench.run


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option(help="Small sizes (10 s and 60 s audio, 1/100 database): smoke runs.")
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: overhead,engines,rtf,quality,scaling,ingest,memory,longfile,db;"
            " longfile4h (the four-hour file: hours) runs only when named."
        ),
    ] = None,
    results_dir: Annotated[
        Path | None, typer.Option(help="Where to write <date>-<host>.md/.json (bench/results).")
    ] = None,
    max_load: Annotated[
        float | None,
        typer.Option(help="First wait (polling every 60 s) until the 1-min load is below this."),
    ] = None,
    max_wait_minutes: Annotated[
        float, typer.Option(help="Give up waiting for a quiet machine after this long.")
    ] = 40.0,
    db_scale: Annotated[
        float | None,
        typer.Option(help="Database size as a fraction of 1M files (default 1, --quick 0.01)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="cpu_threads for every engine (default: all cores).")
    ] = None,
    keep_db: Annotated[
        str | None,
        typer.Option(
            help="db/api: fill the database of this name once and reuse it on later runs "
            "(default: TELEAI_BENCH_KEEP_DB; without either a fresh one, dropped after)."
        ),
    ] = None,
) -> None:
    """Run the benchmarks: speed ratios side by side, plans, memory, quality; write results."""
    from rich.console import Console

    run = _import_bench_run()
    names = tuple(n.strip() for n in (only or "").split(",") if n.strip())
    try:
        run.selected(names)
    except ValueError as error:
        die(str(error), EXIT_USAGE)
    options = run.Options(
        quick=quick,
        only=names,
        results_dir=results_dir or run.RESULTS_DIR,
        max_load=max_load,
        max_wait_minutes=max_wait_minutes,
        db_scale=db_scale,
        threads=threads,
        keep_db=keep_db,
    )
    report, _, _ = run.run_benchmarks(options, Console(width=out.width))
    if any(section.error for section in report.sections):
        raise typer.Exit(1)
