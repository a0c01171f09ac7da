# One target per check, used by people and CI alike (see README.md).
.PHONY: setup demo test lint format typecheck check bench

setup:
	bash scripts/setup.sh

# The demo also runs where PostgreSQL, Redis, ffmpeg or espeak-ng are missing (embedded servers).
demo:
	TELEAI_SETUP_SYSTEM=optional bash scripts/setup.sh
	.venv/bin/python -m interfaces.demo

test: setup
	.venv/bin/pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

typecheck: setup
	.venv/bin/mypy .

check: lint typecheck test

bench: setup
	.venv/bin/python -m bench
