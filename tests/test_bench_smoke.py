"""The cheapest pieces of ``make bench``: the results writer, and the database benchmark on a tiny
database through the real command, against the real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.results import RunReport, Section, Table, Target, render_markdown, results_stem
from tests.conftest import ADMIN_URL

REPO = Path(__file__).resolve().parent.parent
MACHINE_KEYS = {"cpu", "cores", "ram_gib", "postgresql", "packages"}


def _report() -> RunReport:
    section = Section("demo", "Demo benchmark", seconds=1.5)
    table = Table("numbers", ["name", "value"])
    table.add("ratio | pipe", 1.0834)
    table.add("big", 1234567)
    section.tables.append(table)
    section.targets.append(Target("speed", "≥ 3×", "2.1×", False, "slow kernels"))
    section.plans["q"] = "Seq Scan on audio_files"
    return RunReport(
        started_at="2025-01-01T00:00:00+00:00",
        finished_at="2025-01-01T00:01:00+00:00",
        command="python -m bench --quick",
        machine={"cpu": "Test CPU", "cores": 2, "packages": {"torch": "2.0"}},
        settings={"mode": "quick"},
        sections=[section],
    )


def test_markdown_states_machine_targets_and_plans() -> None:
    text = render_markdown(_report())
    assert "## Machine" in text and "Test CPU" in text
    assert "| torch | 2.0 |" in text
    assert "ratio \\| pipe" in text  # a pipe in a cell does not break the table
    assert "| 1.08 |" in text and "1,234,567" in text
    assert "| Demo benchmark | speed | ≥ 3× | 2.1× | MISSED | slow kernels |" in text
    assert "Seq Scan on audio_files" in text


def test_results_stem_never_overwrites_the_full_run() -> None:
    assert results_stem("2025-01-01", "box", quick=False, only=None) == "2025-01-01-box"
    assert results_stem("2025-01-01", "box", quick=True, only=["db"]) == "2025-01-01-box-quick-db"


def test_quick_db_benchmark_writes_results(tmp_path: Path) -> None:
    env = {**os.environ, "TELEAI_BENCH_ADMIN_URL": ADMIN_URL}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "db", "--db-scale", "0.001",
         "--results-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (markdown,) = tmp_path.glob("*-quick-db.md")
    (as_json,) = tmp_path.glob("*-quick-db.json")
    text = markdown.read_text()
    assert "## Machine" in text and "## Settings" in text
    assert "processing queue (monitoring)" in text and "Plan: " in text
    data = json.loads(as_json.read_text())
    assert set(data["machine"]) >= MACHINE_KEYS
    assert data["machine"]["postgresql"].split(".")[0].isdigit()
    (section,) = data["sections"]
    assert section["error"] is None
    assert section["data"]["counts"]["audio_files"] == 1000
    assert section["data"]["counts"]["analyses"] == 3000
    queue = next(q for q in section["data"]["queries"] if q["name"].startswith("processing"))
    assert queue["rows"] == 2  # one pending and one processing file per thousand


def test_teleai_bench_refuses_an_unknown_benchmark() -> None:
    teleai = Path(sys.executable).with_name("teleai")
    result = subprocess.run(
        [str(teleai), "bench", "--only", "nonsense"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown benchmark" in result.stderr
