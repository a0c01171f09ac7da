"""One ``job_finished`` line per finished file, through a real worker, for both outcomes.

The ordinary failure path (the runner classifies a bad file as permanent and fails its row)
must log the line as completion does, once each, with the outcome and the error.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from tests.integration.faults.conftest import Cluster, SpeechCorpus

pytestmark = pytest.mark.slow

JOB_FINISHED = re.compile(r"job_finished\b.*")
FIELD = re.compile(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)")


def _fields(line: str) -> dict[str, str]:
    return {key: value.strip("'\"") for key, value in FIELD.findall(line)}


def test_failed_and_completed_files_each_log_one_job_finished_line(
    workers: Cluster, corpus: SpeechCorpus, tmp_path: Path
) -> None:
    marks = workers.log_marks()
    bad = tmp_path / "bad" / "not-really.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    [good] = corpus.batch(tmp_path / "good", 1, prefix="joblog")
    bad_id, good_id = workers.submit_ok(bad, good)
    workers.wait_settled([bad_id, good_id], timeout=180)
    assert workers.row(bad_id)[0] == "failed" and workers.row(good_id)[0] == "completed"

    lines = JOB_FINISHED.findall(workers.logs_since(marks, "w1"))
    by_file = collections.defaultdict(list)
    for line in lines:
        fields = _fields(line)
        by_file[fields.get("file_id")].append(fields)
    assert len(by_file[bad_id]) == 1, lines
    assert len(by_file[good_id]) == 1, lines
    failed, completed = by_file[bad_id][0], by_file[good_id][0]
    assert (failed["outcome"], failed["stage"]) == ("failed", "ingest"), failed
    assert "error" in failed and failed["attempt"] == "1", failed
    assert completed["outcome"] == "completed" and "error" not in completed, completed
