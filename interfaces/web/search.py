"""``/search``: full-text search of the latest transcripts the signed-in user may read.

The hits are the API's (:func:`interfaces.api.routes.files.search`, PostgreSQL full-text search
under row-level security). Each snippet links to its file at the moment the first highlighted
word is spoken (``/files/{id}?t=<seconds>``), found in that transcript's timed words.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from db.models import Transcription
from db.redactions import redaction_of
from interfaces.api.routes.files import search as api_search
from interfaces.web import transcript as tx
from interfaces.web.render import WebRoute, page
from interfaces.web.session import PageUser

router = APIRouter(route_class=WebRoute, include_in_schema=False)

MAX_HITS = 25


@router.get("/search")
def search_page(
    request: Request, who: PageUser, q: Annotated[str, Query(max_length=1000)] = ""
) -> HTMLResponse:
    hits: list[dict[str, Any]] = []
    query = q.strip()
    if query:
        found = api_search(who, query, limit=MAX_HITS)
        for item in found["items"]:
            ident = uuid.UUID(item["transcription_id"])
            # A redacted file's hit is timed on its redacted words (what this caller may read).
            version = who.session.get(Transcription, ident) or redaction_of(who.session, ident)
            words = tx.words_of(version.segments or []) if version is not None else []
            hits.append({**item, "time": tx.hit_time(item["snippet"], words)})
    return page(request, "search.html", {"q": query, "hits": hits}, who=who)
