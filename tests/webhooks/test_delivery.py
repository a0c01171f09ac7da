"""Webhook outbox and delivery against a real database clone and real HTTP receivers.

The :class:`workers.webhooks.Deliverer` runs in this process (the worker only hosts it: see
tests/api/test_webhooks_api.py for the same job inside a real worker), with short timeouts and
backoff so the retry schedule plays out in seconds. The receivers are HTTP server threads on
127.0.0.1; the tests that reach them open 127.0.0.1 with the allowlist, and the SSRF tests show
that without it loopback, private, link-local and metadata targets are refused before any
connection is made.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, delete, select
from sqlalchemy.orm import Session

from db.engine import unit_of_work
from db.models import (
    AudioFile,
    Stage,
    UserWebhook,
    WebhookAttempt,
    WebhookOutbox,
)
from pipeline import jobs
from pipeline.netguard import AddressPolicy
from pipeline.webhooks import WebhookSettings, signing_secret
from tests.conftest import PgAdmin
from tests.db.factories import make_file, make_user
from tests.webhooks.receivers import receiver
from workers.webhooks import Deliverer, backoff_seconds, resolve

SECRET = "whsec_" + base64.b64encode(b"teleai-test-signing-secret-32-bytes").decode()


def settings(**overrides: Any) -> WebhookSettings:
    base: dict[str, Any] = {
        "secret": SecretStr(SECRET),
        "allowed_hosts": "127.0.0.1",
        "timeout_seconds": 0.5,
        "backoff_base_seconds": 0.2,
        "backoff_max_seconds": 0.4,
        "retry_hours": 1.0,
        "concurrency": 4,
    }
    base.update(overrides)
    return WebhookSettings(**base)


@pytest.fixture(scope="module")
def engine(pg_admin: PgAdmin, template_database: str) -> Iterator[Engine]:
    name = pg_admin.new_name("webhooks")
    eng = create_engine(pg_admin.create(name, template=template_database), pool_size=8)
    try:
        yield eng
    finally:
        eng.dispose()
        pg_admin.drop(name)


def uow(engine: Engine) -> AbstractContextManager[Session]:
    return unit_of_work(engine)


def finished(
    engine: Engine,
    *,
    options: dict[str, Any] | None = None,
    outcome: str = "completed",
    user_default: dict[str, Any] | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A user and a file that reached ``outcome`` through pipeline.jobs; (user id, file id)."""
    with uow(engine) as session:
        user = make_user(session)
        row = make_file(session, user, metadata={"options": options or {}})
        if user_default is not None:
            session.add(UserWebhook(user_id=user.id, **user_default))
        session.flush()
        finish(session, row.id, outcome)
        return user.id, row.id


def finish(session: Session, file_id: uuid.UUID, outcome: str) -> None:
    if outcome == "completed":
        claim = jobs.claim(session, file_id, Stage.INGEST, lease_seconds=60, max_attempts=3)
        assert claim is not None
        assert jobs.complete(session, claim, timings={"ingest": 0.1})
    else:
        assert jobs.fail(session, file_id, Stage.TRANSCRIBE, RuntimeError("decoder exploded"))


def messages(engine: Engine, file_id: uuid.UUID) -> list[WebhookOutbox]:
    with uow(engine) as session:
        return list(
            session.scalars(select(WebhookOutbox).where(WebhookOutbox.audio_file_id == file_id))
        )


def discard(engine: Engine, *file_ids: uuid.UUID) -> None:
    """Remove messages a test only inspected, so later tests' deliverers do not send them."""
    with uow(engine) as session:
        session.execute(delete(WebhookOutbox).where(WebhookOutbox.audio_file_id.in_(file_ids)))


def attempts(engine: Engine, message_id: uuid.UUID) -> list[WebhookAttempt]:
    with uow(engine) as session:
        return list(
            session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.outbox_id == message_id)
                .order_by(WebhookAttempt.attempt)
            )
        )


def deliver_until_final(engine: Engine, deliverer: Deliverer, file_id: uuid.UUID,
                        timeout: float = 20.0) -> WebhookOutbox:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliverer()
        (message,) = messages(engine, file_id)
        if message.status != "pending" and not deliverer.in_flight:
            return message
        time.sleep(0.05)
    raise AssertionError(f"still pending after {timeout} s: {messages(engine, file_id)}")


@pytest.fixture
def deliverer(engine: Engine) -> Iterator[Deliverer]:
    found = Deliverer(lambda: uow(engine), settings())
    try:
        yield found
    finally:
        found.close()


