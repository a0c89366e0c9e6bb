"""``engine.actions.streaming.LineStream``: a command's output lines to ``ctx.log`` as they
come, in batches (lines that come meanwhile wait for the next one), masked before they
are cut, up to ``STREAM_LINES`` lines and a note."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.actions import streaming
from engine.actions.streaming import LINE_CAP, MORE, STREAM_LINES, STREAM_WIDTH, LineStream
from engine.secrets import Masker
from tests.fakes.actx import RecordingLog, make_ctx


async def settle() -> None:
    """Let every task that can run, run (no time passes on any clock here)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_first_lines_go_at_once_and_later_ones_wait_for_the_next_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "FLUSH", 3600.0)  # no second batch unless closed
    log = RecordingLog()
    lines = LineStream(make_ctx(log=log))
    lines.feed("stdout", b"one\ntw")
    lines.feed("stdout", b"o\n")
    await settle()
    assert log.lines == ["one", "two"]  # the first batch: what came before it went
    lines.feed("stdout", b"three\n")
    lines.feed("stderr", b"oops\n")
    await settle()
    assert log.lines == ["one", "two"]  # gathered for the next batch
    lines.feed("stdout", b"no newline at the end")
    await lines.close()
    assert log.lines == ["one", "two", "three", "(stderr) oops", "no newline at the end"]


async def test_a_quiet_stream_closed_before_its_quiet_time_sends_nothing() -> None:
    log = RecordingLog()
    lines = LineStream(make_ctx(log=log), quiet=3600.0)
    lines.feed("stdout", b"one\ntwo\n")
    await settle()
    await lines.close()  # a quick command: its output has the lines
    assert log.lines == []


async def test_a_quiet_stream_sends_what_came_once_its_quiet_time_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "FLUSH", 3600.0)
    log = RecordingLog()
    lines = LineStream(make_ctx(log=log), quiet=0.01)
    lines.feed("stdout", b"one\ntwo\n")

    async def sent() -> bool:
        return log.lines == ["one", "two"]

    await until(sent)  # the command runs on: what it printed so far goes, in one batch
    lines.feed("stdout", b"three\n")
    await settle()
    assert log.lines == ["one", "two"]  # the next batch waits its FLUSH
    await lines.close()
    assert log.lines == ["one", "two", "three"]


async def until(check: Any, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_one_batch_reaches_ctx_log_without_a_pause_between_lines() -> None:
    sent: list[tuple[int, str]] = []
    turn = 0

    async def log(message: str, level: str = "info") -> None:
        sent.append((turn, message))

    lines = LineStream(make_ctx(log=log))
    lines.feed("stdout", b"".join(b"line %d\n" % n for n in range(50)))
    await settle()
    turn = 1
    await lines.close()
    assert [m for _, m in sent] == [f"line {n}" for n in range(50)]
    assert {n for n, _ in sent} == {0}  # all in one go: one commit on a server


async def test_a_line_is_masked_before_it_is_cut() -> None:
    secret = "s3cr3t-token-value"
    log = RecordingLog()
    ctx = make_ctx(log=log, mask=Masker([secret]).mask_text)
    lines = LineStream(ctx, label="web1")
    head = "x" * (STREAM_WIDTH - 5)
    lines.emit("stdout", head + secret + " and more")  # the cut falls inside the secret
    lines.emit("stderr", "short\r")
    await lines.close()
    assert log.lines == [f"web1: {head}*** a [...]", "web1 (stderr): short"]
    assert all("s3cr" not in line for line in log.lines)


async def test_after_stream_lines_one_note_and_nothing_more() -> None:
    log = RecordingLog()
    lines = LineStream(make_ctx(log=log))
    long = b"y" * (LINE_CAP * 3)
    lines.feed("stdout", long + b"\n")
    lines.feed("stdout", b"".join(b"%d\n" % n for n in range(2 * STREAM_LINES)))
    await lines.close()
    assert len(log.lines) == STREAM_LINES + 1 and log.lines[-1] == MORE
    assert log.lines[0] == "y" * STREAM_WIDTH + " [...]"  # a long line: its head
    assert log.lines[1:3] == ["0", "1"]


def test_the_readme_states_the_shell_actions_streaming_in_force() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `shell` |"))
    assert f"longer than {streaming.QUIET:g} s also sends the first {STREAM_LINES} lines" in row
    assert streaming.FLUSH == 0.5 and "a batch every half second" in row
