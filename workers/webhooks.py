"""Deliver the webhook outbox: signed POSTs, SSRF-checked connections, backoff for a day.

Why the periodic runner and not a Celery task: the outbox table already is a durable queue with
a schedule (``next_attempt_at``), and a day of exponential backoff does not fit Redis-backed
Celery ETAs (a task waiting past the broker's visibility timeout is handed out again, and every
waiting ETA task sits in a worker's memory). So the elected periodic-jobs leader
(:mod:`workers.periodic`) runs :class:`Deliverer` every tick (1 s): it claims due messages with
``FOR UPDATE SKIP LOCKED`` and a lease, and hands them to its own thread pool
(``TELEAI_WEBHOOK_CONCURRENCY``). No pipeline process ever waits on a receiver: the pool children
that transcribe only write the outbox row, and the deliveries run in threads of the worker's main
process, outside any database transaction. A leader that dies mid-delivery leaves a lease that
expires, and the next leader delivers again (at-least-once; ``webhook-id`` lets a receiver
de-duplicate).

Each attempt is recorded in ``webhook_attempts``. 2xx: delivered. 408, 429 (its Retry-After is
honoured up to the longest backoff), 5xx, timeouts and connection errors: retried after
``min(base * 2^(n-1), max)`` seconds with equal jitter (half fixed, half random) until the
retry window (``TELEAI_WEBHOOK_RETRY_HOURS``, 24 by default) is over. Any other 4xx, a redirect
(never followed: the target would escape the address check) and an address the SSRF policy
refuses stop at once.

SSRF: the connection goes through :class:`GuardedBackend`, which resolves the host itself,
checks every address against :class:`pipeline.netguard.AddressPolicy` and connects to the
checked address (TLS still verifies the certificate against the host name), so there is no
second resolution an attacker's DNS could answer differently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import structlog
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from db.models import WebhookAttempt, WebhookOutbox, WebhookResult, WebhookStatus
from pipeline.netguard import AddressPolicy, IPAddress, RefusedAddress
from pipeline.webhooks import MissingSecret, WebhookSettings, get_webhook_settings, signing_secret

log = structlog.get_logger(__name__)

USER_AGENT: Final = "TeleAI-Webhooks/1"
MAX_RESPONSE_BYTES: Final = 64 * 1024
RETRYABLE_STATUS: Final = frozenset({408, 429})

UnitFactory = Callable[[], AbstractContextManager[Session]]


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the policy allows.

    ``connected`` is the address of the last connection (recorded with the attempt).
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()
        self.connected: str | None = None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        self._policy.check(host, addresses)
        last: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
                continue
            self.connected = str(address)
            return stream
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise RefusedAddress("unix sockets are not webhook receivers")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an address literal is itself), de-duplicated."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror}") from error
    found: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(found)


@dataclass(frozen=True)
class Claimed:
    """A message this process is delivering now (``attempt`` fences its result)."""

    id: uuid.UUID
    audio_file_id: uuid.UUID
    user_id: uuid.UUID
    attempt: int
    url: str
    auth_header_name: str | None
    auth_header_value: str | None
    payload: dict[str, Any]
    give_up_at: dt.datetime
    created_at: dt.datetime

    def deadline(self, settings: WebhookSettings) -> dt.datetime:
        """The end of the retry window: the one written with the message, or the delivering
        process's ``TELEAI_WEBHOOK_RETRY_HOURS`` from creation, whichever is sooner."""
        return min(self.give_up_at, self.created_at + dt.timedelta(hours=settings.retry_hours))


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: ``kind`` is delivered, retry or stopped."""

    kind: WebhookResult
    duration_ms: int
    status_code: int | None = None
    address: str | None = None
    error: str | None = None
    retry_after: float | None = None


def claim_due(session: Session, *, limit: int, lease_seconds: float) -> list[Claimed]:
    """Take up to ``limit`` due messages (pending, next attempt now or past, no live lease)."""
    due = (
        select(WebhookOutbox.id)
        .where(
            WebhookOutbox.status == WebhookStatus.PENDING.value,
            WebhookOutbox.next_attempt_at <= func.now(),
            or_(
                WebhookOutbox.lease_expires_at.is_(None),
                WebhookOutbox.lease_expires_at < func.now(),
            ),
        )
        .order_by(WebhookOutbox.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(WebhookOutbox)
        .where(WebhookOutbox.id.in_(due.scalar_subquery()))
        .values(
            attempts=WebhookOutbox.attempts + 1,
            lease_expires_at=func.now() + dt.timedelta(seconds=lease_seconds),
        )
        .returning(
            WebhookOutbox.id, WebhookOutbox.audio_file_id, WebhookOutbox.user_id,
            WebhookOutbox.attempts, WebhookOutbox.url, WebhookOutbox.auth_header_name,
            WebhookOutbox.auth_header_value, WebhookOutbox.payload, WebhookOutbox.give_up_at,
            WebhookOutbox.created_at,
        )
    ).all()  # fmt: skip
    return [Claimed(*row) for row in rows]


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signed_headers(message: Claimed, body: bytes, settings: WebhookSettings) -> dict[str, str]:
    """Standard Webhooks headers (a fresh timestamp per attempt), plus the user's auth header."""
    now = dt.datetime.now(dt.UTC)
    message_id = str(message.id)
    signature = Webhook(signing_secret(message.user_id, settings)).sign(
        message_id, now, body.decode()
    )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    if message.auth_header_name and message.auth_header_value is not None:
        headers[message.auth_header_name] = message.auth_header_value
    return headers


