"""Fixtures of the browser tests: one demo server per framework and one Chromium for the session,
a fresh browser context (cookies, storage) per test."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, Person, demo_server, require_chromium
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

FRAMEWORKS = ["starlette", "werkzeug"]
_emails = itertools.count(1)


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
# while it is started, and later tests of the suite (anyio.run, asyncio.run) need the thread free.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    require_chromium()
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


class DemoServers:
    """One ``banata-mfa demo`` per framework for the whole session, started when first asked for
    (a parametrized session fixture would stop and restart them as the parameter alternates)."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.urls: dict[str, str] = {}
        #: Where each demo writes the one-time codes it "sends" by email or SMS (--mail-dir), by URL.
        self.mail: dict[str, Path] = {}

    def __getitem__(self, framework: str) -> str:
        if framework not in self.urls:
            mail = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="banata-mail-")))
            url = self.urls[framework] = self.stack.enter_context(demo_server(framework, "--mail-dir", str(mail)))
            self.mail[url] = mail
        return self.urls[framework]


@pytest.fixture(scope="session")
def demo_servers() -> Iterator[DemoServers]:
    with ExitStack() as stack:
        yield DemoServers(stack)


@pytest.fixture(params=FRAMEWORKS)
def demo(request: pytest.FixtureRequest, demo_servers: DemoServers) -> str:
    """The base URL of ``banata-mfa demo --framework <param>`` (http://localhost:PORT)."""
    return demo_servers[request.param]


@pytest.fixture
def context(browser: Browser, demo: str) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=demo, viewport={"width": 960, "height": 760})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def person(context: BrowserContext, demo: str, demo_servers: DemoServers, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Person]:
    """Someone at the demo in a fresh browser; afterwards, the page must have thrown nothing and
    broken no Content-Security-Policy rule (answers 4xx by design are not errors of the page)."""
    shots: Path = tmp_path_factory.mktemp(f"shots-{request.node.name}".replace("[", "-").replace("]", ""))
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    yield Person(page, demo, shots, f"user{next(_emails)}@example.com", mailbox=demo_servers.mail.get(demo))
    assert problems == []
