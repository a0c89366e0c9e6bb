"""Baton's log set-up: libraries quiet unless DEBUG, JSON lines for shippers, the
README's examples of log and console lines are what Baton writes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot import logs, news
from engine import events as ev

README = (Path(__file__).parent.parent.parent / "README.md").read_text()
LIBRARIES = ("apscheduler.scheduler", "aiohttp.access", "slack_bolt", "sqlalchemy.engine")


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, put back as it was (levels of every logger touched included)."""
    root = logging.getLogger()
    names = (*logs.OWN, *logs.QUIET, *LIBRARIES, "baton.events")
    levels = {name: logging.getLogger(name).level for name in names}
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def captured(root: logging.Logger) -> io.StringIO:
    """Point Baton's handler at a buffer."""
    (handler,) = [h for h in root.handlers if h.name == logs.HANDLER]
    buffer = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    return buffer


def test_libraries_log_warnings_only_unless_debug(root: logging.Logger) -> None:
    logs.setup("INFO")
    out = captured(root)
    for name in LIBRARIES:
        logging.getLogger(name).info("Added job _fire to job store default")
        logging.getLogger(name).warning("%s is unhappy", name)
    logging.getLogger("baton.events").info("run r1 of p started")
    logging.getLogger("engine.schedules.service").info("schedule s1 fired")
    logging.getLogger("baton.slack.bolt").info("bolt's chatter")
    lines = out.getvalue().splitlines()
    assert not [line for line in lines if "Added job" in line or "chatter" in line]
    assert sum("is unhappy" in line for line in lines) == len(LIBRARIES)
    assert any(line.endswith("baton.events: run r1 of p started") for line in lines)
    assert any("schedule s1 fired" in line for line in lines)

    logs.setup("DEBUG")
    out = captured(root)
    logging.getLogger("apscheduler.scheduler").info("Added job _fire to job store default")
    assert "Added job" in out.getvalue()


def test_other_commands_than_serve_log_warnings_only(root: logging.Logger) -> None:
    logs.setup("INFO", quiet=True)
    out = captured(root)
    logging.getLogger("baton").info("chatty")
    logging.getLogger("engine.runs.engine").warning("listen")
    assert "chatty" not in out.getvalue() and "listen" in out.getvalue()


def test_json_lines_carry_the_run(root: logging.Logger) -> None:
    logs.setup("INFO", "json")
    out = captured(root)
    event = ev.RunFinished(
        run_id="r1",
        playbook="backup",
        at=datetime.now(UTC),
        status="failed",
        error="step copy failed: exit status 1\nmore",
        duration=65.0,
    )
    logs.EventLog.write(event)
    logging.getLogger("engine.alerts.router").info("alert 7 received")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "baton.events"
    assert first["message"] == (
        "run r1 of backup failed after 1m05s: step copy failed: exit status 1\nmore"
    )
    assert (first["run_id"], first["playbook"]) == ("r1", "backup")
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert second == {
        "time": second["time"],
        "level": "INFO",
        "logger": "engine.alerts.router",
        "message": "alert 7 received",
    }


def test_the_readmes_json_line_is_what_baton_writes(root: logging.Logger) -> None:
    (example,) = re.findall(r"```json\n(\{\"time\".*?)\n```", README, flags=re.S)
    shown = json.loads(example)
    logs.setup("INFO", "json")
    out = captured(root)
    logs.EventLog.write(
        ev.RunStarted(
            run_id=shown["run_id"],
            playbook=shown["playbook"],
            at=datetime.now(UTC),
            params={},
            requested_by="playbook:nightly-backup",
            trigger="schedule",
        )
    )
    written = json.loads(out.getvalue())
    assert written == {**shown, "time": written["time"]}


def test_the_readmes_console_news_is_what_the_console_prints() -> None:
    (block,) = re.findall(r"```text\n(» run .*?)```", README, flags=re.S)
    started, failed = block.splitlines()
    run_id = started.split()[2].rstrip(":")
    row = SimpleNamespace(
        id=run_id,
        playbook="disk-cleanup",
        trigger="alert",
        requested_by="alert:alertmanager",
        status="failed",
        error="step clean failed: exit status 1",
        failed_step="clean",
    )
    assert news.started_line(row) == started
    assert news.failed_line(row) == failed


def test_the_console_log_keeps_its_filters_and_comes_back(
    root: logging.Logger, tmp_path: Path
) -> None:
    logs.setup("INFO")
    out = captured(root)
    (handler,) = [h for h in root.handlers if h.name == logs.HANDLER]
    secret = logging.Filter("baton")  # any filter (Baton adds its masking one)
    handler.addFilter(secret)
    with logs.diverted(tmp_path / "sub" / "baton.log") as path:
        logging.getLogger("baton").info("to the file")
        (inside,) = [h for h in root.handlers if h.name == logs.HANDLER]
        assert secret in inside.filters
    logging.getLogger("baton").info("back on the terminal")
    assert "to the file" in path.read_text() and "to the file" not in out.getvalue()
    assert "back on the terminal" in out.getvalue()


def test_a_text_line_cannot_be_forged_from_what_someone_typed() -> None:
    """A name with a line break (or terminal escapes) stays on its own line, escaped."""
    record = logging.LogRecord(
        "baton.events", logging.INFO, __file__, 1, "run started: by %s",
        ("ci\n2026-12-01 07:00:00,000 WARNING baton: forged\x1b[31m",), None,
    )  # fmt: skip
    line = logs.TextFormatter(logs.TEXT).format(record)
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith("by ci\\n2026-12-01 07:00:00,000 WARNING baton: forged\\x1b[31m")


async def test_a_request_aiohttp_cannot_parse_is_one_warning_line(root: logging.Logger) -> None:
    """Anyone who reaches the port can send an 9 kB request line: one line each in the
    log, not a traceback."""
    from aiohttp import web

    logs.setup("INFO")
    buffer = captured(root)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        for request in (
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            assert (await reader.readline()).startswith(b"HTTP/1.0 400 Bad Request")
            writer.close()
            await writer.wait_closed()
    finally:
        await runner.cleanup()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert (
        "WARNING aiohttp.server: refused a bad HTTP request from 127.0.0.1 (400): Got more"
        in lines[0]
    )
    assert lines[0].endswith("...") and len(lines[0]) < 250
    assert "refused a bad HTTP request from 127.0.0.1 (400): Got more" in lines[1]
    assert "Traceback" not in buffer.getvalue()
