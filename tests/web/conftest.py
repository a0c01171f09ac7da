"""A real browser against a real server: Playwright driving Debian's Chromium.

The server, its database clone and the worker are the API tests' (``tests.api.conftest``
``serving``): one server and one real worker per module. The browser is Debian's ``chromium``
package (the Playwright browser download is not reachable here), started once per module; each
test gets a fresh browser context (its own cookies). A missing Chromium fails the run loudly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.api.conftest import Served, redis_url, serving
from tests.conftest import PgAdmin

__all__ = ["redis_url"]

CHROMIUM = Path(os.environ.get("TELEAI_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Waits on what the page shows; generous because the worker transcribes on two shared cores.
STEP_MS = 15_000


@pytest.fixture(scope="module")
def web(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One server (API + web app) and one real worker for the module."""
    root = tmp_path_factory.mktemp("web")
    with serving(pg_admin, template_database, redis_url, root, with_worker=True) as served:
        yield served


@pytest.fixture(scope="module")
def web_only(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One server without a worker (the security tests need no transcription)."""
    root = tmp_path_factory.mktemp("web-security")
    with serving(pg_admin, template_database, redis_url, root) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium package",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield found
        finally:
            found.close()


def new_context(browser: Browser, served: Served, **options: object) -> BrowserContext:
    context = browser.new_context(base_url=served.base_url, **options)  # type: ignore[arg-type]
    context.set_default_timeout(STEP_MS)
    return context


@pytest.fixture
def context(browser: Browser, web: Served) -> Iterator[BrowserContext]:
    found = new_context(browser, web)
    try:
        yield found
    finally:
        found.close()


def sign_in(page: Page, served: Served, username: str, then: str = "/files") -> None:
    """Sign in through the login form, as a person would."""
    page.goto(f"/login?next={then}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", served.passwords[username])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{then}*")


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF_INPUT.search(html)
    assert found is not None, html[:2000]
    return found.group(1)


@contextmanager
def http_sign_in(served: Served, username: str) -> Iterator[httpx.Client]:
    """A plain HTTP client signed in through the login form (cookies kept by the client)."""
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        _form_login(client, served, username)
        yield client


def _form_login(client: httpx.Client, served: Served, username: str) -> None:
    form = client.get("/login")
    assert form.status_code == 200, form.text
    answer = client.post(
        "/login",
        data={
            "username": username,
            "password": served.passwords[username],
            "csrf_token": csrf_of(form.text),
            "next": "/files",
        },
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/files"
