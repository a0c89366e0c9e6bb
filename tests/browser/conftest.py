"""Browser tests: Debian's Chromium driven by Playwright, against a real ``baton serve``.

- ``browser``: a Chromium per test module (``/usr/bin/chromium``, installed by
  ``.ci/services``; Playwright downloads no browser), launched without the services that
  would call home. Playwright's async API, on the module's own event loop (every browser
  test module says ``pytestmark = LOOP``): its sync API would keep a loop running in the
  main thread for as long as the browser lives, and every asyncio test after it in the
  same process (pytest-xdist mixes them) would fail to start its own. Launching Chromium
  costs about two seconds on this machine, so a module shares one.
- ``page``: a fresh context (no cookies) and page per test. Every request it sends to a
  host other than 127.0.0.1 or localhost is recorded, and the test fails if there was
  one: the dashboard loads nothing from elsewhere. A screenshot of the last page is saved
  as ``tests/artifacts/<test>.png`` (ignored by git) for whoever reads a failure.
- ``baton``: one ``baton serve`` process for the session (``tests.acceptance.serve``),
  with people under ``users:``: alice and bob (operators) and vic (viewer), the
  playbooks below, and one failed run (``failed_run``). Tests share it: each makes the
  runs it looks at, and finds them by id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

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
BOB = "bob-browser-token-0123456789"
ALERT_TOKEN = "alert-browser-token-0123456789"
REPO = Path(__file__).parent.parent.parent
DIR = "  dir: {type: string, required: false}\n"  # every run started by Server.start_run has it
FAIL = """
name: fail
params:
  dir: {type: string, required: false}
steps:
  - id: boom
    action: shell
    with: {script: "exit 3"}
"""
PLAYBOOKS = {
    "fail": FAIL,
    "chain": f"""
name: chain
description: Three steps; the second fails, so the third is skipped.
params:
{DIR}steps:
  - id: first
    action: log
    with: {{message: "first done"}}
  - id: second
    action: shell
    needs: first
    with: {{script: "exit 3"}}
  - id: third
    action: log
    needs: second
    with: {{message: "never"}}
""",
    "gated": f"""
name: gated
description: Prepares, waits for bob or alice to approve, then goes on.
params:
{DIR}steps:
  - id: prepare
    action: log
    with: {{message: "prepared"}}
  - id: gate
    action: approval
    needs: prepare
    with: {{approvers: [bob, alice], message: "go on?"}}
  - id: after
    action: log
    needs: gate
    with: {{message: "after the gate"}}
""",
    "hello": f"""
name: hello
description: Says hello to someone.
params:
{DIR}  who: {{type: string, required: true, help: who to greet}}
  times: {{type: int, default: 1, min: 1, max: 3}}
steps:
  - id: greet
    action: shell
    with: {{argv: [echo, "hello {{{{ params.who }}}}"]}}
""",
    "follow": f"""
name: follow
description: A step that logs a line, waits for the file `go` in its dir, logs again.
params:
{DIR}steps:
  - id: hold
    action: python
    with:
      call: "tests.fakes.pyfuncs:wait_for_file"
      args: {{path: "{{{{ params.dir }}}}/go"}}
  - id: done
    action: log
    needs: hold
    with: {{message: "all done"}}
""",
    "shell-follow": f"""
name: shell-follow
description: A shell step that prints a line, reads the fifo `shell-fifo` in its dir, prints again.
params:
{DIR}steps:
  - id: talk
    action: shell
    timeout: 2m
    with:
      script: |
        echo "shell waits"
        cat "$PARAM_DIR/shell-fifo"
        echo "shell goes on"
""",
    "pair": f"""
name: pair
description: Two steps side by side, each logging a line, then another once its file is there.
params:
{DIR}steps:
  - id: left
    action: python
    with:
      call: "tests.fakes.pyfuncs:wait_for_file"
      args: {{path: "{{{{ params.dir }}}}/left-go"}}
  - id: right
    action: python
    with:
      call: "tests.fakes.pyfuncs:wait_for_file"
      args: {{path: "{{{{ params.dir }}}}/right-go"}}
""",
    "nap": f"""
name: nap
description: Waits an hour (every morning at nine).
params:
{DIR}triggers:
  - schedule: {{cron: "0 9 * * *", timezone: UTC}}
steps:
  - id: sleep
    action: wait
    with: {{for: 1h}}
""",
}


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


LOOP = pytest.mark.asyncio(loop_scope="module")
"""The mark of every browser test: the module's loop, on which its Chromium runs."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
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
        f"  bob: {{token_sha256: {_sha(BOB)}, role: operator}}\n"
    )
    env = {
        "BATON_CONFIG": str(config),
        "BATON_ALERT_TOKEN": ALERT_TOKEN,
        "BATON_LOGIN_RATE": "1000/1m",  # every test logs in, from the same address
        "PYTHONPATH": str(REPO),  # for tests.fakes.pyfuncs
    }
    server = Server(root, f"sqlite:///{root / 'baton.db'}", PLAYBOOKS, env=env)
    try:
        server.start()
        server.wait_run(server.start_run("fail"))
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def failed_run(baton: Server) -> str:
    """The failed run the session's Baton starts with (nobody retries it)."""
    return str(baton.runs_of("fail")[0].id)


def url(server: Server, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def log_in(page: Page, baton: Server, token: str, path: str = "/") -> None:
    """Open ``path`` without a session: the login page, then ``path`` once logged in."""
    await page.goto(url(baton, path))
    await expect(page).to_have_url(url(baton, f"/login?next={path}"))
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(url(baton, path))


async def log_out(page: Page) -> None:
    await page.click("text=Log out")
    await expect(page.locator("#token")).to_be_visible()