# --- the outbox ---------------------------------------------------------------------------------


def test_outbox_row_commits_with_the_final_status_and_not_without(engine: Engine) -> None:
    with uow(engine) as session:
        user = make_user(session)
        row = make_file(session, user, metadata={"options": {"webhook_url": "http://h/x"}})
    with Session(engine) as session:
        finish(session, row.id, "completed")
        session.flush()
        assert messages(engine, row.id) == []  # not visible before the commit
        session.rollback()
    with uow(engine) as session:
        assert session.get(AudioFile, row.id).status == "pending"  # type: ignore[union-attr]
    assert messages(engine, row.id) == []  # rolled back together
    with uow(engine) as session:
        finish(session, row.id, "completed")
    (message,) = messages(engine, row.id)
    assert (message.event, message.status, message.url) == (
        "file.completed",
        "pending",
        "http://h/x",
    )
    assert message.payload["id"] == str(row.id) and message.payload["status"] == "completed"
    discard(engine, row.id)


def test_no_receiver_no_message(engine: Engine) -> None:
    _, file_id = finished(engine)
    assert messages(engine, file_id) == []


def test_users_default_applies_and_a_jobs_url_wins(engine: Engine) -> None:
    default = {"url": "http://default.example/hook", "auth_header_name": "X-Token",
               "auth_header_value": "s3cret"}  # fmt: skip
    _, by_default = finished(engine, user_default=default)
    (message,) = messages(engine, by_default)
    assert (message.url, message.auth_header_name) == ("http://default.example/hook", "X-Token")
    _, by_job = finished(engine, options={"webhook_url": "http://job.example/h"},
                         user_default=default)  # fmt: skip
    (message,) = messages(engine, by_job)
    assert message.url == "http://job.example/h" and message.auth_header_name is None
    discard(engine, by_default, by_job)


# --- delivery -----------------------------------------------------------------------------------


def test_signed_delivery_verifies_with_the_users_secret(
    engine: Engine, deliverer: Deliverer
) -> None:
    with receiver() as hook:
        options = {"webhook_url": hook.url("/ok"), "webhook_auth_header_name": "X-Api-Token",
                   "webhook_auth_header_value": "receiver-token"}  # fmt: skip
        user_id, file_id = finished(engine, options=options)
        hook.secret = signing_secret(user_id, deliverer.settings)
        message = deliver_until_final(engine, deliverer, file_id)
        (got,) = hook.at("/ok")
    assert message.status == "delivered" and message.finished_at is not None
    assert got.verified == {**message.payload}
    assert got.verified["id"] == str(file_id) and got.verified["transcript_id"] == str(file_id)
    assert got.verified["type"] == "file.completed" and got.verified["status"] == "completed"
    assert got.headers["webhook-id"] == str(message.id)
    assert got.headers["x-api-token"] == "receiver-token"
    (attempt,) = attempts(engine, message.id)
    assert (attempt.result, attempt.status_code, attempt.address) == ("delivered", 204, "127.0.0.1")
    # Another user's secret (what one tenant knows) does not verify this user's messages.
    other = signing_secret(uuid.uuid4(), deliverer.settings)
    assert other != hook.secret
    assert signing_secret(user_id, settings(per_user_secrets=False)) == SECRET


def test_failed_file_sends_its_error(engine: Engine, deliverer: Deliverer) -> None:
    with receiver() as hook:
        user_id, file_id = finished(engine, options={"webhook_url": hook.url("/ok")},
                                    outcome="failed")  # fmt: skip
        hook.secret = signing_secret(user_id, deliverer.settings)
        deliver_until_final(engine, deliverer, file_id)
        (got,) = hook.at("/ok")
    assert got.verified["type"] == "file.failed" and got.verified["status"] == "error"
    assert "decoder exploded" in got.verified["error"]


def test_500_is_retried_with_backoff_until_it_succeeds(
    engine: Engine, deliverer: Deliverer
) -> None:
    with receiver() as hook:
        _, file_id = finished(engine, options={"webhook_url": hook.url("/flaky/2")})
        message = deliver_until_final(engine, deliverer, file_id)
        got = hook.at("/flaky/2")
    assert message.status == "delivered"
    tried = attempts(engine, message.id)
    assert [a.result for a in tried] == ["retry", "retry", "delivered"]
    assert [a.status_code for a in tried] == [500, 500, 204]
    assert len({r.headers["webhook-id"] for r in got}) == 1  # one message id across retries
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(tried)]
    assert all(gap >= 0.1 for gap in gaps), gaps  # at least half the base delay


