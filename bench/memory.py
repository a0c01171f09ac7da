"""Benchmark 7: resident memory of each worker type, a leak test, and the peak on a long file.

Three workers, one per queue (ingest, transcribe, analyze), one process each. RSS of each pool
child (where the models live) is read after start-up (models loaded), after a warm-up tenth of
the tasks, and after all of them; growth from warm-up to the end is the leak signal (the first
tasks legitimately grow caches). Then the long file goes through, and each child's VmHWM (its
resident high-water mark) is the peak.
"""

from __future__ import annotations

from typing import Any

from bench.context import Context
from bench.results import Section, Table, Target
from bench.services import Pipeline, Worker, completed, pipeline_services, start_worker, stop_worker
from workers.process import ALL_QUEUES

QUEUES = tuple(ALL_QUEUES.split(","))
LEAK_BOUND_MIB = 25.0  # growth after warm-up beyond this (or 5 %) is a finding


def _rss(workers: dict[str, Worker]) -> dict[str, dict[str, float]]:
    return {
        q: {"main": w.main_rss_mib(), "child": max(w.child_rss_mib() or [float("nan")])}
        for q, w in workers.items()
    }


def _submit_and_wait(pipe: Pipeline, ctx: Context, count: int) -> None:
    clip = ctx.file("clip").path
    ids = [pipe.submit(clip) for _ in range(count)]
    pipe.wait(ids, completed, timeout=3600, poll=0.25)


def run(ctx: Context) -> Section:
    section = Section("memory", "7. Memory: worker RSS, leak test, peak on the long file")
    tasks = ctx.sizes.memory_tasks
    warm = max(1, tasks // 10)
    log_dir = ctx.services.work_dir / "logs"
    with pipeline_services(ctx.services, "memory") as pipe:
        env = pipe.env(whisper_cpu_threads=ctx.threads)
        workers: dict[str, Worker] = {}
        try:
            for queue in QUEUES:
                workers[queue] = start_worker(
                    env, log_dir, queues=queue, concurrency=1, name=f"memory-{queue}"
                )
            loaded = _rss(workers)
            _submit_and_wait(pipe, ctx, warm)
            warmed = _rss(workers)
            _submit_and_wait(pipe, ctx, tasks - warm)
            finished = _rss(workers)
            peak_before = {q: max(w.child_peak_rss_mib()) for q, w in workers.items()}
            long_id = pipe.submit(ctx.file(ctx.sizes.long_file).path)
            pipe.wait([long_id], completed, timeout=3600, poll=0.25)
            peak_after = {q: max(w.child_peak_rss_mib()) for q, w in workers.items()}
        finally:
            for worker in workers.values():
                stop_worker(worker)
    table = Table(
        f"Pool-child RSS (MiB), {tasks} tasks of the 5 s clip per worker",
        [
            "worker",
            "main process",
            "after model load",
            f"after {warm} tasks",
            f"after {tasks} tasks",
            "growth after warm-up",
            "KiB per task",
            "leak?",
        ],
    )
    data: dict[str, Any] = {}
    for q in QUEUES:
        growth = finished[q]["child"] - warmed[q]["child"]
        bound = max(LEAK_BOUND_MIB, 0.05 * warmed[q]["child"])
        leak = growth > bound
        per_task = 1024 * growth / max(1, tasks - warm)
        table.add(
            q,
            finished[q]["main"],
            loaded[q]["child"],
            warmed[q]["child"],
            finished[q]["child"],
            growth,
            per_task,
            leak,
        )
        section.targets.append(
            Target(
                f"no leak, {q} worker",
                f"growth after warm-up ≤ {bound:.0f} MiB",
                f"{growth:+.1f} MiB over {tasks - warm} tasks",
                not leak,
                "" if not leak else f"{per_task:.0f} KiB per task: investigate",
            )
        )
        data[q] = {"loaded": loaded[q], "warmed": warmed[q], "finished": finished[q]}
    section.tables.append(table)
    peak = Table(
        f"Peak RSS (VmHWM, MiB) around the {ctx.sizes.long_file} file",
        ["worker", "peak before", "peak after the long file", "added by the long file"],
    )
    for q in QUEUES:
        peak.add(q, peak_before[q], peak_after[q], peak_after[q] - peak_before[q])
    section.tables.append(peak)
    section.notes.append(
        "The same clip repeats, so this tests per-task allocations, not growth of vocabularies "
        "(spaCy's StringStore grows with new words by design)."
    )
    section.data = {"rss": data, "peak_before": peak_before, "peak_after": peak_after}
    return section
