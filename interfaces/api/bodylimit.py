"""Refuse request bodies over the upload limit with 413, while they stream in.

A declared ``Content-Length`` over the limit is refused before a byte is read. A body without
one (chunked) is counted as it arrives, and the request is cut off with 413 at the first byte
over the limit, so neither memory nor disk ever holds more than the limit. This sits in front of
every route, the compatible endpoints included.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised inside the app's ``receive`` when the body passes the limit."""


def _message(limit: int) -> str:
    return (
        f"the request body is larger than the limit of {limit} bytes "
        f"({limit / 1024**2:.0f} MiB; TELEAI_API_MAX_UPLOAD_BYTES)"
    )


class BodySizeLimit:
    """Pure ASGI middleware (no buffering): counts body bytes, answers 413 over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            # A framework that turned BodyTooLarge into its own error (FastAPI answers body
            # parsing failures with 400) still gets the 413 out: its response is replaced.
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if over:
                    await self._refuse(send)
                    return
            if not over:
                await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": _message(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
