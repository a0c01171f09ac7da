"""The layer rule (docs/architecture.md) as a test: interfaces -> workers -> pipeline -> db.

import-linter reads the contracts in pyproject.toml (``[tool.importlinter]``) and walks every
import, the ones inside functions included. The second test proves the check can fail: the same
kind of contract over a throw-away package with one upward import must be reported broken.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_the_project_keeps_its_layers() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    top = tmp_path / "layered"
    for name, body in {
        "__init__.py": "",
        "high.py": "",
        "low.py": "def f() -> None:\n    from layered import high  # upward, in a function\n",
    }.items():
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(body)
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "layered"\n\n'
        '[[tool.importlinter.contracts]]\nname = "high over low"\ntype = "layers"\n'
        'layers = ["layered.high", "layered.low"]\n'
    )
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "layered.low -> layered.high" in result.stdout
