"""The ingest benchmark's submitting process: every file of a folder through one submit path.

Run as ``python -m bench.submitter MODE FOLDER`` with the worker's environment (database,
broker, storage), so it submits exactly as ``teleai ingest`` would on that machine:

- ``single``: :func:`workers.submit.submit` per file (one transaction and one message each),
  what ``teleai ingest`` did before batching and what the API and drop folder do per upload;
- ``many``: :func:`workers.submit.submit_many`, what ``teleai ingest FOLDER`` does now
  (several files to an ingest message, ``workers.submit.INGEST_BATCH_FILES``);
- ``many-unbatched``: ``submit_many`` with one ingest message per file (the batch bound set
  to 1), the same-run baseline of the batched messages.

It prints one ``RESULT`` JSON line: the wall-clock time of its first submission (the
benchmark's clock starts there, so interpreter start-up is left out of both paths alike), the
seconds submitting took, and the outcome counts.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path


def main(mode: str, folder: Path) -> None:
    from db.engine import get_engine, unit_of_work
    from db.users import get_or_create_operator
    from pipeline.settings import get_settings
    from workers import submit as submitting
    from workers.submit import SubmitResult, submit, submit_many

    if mode == "many-unbatched":
        submitting.INGEST_BATCH_FILES = 1

    settings = get_settings()
    with unit_of_work(get_engine(settings.sqlalchemy_url())) as session:
        owner = get_or_create_operator(session, None).id
    paths = sorted(folder.glob("*.wav"))
    started_at = time.time()
    started = time.perf_counter()
    results: list[SubmitResult]
    if mode == "single":
        results = [submit(path, owner_id=owner) for path in paths]
    elif mode in ("many", "many-unbatched"):
        results = list(submit_many(paths, owner_id=owner))
    else:
        raise SystemExit(f"unknown mode {mode!r}: single or many")
    seconds = time.perf_counter() - started
    outcomes = Counter(f"{r.outcome.value}{'' if r.queued else ' (not queued)'}" for r in results)
    print("RESULT " + json.dumps({"started_at": started_at, "seconds": seconds, **outcomes}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