def test_a_dead_receiver_is_given_up_after_the_retry_window(engine: Engine) -> None:
    short = Deliverer(lambda: uow(engine), settings(retry_hours=1.5 / 3600))
    try:
        with receiver() as hook:
            _, file_id = finished(engine, options={"webhook_url": hook.url("/status/503")})
            message = deliver_until_final(engine, short, file_id)
    finally:
        short.close()
    tried = attempts(engine, message.id)
    assert message.status == "failed" and "gave up after" in (message.last_error or "")
    assert len(tried) >= 3 and tried[-1].result == "stopped"
    assert all(a.result == "retry" for a in tried[:-1])


@pytest.mark.parametrize(
    ("path", "status_code", "message"),
    [("/status/410", 410, "4xx other than 408/429 is final"), ("/redirect", 302, "redirect")],
)
def test_410_and_redirects_stop_at_once(
    engine: Engine, deliverer: Deliverer, path: str, status_code: int, message: str
) -> None:
    with receiver() as hook:
        _, file_id = finished(engine, options={"webhook_url": hook.url(path)})
        final = deliver_until_final(engine, deliverer, file_id)
        assert hook.at("/ok") == []  # the redirect was not followed
    (attempt,) = attempts(engine, final.id)
    assert final.status == "failed" and attempt.result == "stopped"
    assert attempt.status_code == status_code and message in (attempt.error or "")


def test_408_and_429_are_retried(engine: Engine, deliverer: Deliverer) -> None:
    with receiver() as hook:
        ids = [finished(engine, options={"webhook_url": hook.url(p)})[1]
               for p in ("/status/408", "/slow-429")]  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(hook.at("/status/408")) < 2 or len(hook.at("/slow-429")) < 2
        ):
            deliverer()
            time.sleep(0.05)
    for file_id in ids:
        (message,) = messages(engine, file_id)
        assert [a.result for a in attempts(engine, message.id)][:2] == ["retry", "retry"]
    discard(engine, *ids)


def test_a_hanging_receiver_times_out_and_never_blocks_the_tick(
    engine: Engine, deliverer: Deliverer
) -> None:
    with receiver(hang_seconds=3.0) as hook:
        _, hanging = finished(engine, options={"webhook_url": hook.url("/hang")})
        started = time.monotonic()
        assert deliverer() == 1
        assert time.monotonic() - started < 0.5  # the tick only claims; threads deliver
        hook.wait_for("/hang")
        _, quick = finished(engine, options={"webhook_url": hook.url("/status/204")})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and messages(engine, quick)[0].status == "pending":
            deliverer()
            time.sleep(0.05)
        assert messages(engine, quick)[0].status == "delivered"  # not held up by the hang
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not attempts(engine, messages(engine, hanging)[0].id):
            time.sleep(0.05)
    (attempt,) = attempts(engine, messages(engine, hanging)[0].id)
    assert attempt.result == "retry" and "timed out" in (attempt.error or "")
    assert attempt.duration_ms < 2500
    discard(engine, hanging)


def test_without_a_secret_messages_wait(engine: Engine) -> None:
    unsigned = Deliverer(lambda: uow(engine), settings(secret=None))
    try:
        with receiver() as hook:
            _, file_id = finished(engine, options={"webhook_url": hook.url("/ok")})
            unsigned()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and unsigned.in_flight:
                time.sleep(0.05)
            assert hook.received == []
    finally:
        unsigned.close()
    (message,) = messages(engine, file_id)
    assert message.status == "pending" and "TELEAI_WEBHOOK_SECRET" in (message.last_error or "")
    assert SECRET not in (message.last_error or "")
    discard(engine, file_id)


