"""A memory budget for one stage of one file, enforced inside the task.

Celery's ``worker_max_memory_per_child`` replaces a pool child only *after* its task finished,
so a task that keeps growing (a decoder fed a crafted file, an engine on an input it chokes on)
takes the host down before that rule ever acts. :func:`memory_budget` bounds the task itself:

- a watchdog thread reads the process's resident set (``/proc/self/statm``) every
  :data:`POLL_SECONDS`; once it has grown by more than the budget since the block began, the
  watchdog raises :class:`MemoryBudgetExceeded` *in the task's thread* (CPython's
  ``PyThreadState_SetAsyncExc``, the mechanism behind Celery's own soft time limit, minus the
  signal). The exception arrives at the next Python bytecode, so a loop of decoding or
  transcription stops within one iteration;
- the address-space soft limit (``RLIMIT_AS``) is lowered for the block to what the process
  had plus :data:`ADDRESS_SPACE_FACTOR` times the budget (at least :data:`MIN_HEADROOM_MIB`),
  so one giant allocation that no bytecode boundary interrupts fails with ``MemoryError``
  instead of being granted. The factor is generous because address space is reserved long
  before it is touched (thread stacks, malloc arenas, ONNX Runtime's first session);
- both, and a ``MemoryError`` from anywhere in the block, leave as one
  :class:`~pipeline.errors.PermanentError` saying how much memory the file needed: the file is
  ``failed`` with that message and the pool child lives on.

The budget is growth, not an absolute size, so one setting fits the ingest worker (about 100 MiB
at rest) and the analysis worker (about 700 MiB with its models) alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import threading
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import PermanentError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
ADDRESS_SPACE_FACTOR = 4
MIN_HEADROOM_MIB = 4096
_MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MemoryBudgetExceeded(PermanentError):
    """Raised when a task's process grew past its memory budget (see module docstring)."""


class _OverBudget(BaseException):
    """What the watchdog raises in the task's thread: a ``BaseException``, so library code
    with a broad ``except Exception`` cannot swallow it; :func:`memory_budget` turns it into
    :class:`MemoryBudgetExceeded`. Raised asynchronously, hence no arguments."""


_STATM = Path("/proc/self/statm")


def _statm(field: int) -> int | None:
    try:
        return int(_STATM.read_bytes().split()[field]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def resident_bytes() -> int | None:
    """This process's resident set size now; None where ``/proc`` is missing (not Linux)."""
    return _statm(1)


def _address_space_bytes() -> int | None:
    return _statm(0)


def _raise_in(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Schedule ``exc_type`` in thread ``thread_id`` (None clears a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None
    )


@contextlib.contextmanager
def _address_space_cap(headroom: int) -> Iterator[None]:
    """Lower the soft ``RLIMIT_AS`` to the current size plus ``headroom`` for the block."""
    current = _address_space_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if current is None:
        yield
        return
    cap = current + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield  # already tighter than ours
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _Watchdog:
    """Polls the resident set and interrupts ``thread_id`` once it grew past ``budget``."""

    def __init__(self, budget: int, thread_id: int) -> None:
        self.budget = budget
        self.thread_id = thread_id
        self.start_rss = resident_bytes() or 0
        self.peak_rss = self.start_rss
        self.tripped = False
        self._lock = threading.Lock()
        self._active = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-budget", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            rss = resident_bytes()
            if rss is None:
                return
            self.peak_rss = max(self.peak_rss, rss)
            if rss - self.start_rss > self.budget:
                with self._lock:
                    if self._active and not self.tripped:
                        self.tripped = True
                        _raise_in(self.thread_id, _OverBudget)
                return

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._active = False
            if self.tripped:
                _raise_in(self.thread_id, None)  # drop it if it has not arrived yet
        self._stop.set()
        self._thread.join(timeout=2)


class Budget:
    """The running guard; :meth:`check` is the cooperative half of the watchdog, for loops that
    call into code which might catch and drop the interrupt."""

    def __init__(self, watchdog: _Watchdog | None) -> None:
        self._watchdog = watchdog

    def check(self) -> None:
        if self._watchdog is not None and self._watchdog.tripped:
            raise _OverBudget


@contextlib.contextmanager
def memory_budget(budget_mib: int, *, what: str = "processing the file") -> Iterator[Budget]:
    """Run the block with at most ``budget_mib`` MiB of growth (see module docstring); 0 turns
    the guard off. Raises :class:`MemoryBudgetExceeded` with a message for the user."""
    if budget_mib <= 0 or resident_bytes() is None:
        yield Budget(None)
        return
    budget = budget_mib * _MIB
    headroom = max(ADDRESS_SPACE_FACTOR * budget, MIN_HEADROOM_MIB * _MIB)
    watchdog = _Watchdog(budget, threading.get_ident())
    try:
        with _address_space_cap(headroom), watchdog:
            yield Budget(watchdog)
    except (_OverBudget, MemoryError) as err:
        grown = (max(watchdog.peak_rss, resident_bytes() or 0) - watchdog.start_rss) / _MIB
        log.warning("memory budget of %d MiB exceeded while %s (%r)", budget_mib, what, err)
        raise MemoryBudgetExceeded(
            f"{what} needed more than its memory budget of {budget_mib} MiB "
            f"(grew by {grown:.0f} MiB before it was stopped); "
            "the file is too large or too unusual to process safely"
        ) from err
