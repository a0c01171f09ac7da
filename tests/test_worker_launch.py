"""``python -m workers`` (workers.launch): the options the launchers pass reach Celery's worker,
and the module starts without importing the ``celery`` command line (what makes it sooner)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import pytest

from workers.launch import worker_options


def test_options_become_the_workers_keyword_arguments() -> None:
    options = worker_options(
        ["-Q", "ingest, transcribe", "--concurrency=3", "--loglevel=info", "--hostname=w9@%h",
         "--without-gossip", "--without-mingle", "--beat", "--schedule", "/tmp/s"]
    )  # fmt: skip
    assert options == {
        "hostname": f"w9@{socket.gethostname()}",
        "loglevel": logging.INFO,
        "queues": ["ingest", "transcribe"],
        "concurrency": 3,
        "without_gossip": True,
        "without_mingle": True,
        "without_heartbeat": False,
        "beat": True,
        "schedule_filename": "/tmp/s",
    }


def test_defaults_leave_queues_and_concurrency_to_the_settings() -> None:
    options = worker_options([])
    assert "queues" not in options and "concurrency" not in options
    assert options["hostname"].startswith("celery@")  # Celery's own default node name


def test_unknown_option_is_refused() -> None:
    with pytest.raises(SystemExit):
        worker_options(["--autoscale=3,1"])


def test_the_module_does_not_import_the_celery_command_line() -> None:
    code = (
        "import sys, workers.launch as l, workers.app; l.worker_options([]);"
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('celery.bin', 'flower', 'click_repl', 'prompt_toolkit'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