def test_two_leaders_at_once_deliver_each_message_once(engine: Engine) -> None:
    first = Deliverer(lambda: uow(engine), settings())
    second = Deliverer(lambda: uow(engine), settings())
    try:
        with receiver() as hook:
            ids = [finished(engine, options={"webhook_url": hook.url("/status/200")})[1]
                   for _ in range(12)]  # fmt: skip
            threads = [threading.Thread(target=d.drain, args=(10.0,)) for d in (first, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            got = hook.at("/status/200")
    finally:
        first.close()
        second.close()
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(
        str(messages(engine, i)[0].id) for i in ids
    )


def test_backoff_grows_to_the_cap_with_equal_jitter() -> None:
    import random

    plain = WebhookSettings(backoff_base_seconds=10, backoff_max_seconds=3600)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 10), (2, 20), (5, 160), (9, 2560), (10, 3600), (30, 3600)]:
        delays = [backoff_seconds(attempt, plain, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
    # About a day: how many attempts fit in the default window.
    total, count = 0.0, 0
    while total < 24 * 3600:
        count += 1
        total += backoff_seconds(count, plain, random.Random(count))
    assert 25 <= count <= 60


# --- SSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/ok",
        "http://[::1]:{port}/ok",
        "http://10.20.30.40:{port}/ok",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
        "http://0.0.0.0:{port}/ok",
    ],
)
def test_without_the_allowlist_internal_targets_are_refused(engine: Engine, target: str) -> None:
    strict = Deliverer(lambda: uow(engine), settings(allowed_hosts=""))
    try:
        with receiver() as hook:
            url = target.format(port=hook.port)
            _, file_id = finished(engine, options={"webhook_url": url})
            message = deliver_until_final(engine, strict, file_id)
            assert hook.received == []  # refused before connecting
    finally:
        strict.close()
    (attempt,) = attempts(engine, message.id)
    assert message.status == "failed" and attempt.result == "stopped"
    assert attempt.error is not None and "refused to connect" in attempt.error
    assert attempt.address is None


def test_allow_private_opens_loopback_but_never_metadata() -> None:
    import ipaddress

    policy = AddressPolicy.from_settings(True, "")
    assert policy.refusal("localhost", ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal("x", ipaddress.ip_address("10.1.2.3")) is None
    assert (
        policy.refusal("x", ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    )
    listed = AddressPolicy.from_settings(False, "10.1.0.0/16, hooks.internal")
    assert listed.refusal("x", ipaddress.ip_address("10.1.2.3")) is None
    assert listed.refusal("x", ipaddress.ip_address("10.2.0.1")) == "a private address"
    assert listed.refusal("hooks.internal", ipaddress.ip_address("192.168.1.5")) is None
    strict = AddressPolicy()
    assert strict.refusal("x", ipaddress.ip_address("8.8.8.8")) is None
    assert strict.refusal("x", ipaddress.ip_address("100.64.0.1")) is not None  # CGNAT
    assert strict.refusal("x", ipaddress.ip_address("fe80::1")) == "a link-local address"
    assert strict.refusal("x", ipaddress.ip_address("fc00::1")) == "a private address"


def test_a_name_is_checked_on_what_it_resolves_to_now() -> None:
    # ``localhost`` is a public-looking name that resolves to loopback: the check runs on the
    # resolved addresses, the ones the connection then uses.
    addresses = resolve("localhost", 80)
    assert addresses and all(a.is_loopback for a in addresses)
    with pytest.raises(OSError, match="loopback"):
        AddressPolicy().check("localhost", addresses)


def test_the_options_refuse_unusable_urls_and_headers() -> None:
    from pipeline.options import InvalidOptions, parse_options

    for bad in (
        {"webhook_url": "ftp://example.org/x"},
        {"webhook_url": "http://user:pw@example.org/x"},
        {"webhook_url": "http://exa mple.org/"},
        {"webhook_url": "http://h/", "webhook_auth_header_name": "webhook-signature",
         "webhook_auth_header_value": "x"},
        {"webhook_url": "http://h/", "webhook_auth_header_name": "Bad Header",
         "webhook_auth_header_value": "x"},
    ):  # fmt: skip
        with pytest.raises(InvalidOptions):
            parse_options(bad)


def test_the_worker_role_may_write_and_deliver(engine: Engine, pg_admin: PgAdmin) -> None:
    from db import access
    from tests.db.app_roles import login_role

    with uow(engine) as session:
        user = make_user(session)
        row = make_file(session, user, metadata={"options": {"webhook_url": "http://h.invalid/"}})
    with login_role(pg_admin, "whworker", access.WORKER_ROLE) as role:
        worker = role.engine(engine.url.render_as_string(hide_password=False))
        as_worker = Deliverer(lambda: uow(worker), settings())
        try:
            with uow(worker) as session:  # the final status and its outbox row, as the worker
                finish(session, row.id, "completed")
            assert as_worker() >= 1  # claims (UPDATE ... RETURNING) as the worker role
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not attempts(
                engine, messages(engine, row.id)[0].id
            ):
                time.sleep(0.05)
        finally:
            as_worker.close()
            worker.dispose()
    (message,) = messages(engine, row.id)
    (attempt,) = attempts(engine, message.id)
    assert attempt.result == "retry" and "cannot resolve" in (attempt.error or "")
    discard(engine, row.id)
