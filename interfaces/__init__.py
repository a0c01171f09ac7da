"""The ways in: the ``teleai`` CLI, the drop folder, the demo, the metrics exporter (and, next,
the HTTP API and the web app).

Interfaces sit on top of the layers and nothing imports them: interfaces -> ``workers`` (Celery
app, tasks, the one submit function) -> ``pipeline`` (pure stages and job state) -> ``db``.
``tests/test_layers.py`` enforces the direction with import-linter.
"""
