"""``python -m workers [celery worker options]``: see :mod:`workers.launch`."""

import sys

from workers.launch import run

if __name__ == "__main__":
    sys.exit(run())
