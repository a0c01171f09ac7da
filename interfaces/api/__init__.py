"""The HTTP API: a FastAPI app (``create_app``) that ``teleai serve`` runs under uvicorn.

Layout: ``app.py`` builds the app and mounts the routers of ``routes/``; ``deps.py`` turns the
presented credential into a :class:`~interfaces.api.deps.Caller` and opens database units of
work as the application role acting with that credential (row-level security decides what the
caller sees); ``errors.py`` makes every error a JSON body with a message (never a stack trace).
Routers are thin: they call the same db/, pipeline/ and workers/ functions as the CLI.
"""
