"""Browser tests: Debian's Chromium driven by Playwright, against a real ``baton serve``.

- ``browser``: a Chromium per test (``/usr/bin/chromium``, installed by ``.ci/services``;
  Playwright downloads no browser), launched without the services that would call home.
  Playwright's async API, on the test's own event loop: its sync API would keep a loop
  running in the main thread for as long as the browser lives, and every asyncio test
  after it in the same process (pytest-xdist mixes them) would fail to start its own.
- ``page``: a fresh context (no cookies) and page per test. Every request it sends to a
  host other than 127.0.0.1 or localhost is recorded, and the test fails if there was
  one: the dashboard loads nothing from elsewhere. A screenshot of the last page is saved
  as ``tests/artifacts/<test>.png`` (ignored by git) for whoever reads a failure.
- ``baton``: one ``baton serve`` process for the session (``tests.acceptance.serve``),
  with people under ``users:``: alice (operator) and vic (viewer), and one failed run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.acceptance.serve import Server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent.parent / "artifacts"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
ALICE, VIC = "alice-browser-token-0123456789", "vic-browser-token-0123456789"
FAIL = """
name: fail
params:
  dir: {type: string, required: false}
steps:
  - id: boom
    action: shell
    with: {script: "exit 3"}
"""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context()
    elsewhere: list[str] = []

    def note(sent: object) -> None:
        url = str(getattr(sent, "url", ""))
        host = urlsplit(url).hostname
        if url.startswith(("http:", "https:", "ws:", "wss:")) and host not in LOCAL_HOSTS:
            elsewhere.append(url)

    context.on("request", note)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        if not opened.is_closed():
            await opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        await context.close()
    assert elsewhere == [], f"requests left this machine: {elsewhere}"


@pytest.fixture(scope="session")
def baton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("browser-baton")
    config = root / "baton.yaml"
    config.write_text(
        "users:\n"
        f"  alice: {{token_sha256: {_sha(ALICE)}, role: operator}}\n"
        f"  vic: {{token_sha256: {_sha(VIC)}, role: viewer}}\n"
    )
    server = Server(
        root, f"sqlite:///{root / 'baton.db'}", {"fail": FAIL}, env={"BATON_CONFIG": str(config)}
    )
    try:
        server.start()
        server.wait_run(server.start_run("fail"))
        yield server
    finally:
        server.close()


def url(server: Server, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"
