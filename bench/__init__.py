"""TeleAI Pro benchmarks: ``make bench`` / ``python -m bench`` / ``teleai bench``.

Speeds are stated as ratios of runs made side by side in one run on one machine (absolute times
on a shared machine are noise); each run writes ``bench/results/<date>-<host>.{md,json}`` with
the machine, load, package versions and settings. See ``bench/run.py`` for the list.
"""
