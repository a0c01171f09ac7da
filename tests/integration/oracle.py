"""The "lose nothing" oracle: what must hold for a set of submitted files, whatever happened.

Fault tests submit files, break things while they run, wait for the rows to settle, then call
:func:`check`. It reads the database directly (its own connection, plain SQL, not the
project's data-access layer), so a bug there cannot hide a broken promise:

- every file is ``completed``, or ``failed`` with a short, readable ``error_message``; none is
  missing, ``pending`` or ``processing`` (that would be a lost file);
- a completed file has its data: exactly one latest transcription, ``1 + re-transcriptions``
  versions numbered 1..n (a redelivered message must not add one), exactly one analysis of each
  built-in type on the latest version, a completion time, and its managed copy on disk with the
  recorded size;
- no file, completed or not, has more versions than it may have, more than one latest version,
  or a duplicate analysis on any version.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from db.engine import libpq_url

# Written out, not imported: the oracle must not trust the code it checks. Keep it equal to
# pipeline.analysis.records.ANALYSIS_TYPES (the analyses every file gets).
ANALYSIS_TYPES = frozenset(
    {"sentiment", "summary", "keywords", "entities", "conversation", "chapters", "topics"}
)
UNFINISHED = frozenset({"pending", "processing"})
MAX_MESSAGE_CHARS = 1000  # a reason a person reads, not a dump


@dataclass(frozen=True)
class Counts:
    """What the oracle saw, for the figures a test reports."""

    files: int
    completed: int
    failed: int
    versions: int
    analyses: int
    failures: dict[str, str] = field(default_factory=dict)  # file id -> error_message

    @property
    def lost(self) -> int:
        """Files neither completed nor failed: always 0 once :func:`check` returned."""
        return self.files - self.completed - self.failed

    def outcome(self) -> dict[str, int]:
        """The three figures every fault test reports: files lost, failed, and transcription
        versions beyond one per file (a stage that ran twice)."""
        return {
            "lost": self.lost,
            "failed": self.failed,
            "duplicates": self.versions - self.files,
        }


@dataclass
class _Version:
    number: int
    is_latest: bool
    text_length: int
    analyses: list[str]


def _rows(database_url: str, ids: list[str]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(libpq_url(database_url), connect_timeout=10) as conn:
        files = conn.execute(
            "SELECT id::text, status, stage, error_message, file_path, file_size,"
            " processing_completed_at IS NOT NULL"
            " FROM audio_files WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
        versions = conn.execute(
            "SELECT t.audio_file_id::text, t.version, t.is_latest, length(t.transcription_text),"
            " coalesce(array_agg(a.analysis_type) FILTER (WHERE a.id IS NOT NULL), '{}')"
            " FROM transcriptions t LEFT JOIN analyses a ON a.transcription_id = t.id"
            " WHERE t.audio_file_id = ANY(%s::uuid[])"
            " GROUP BY t.id",
            (ids,),
        ).fetchall()
    return files, versions


def check(
    database_url: str,
    ids: Iterable[str],
    *,
    retranscriptions: int | Mapping[str, int] = 0,
    check_storage: bool = True,
    stored_size: Callable[[str], int | None] | None = None,
) -> Counts:
    """Assert the promise for ``ids`` (see module docstring) and return what was counted.

    ``retranscriptions`` is the number of explicit re-transcriptions requested per file (one
    number for all, or per id). ``stored_size`` tells the size of a stored copy from its
    ``file_path`` (None when absent), for copies that are not local files (object storage);
    by default the path is looked up on disk. Raises ``AssertionError`` listing every broken file.
    """
    wanted = list(dict.fromkeys(str(i) for i in ids))
    files, version_rows = _rows(database_url, wanted)
    by_file: dict[str, list[_Version]] = collections.defaultdict(list)
    for file_id, number, is_latest, text_length, analyses in version_rows:
        by_file[str(file_id)].append(
            _Version(int(number), bool(is_latest), int(text_length), list(analyses))
        )

    problems: list[str] = []
    seen = {str(row[0]) for row in files}
    problems += [
        f"{file_id}: no row (lost at submission)" for file_id in wanted if file_id not in seen
    ]
    completed = failed = 0
    failures: dict[str, str] = {}
    for file_id, status, stage, error, path, size, has_completion in files:
        fid = str(file_id)
        extra = (
            retranscriptions.get(fid, 0)
            if isinstance(retranscriptions, Mapping)
            else retranscriptions
        )
        versions = sorted(by_file.get(fid, []), key=lambda v: v.number)
        problems += _version_problems(fid, versions, allowed=1 + extra)
        if status == "completed":
            completed += 1
            problems += _completed_problems(
                fid, versions, expected=1 + extra, has_completion=bool(has_completion)
            )
            if check_storage:
                problems += _storage_problems(fid, str(path), int(size), stored_size)
        elif status == "failed":
            failed += 1
            if not (isinstance(error, str) and error.strip()):
                problems.append(f"{fid}: failed without an error message")
            elif "Traceback" in error or len(error) > MAX_MESSAGE_CHARS:
                problems.append(f"{fid}: failed with an unreadable message: {error[:200]!r}")
            failures[fid] = str(error)
        else:
            problems.append(f"{fid}: left {status} at stage {stage} (lost)")
    assert not problems, f"{len(problems)} broken promise(s):\n" + "\n".join(problems[:50])
    return Counts(
        files=len(wanted),
        completed=completed,
        failed=failed,
        versions=sum(len(v) for v in by_file.values()),
        analyses=sum(len(x.analyses) for v in by_file.values() for x in v),
        failures=failures,
    )


def _version_problems(fid: str, versions: list[_Version], *, allowed: int) -> list[str]:
    """Invariants for every file: no extra versions, one latest at most, no duplicate analyses."""
    problems = []
    if len(versions) > allowed:
        problems.append(f"{fid}: {len(versions)} versions, at most {allowed} allowed (duplicate)")
    if sum(v.is_latest for v in versions) > 1:
        problems.append(f"{fid}: more than one latest version")
    for v in versions:
        repeated = [t for t, n in collections.Counter(v.analyses).items() if n > 1]
        if repeated:
            problems.append(f"{fid}: version {v.number} has duplicate analyses {repeated}")
    return problems


def _completed_problems(
    fid: str, versions: list[_Version], *, expected: int, has_completion: bool
) -> list[str]:
    """A completed file must have all of its data, written whole."""
    problems = []
    if not has_completion:
        problems.append(f"{fid}: completed without processing_completed_at")
    if [v.number for v in versions] != list(range(1, expected + 1)):
        problems.append(f"{fid}: versions {[v.number for v in versions]}, expected 1..{expected}")
    latest = [v for v in versions if v.is_latest]
    if len(latest) != 1:
        problems.append(f"{fid}: completed with {len(latest)} latest versions")
        return problems
    if latest[0].number != max(v.number for v in versions):
        problems.append(f"{fid}: the latest flag is on version {latest[0].number}, not the newest")
    if sorted(latest[0].analyses) != sorted(ANALYSIS_TYPES):
        problems.append(f"{fid}: latest version has analyses {sorted(latest[0].analyses)}")
    return problems


def _storage_problems(
    fid: str, path: str, size: int, stored_size: Callable[[str], int | None] | None = None
) -> list[str]:
    """The managed copy of a completed file is in storage, whole."""
    try:
        on_disk = Path(path).stat().st_size if stored_size is None else stored_size(path)
    except OSError as err:
        return [f"{fid}: completed but its stored file is unreadable: {err}"]
    if on_disk is None:
        return [f"{fid}: completed but its stored copy {path} is gone"]
    if on_disk != size:
        return [f"{fid}: stored file has {on_disk} bytes, the row says {size}"]
    return []
