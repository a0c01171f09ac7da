"""Real webhook receivers for the tests: an HTTP server thread on 127.0.0.1 with one behaviour
per path, recording every request it gets.

``/ok`` verifies the Standard Webhooks signature with the ``standardwebhooks`` package (the
secret of the user the test says) and answers 204, or 401 when it does not verify; ``/status/N``
answers N; ``/flaky/K`` answers 500 the first K times, then 204; ``/hang`` sleeps ``hang_seconds``
before answering; ``/redirect`` answers 302 to ``/ok``; ``/slow-429`` answers 429 with
``Retry-After: 0``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any = None  # the parsed payload when the signature verified, else None


@dataclass
class Receiver:
    """The running server: its base URL and what it received."""

    base_url: str
    port: int
    secret: str | None = None
    hang_seconds: float = 3.0
    received: list[Received] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.at(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.at(path))} of {count} requests in {timeout} s")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path
            with receiver.lock:
                receiver.hits[path] += 1
                hit = receiver.hits[path]
            verified = None
            if receiver.secret is not None:
                try:
                    verified = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    verified = None
            with receiver.lock:
                receiver.received.append(Received(path, headers, body, verified))
            if path == "/ok":
                self._answer(204 if verified is not None else 401)
            elif path.startswith("/status/"):
                self._answer(int(path.rsplit("/", 1)[1]))
            elif path.startswith("/flaky/"):
                self._answer(500 if hit <= int(path.rsplit("/", 1)[1]) else 204)
            elif path == "/hang":
                time.sleep(receiver.hang_seconds)
                self._answer(204)
            elif path == "/redirect":
                self._answer(302, {"Location": receiver.url("/ok")})
            elif path == "/slow-429":
                self._answer(429, {"Retry-After": "0"})
            else:
                self._answer(404)

        def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextmanager
def receiver(secret: str | None = None, *, hang_seconds: float = 3.0) -> Iterator[Receiver]:
    """A receiver on a free port of 127.0.0.1, stopped when the block ends."""
    holder: dict[str, Receiver] = {}

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), _handler_proxy(holder))
    port = server.server_address[1]
    found = Receiver(f"http://127.0.0.1:{port}", port, secret, hang_seconds)
    holder["r"] = found
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _handler_proxy(holder: dict[str, Receiver]) -> Any:
    def make(*args: Any, **kwargs: Any) -> BaseHTTPRequestHandler:
        return _handler(holder["r"])(*args, **kwargs)

    return make
