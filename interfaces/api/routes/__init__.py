"""Routers of the HTTP API, one module per area; :mod:`interfaces.api.app` mounts them.

To add an area: write ``routes/<area>.py`` with ``router = APIRouter(...)`` and add it to
:data:`interfaces.api.app.ROUTERS`.
"""
