"""A real Prometheus Alertmanager for the acceptance suite, and Baton serving next to it
with Slack pointed at the fake.

``Alertmanager`` runs Debian's ``prometheus-alertmanager`` (installed by ``.ci/services``)
on free ports with clustering off, its storage in the test's folder, and one receiver: a
webhook to Baton's ``POST /alerts/alertmanager`` with the alert token as a bearer token
and ``send_resolved``. Its grouping timers are a second, so a notification follows an
alert (or its end) within about a second, and an alert still firing is notified again
every ``repeat`` (2 s). Alerts are pushed with the real ``amtool``.

``SlackServer`` is the durability suite's ``Server`` (a real ``baton serve``) with the
alert token and the fake Slack's URL in its environment. Its calls block, so an async
test runs them in a thread (``asyncio.to_thread``): the fake Slack lives on the test's
event loop and must keep answering meanwhile.

Nothing sleeps for a fixed time: ``eventually`` polls a probe up to a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from tests.acceptance.serve import Server, free_port

T = TypeVar("T")

POLL = 0.05
BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's name


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float = 20.0, what: str = "condition"
) -> T:
    """Await ``probe`` every ``POLL`` s until it returns something truthy (returned)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {within:.0f}s")
        await asyncio.sleep(POLL)


def binaries() -> tuple[str, str]:
    """The Alertmanager server and ``amtool``; an AssertionError says how to get them."""
    server = next((path for name in BINARIES if (path := shutil.which(name))), None)
    amtool = shutil.which("amtool")
    if server is None or amtool is None:
        raise AssertionError(
            "Prometheus Alertmanager is not installed: run `bash .ci/services` as root "
            "(apt-get install prometheus-alertmanager)"
        )
    return server, amtool


class SlackServer(Server):
    """``baton serve`` with the alert webhooks on and run cards going to a fake Slack."""

    def __init__(
        self,
        root: Path,
        db_url: str,
        playbooks: dict[str, str],
        *,
        alert_token: str,
        slack_url: str,
        bot_token: str = "xoxb-test",
    ) -> None:
        super().__init__(root, db_url, playbooks)
        self.extra = {
            "BATON_ALERT_TOKEN": alert_token,
            "SLACK_BOT_TOKEN": bot_token,
            "SLACK_SIGNING_SECRET": "acceptance-signing-secret",  # HTTP mode: no socket
            "SLACK_API_URL": slack_url,
            "BATON_SLACK_CARD_INTERVAL": "0.1",
        }

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body


class Alertmanager:
    """One ``prometheus-alertmanager`` process whose only receiver is Baton's webhook."""

    def __init__(self, root: Path, webhook: str, token: str, repeat: str = "2s") -> None:
        self.server, self.amtool_path = binaries()
        self.repeat = repeat
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.webhook = webhook
        self.token = token
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = root / "alertmanager.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        # JSON is YAML: no quoting surprises for the token or the URL
        receiver = {
            "name": "baton",
            "webhook_configs": [
                {
                    "url": self.webhook,
                    "send_resolved": True,
                    "http_config": {"authorization": {"type": "Bearer", "credentials": self.token}},
                }
            ],
        }
        route = {
            "receiver": "baton",
            "group_by": ["alertname", "instance"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": self.repeat,  # a still-firing alert is notified again
        }
        # An alert pushed without an end is resolved by Alertmanager after this; the test
        # ends its alert itself (amtool --end) long before.
        body = {"global": {"resolve_timeout": "5m"}, "route": route, "receivers": [receiver]}
        return json.dumps(body, indent=2)

    async def start(self, within: float = 20.0) -> None:
        assert self.proc is None, "already running"
        config = self.root / "alertmanager.yml"
        config.write_text(self.config())
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                self.server,
                f"--config.file={config}",
                f"--storage.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url={self.url}",
                "--cluster.listen-address=",  # no gossip: a single instance
                "--log.level=debug",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.root,
            )
        proc = self.proc

        async def ready() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"alertmanager exited ({proc.returncode}):\n{self.log()}")
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{self.url}/-/ready", timeout=aiohttp.ClientTimeout(2)) as resp,
                ):
                    return resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await eventually(ready, within, "alertmanager ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, within: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it did not exit ``within`` seconds; the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                return await asyncio.wait_for(proc.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise AssertionError(f"alertmanager ignored SIGTERM:\n{self.log()}") from None
        return proc.returncode

    # --- amtool ---------------------------------------------------------------------

    async def amtool(self, *args: str, within: float = 20.0) -> str:
        """Run ``amtool`` against this Alertmanager; its output (a failure raises)."""
        proc = await asyncio.create_subprocess_exec(
            self.amtool_path,
            f"--alertmanager.url={self.url}",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.root,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), within)
        except TimeoutError:
            proc.kill()
            await proc.communicate()
            raise AssertionError(f"amtool {' '.join(args)}: no answer in {within:.0f}s") from None
        text = out.decode(errors="replace")
        assert proc.returncode == 0, f"amtool {' '.join(args)} exited {proc.returncode}: {text}"
        return text

    async def add(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        *,
        start: datetime,
        end: datetime | None = None,
        generator_url: str | None = None,
    ) -> None:
        """``amtool alert add``: fire an alert, or with ``end`` in the past, end it."""
        args = ["alert", "add", *(f"{k}={v}" for k, v in labels.items())]
        args += [f"--annotation={k}={v}" for k, v in (annotations or {}).items()]
        args.append(f"--start={rfc3339(start)}")
        if end is not None:
            args.append(f"--end={rfc3339(end)}")
        if generator_url is not None:
            args.append(f"--generator-url={generator_url}")
        await self.amtool(*args)


def rfc3339(moment: datetime) -> str:
    assert moment.tzinfo is not None, "a time without a zone"
    return moment.isoformat(timespec="milliseconds")