def _retry_after(response: httpcore.Response) -> float | None:
    for name, value in response.headers:
        if name.lower() == b"retry-after":
            with contextlib.suppress(ValueError):
                return max(float(value.decode("latin-1").strip()), 0.0)
    return None


def deliver(
    message: Claimed,
    settings: WebhookSettings,
    *,
    policy: AddressPolicy | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Outcome:
    """One attempt: POST the signed body and classify the answer (never raises)."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        body = body_of(message.payload)
        headers = signed_headers(message, body, settings)
    except MissingSecret as error:
        return Outcome(WebhookResult.RETRY, took(), error=str(error))
    backend = GuardedBackend(policy or settings.policy())
    timeout = settings.timeout_seconds
    try:
        with httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=backend, max_connections=1, retries=0
        ) as pool, pool.stream(
            "POST",
            message.url,
            headers=list(headers.items()),
            content=body,
            extensions={
                "timeout": {"connect": timeout, "read": timeout, "write": timeout,
                            "pool": timeout}
            },
        ) as response:  # fmt: skip
            read = 0
            for chunk in response.iter_stream():  # drain a little, then hang up
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES or time.monotonic() - started > 3 * timeout:
                    break
            status = response.status
            retry_after = _retry_after(response)
    except RefusedAddress as error:
        return Outcome(WebhookResult.STOPPED, took(), error=str(error))
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as error:
        kind = "timed out" if isinstance(error, httpcore.TimeoutException) else "failed"
        detail = str(error) or type(error).__name__
        return Outcome(
            WebhookResult.RETRY, took(), address=backend.connected,
            error=f"the request {kind}: {detail}",
        )  # fmt: skip
    except (httpcore.UnsupportedProtocol, ValueError) as error:
        return Outcome(WebhookResult.STOPPED, took(), error=f"unusable webhook URL: {error}")
    address = backend.connected
    if 200 <= status < 300:
        return Outcome(WebhookResult.DELIVERED, took(), status, address)
    if 300 <= status < 400:
        return Outcome(
            WebhookResult.STOPPED, took(), status, address,
            error=f"the receiver answered {status} (a redirect); redirects are not followed, "
            "configure the final URL",
        )  # fmt: skip
    if status in RETRYABLE_STATUS or status >= 500:
        return Outcome(
            WebhookResult.RETRY, took(), status, address,
            error=f"the receiver answered {status}", retry_after=retry_after,
        )  # fmt: skip
    return Outcome(
        WebhookResult.STOPPED, took(), status, address,
        error=f"the receiver answered {status}; a 4xx other than 408/429 is final",
    )  # fmt: skip


def backoff_seconds(attempt: int, settings: WebhookSettings, rng: random.Random) -> float:
    """The delay after failed attempt ``attempt`` (1-based): exponential, capped, equal jitter."""
    growth = 2.0 ** min(attempt - 1, 40)
    ceiling = min(settings.backoff_base_seconds * growth, settings.backoff_max_seconds)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def record(
    session: Session,
    message: Claimed,
    outcome: Outcome,
    settings: WebhookSettings,
    rng: random.Random,
) -> WebhookResult:
    """Write the attempt and the message's next state; returns the attempt's final result
    (a retry past the window becomes ``stopped``)."""
    now: dt.datetime = session.execute(select(func.now())).scalar_one()
    result, error = outcome.kind, outcome.error
    values: dict[str, Any] = {"lease_expires_at": None, "last_error": error}
    if result is WebhookResult.DELIVERED:
        values.update(status=WebhookStatus.DELIVERED.value, finished_at=now)
    elif result is WebhookResult.RETRY:
        delay = backoff_seconds(message.attempt, settings, rng)
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, settings.backoff_max_seconds))
        next_at = now + dt.timedelta(seconds=delay)
        if next_at > message.deadline(settings):
            result = WebhookResult.STOPPED
            error = f"gave up after {message.attempt} attempts (the retry window ended): {error}"
            values.update(status=WebhookStatus.FAILED.value, finished_at=now, last_error=error)
        else:
            values["next_attempt_at"] = next_at
    else:
        values.update(status=WebhookStatus.FAILED.value, finished_at=now)
    session.execute(
        insert(WebhookAttempt).values(
            outbox_id=message.id,
            attempt=message.attempt,
            started_at=now - dt.timedelta(milliseconds=outcome.duration_ms),
            duration_ms=outcome.duration_ms,
            address=outcome.address,
            status_code=outcome.status_code,
            result=result.value,
            error=error,
        )
    )
    session.execute(
        update(WebhookOutbox)
        .where(
            and_(
                WebhookOutbox.id == message.id,
                WebhookOutbox.attempts == message.attempt,
                WebhookOutbox.status == WebhookStatus.PENDING.value,
            )
        )
        .values(**values)
    )
    return result


class Deliverer:
    """The periodic job: each call claims what is due (up to the free delivery slots) and
    hands it to a thread pool; :meth:`close` stops it (the scheduler calls it on shutdown)."""

    def __init__(self, unit: UnitFactory, settings: WebhookSettings | None = None) -> None:
        self._unit = unit
        self.settings = settings or get_webhook_settings()
        self._policy = self.settings.policy()
        self._ssl = ssl.create_default_context()  # the system's trust store (on-premise CAs)
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="webhook")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closed = False

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def __call__(self) -> int:
        """Claim due messages for the free slots; returns how many were handed out."""
        with self._lock:
            free = 0 if self._closed else self.settings.concurrency - self._in_flight
        if free <= 0:
            return 0
        lease = 3 * self.settings.timeout_seconds + 30
        with self._unit() as session:
            claimed = claim_due(session, limit=free, lease_seconds=lease)
        for message in claimed:
            with self._lock:
                self._in_flight += 1
            self._pool.submit(self._run, message)
        return len(claimed)

    def _run(self, message: Claimed) -> None:
        try:
            outcome = deliver(message, self.settings, policy=self._policy, ssl_context=self._ssl)
            with self._unit() as session:
                result = record(session, message, outcome, self.settings, self._rng)
            log.info(
                f"webhook_{result.value}",
                message_id=str(message.id),
                file_id=str(message.audio_file_id),
                attempt=message.attempt,
                host=urlsplit(message.url).hostname,
                status_code=outcome.status_code,
                duration_ms=outcome.duration_ms,
                error=outcome.error,
            )
        except Exception as error:  # the lease expires and the message is tried again
            log.warning(
                "webhook_attempt_not_recorded",
                message_id=str(message.id),
                error=f"{type(error).__name__}: {error}",
            )
        finally:
            with self._lock:
                self._in_flight -= 1

    def drain(self, timeout: float, tick: float = 0.05) -> None:
        """Tests and one-off runs: deliver until nothing is due or in flight (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            handed = self()
            if not handed and not self.in_flight:
                return
            time.sleep(tick)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        # Deliveries under way finish (each is bounded by the timeouts); queued ones are
        # dropped here and their leases expire, so the next leader sends them.
        self._pool.shutdown(wait=False, cancel_futures=True)
