"""``for_each`` rules, table-driven: the key's shape and ``baton validate``'s messages,
the failure limit by number and by percent, progress text, the step's output; and the
fan-out itself (``engine.runs.fanout.FanOut``) driving a real action body that records how many
items are in flight, on manual time."""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.actions.registry import Registry
from engine.errors import PlaybookInvalid
from engine.playbooks import model as playbook
from engine.playbooks import validate
from engine.playbooks.foreach import ForEach, Item, Tally, names, outcome, output
from engine.runs import fanout, items
from engine.runs import messages as msg
from engine.runs.state import RunState, RunStatus, new_steps
from engine.secrets import Masker
from engine.timing import ManualClock, ManualTimers

# --- the key and validate ---------------------------------------------------------------

STEP = """
    name: p
    params: {hosts: {type: list, default: [a]}}
    steps:
      - id: roll
        action: {action}
        for_each: {for_each}
        with: {with_}
"""


def problems(for_each: str, action: str = "log", with_: str = '{message: "{{ item }}"}') -> str:
    text = textwrap.dedent(STEP).replace("{for_each}", for_each)
    text = text.replace("{action}", action).replace("{with_}", with_)
    try:
        pb, lines = playbook.load_text(text, "p.yaml")
    except PlaybookInvalid as exc:
        return "\n".join(str(p) for p in exc.problems)
    found = validate.validate(pb, lines, "p.yaml", Registry.from_entry_points())
    return "\n".join(str(p) for p in found)


@pytest.mark.parametrize(
    ("for_each", "extra", "expected"),
    [
        ("[a, b]", {}, ""),
        ('"{{ params.hosts }}"', {}, ""),
        ('{items: "{{ params.hosts }}", as: host, parallel: 5, max_failures: "10%"}',
         {"with_": '{message: "{{ host }} {{ index }}"}'}, ""),
        ("{items: [a], parallel: 0}", {}, "for_each.parallel is how many items run at once: "
         "a whole number >= 1, not 0"),
        ("{items: [a], max_failures: lots}", {}, 'for_each.max_failures is a number of items '
         '(e.g. 2) or a percent (e.g. "10%"), not \'lots\''),
        ('{items: [a], max_failures: "120%"}', {}, "not '120%'"),
        ("{items: [a], as: 2x}", {}, "for_each.as '2x' is not a name"),
        ("{items: [a], as: params}", {}, "would hide the template name 'params'"),
        ("{items: [a], each: 1}", {}, "steps[0].for_each.each: unknown key"),
        ("[a]", {"action": "approval", "with_": "{approvers: {users: [bob]}}"},
         "for_each cannot run action 'approval': it parks its step"),
        ("[a]", {"action": "playbook", "with_": "{name: other}"},
         "for_each cannot run action 'playbook'"),
        ('"{{ params.hostz }}"', {}, "for_each.items: unknown param 'hostz'"),
        ('{items: [a], as: host}', {}, "unknown name 'item'"),
    ],
)  # fmt: skip
def test_validate_checks_the_shape_of_for_each(
    for_each: str, extra: dict[str, str], expected: str
) -> None:
    found = problems(for_each, **extra)
    if expected:
        assert expected in found
    else:
        assert found == ""


def test_item_names_are_unknown_outside_a_for_each_step() -> None:
    text = textwrap.dedent("""
        name: p
        steps:
          - id: one
            action: log
            with: {message: "{{ item }}"}
          - id: two
            action: log
            needs: one
            with: {message: "{{ steps.one.items }}"}
    """)
    pb, lines = playbook.load_text(text, "p.yaml")
    found = "\n".join(
        map(str, validate.validate(pb, lines, "p.yaml", Registry.from_entry_points()))
    )
    assert "unknown name 'item'" in found
    assert "steps.one has no 'items'" in found


# --- the rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_failures", "total", "limit"),
    [(0, 40, 0), (3, 40, 3), ("10%", 40, 4), ("10%", 9, 0), ("50%", 3, 1), ("100%", 7, 7),
     ("2.5%", 1000, 25)],
)  # fmt: skip
def test_the_failure_limit_is_a_number_or_a_percent_of_the_items(
    max_failures: int | str, total: int, limit: int
) -> None:
    assert ForEach(items=[], max_failures=max_failures).limit(total) == limit


def items_of(*statuses: str) -> list[Item]:
    return [Item(index=i, value=f"web{i + 1}", status=s) for i, s in enumerate(statuses)]


@pytest.mark.parametrize(
    ("statuses", "text", "failures"),
    [
        (["succeeded"] * 3, "3/3 done", ""),
        (["succeeded", "failed", "running", "waiting", "pending"],
         "2/5 done, 1 failed, 2 running", "web2"),
        (["failed"] * 5 + ["skipped"], "6/6 done, 5 failed",
         "web1, web2, web3 and 2 more"),
        (["timed_out", "interrupted", "cancelled"], "3/3 done, 2 failed", "web1, web2"),
    ],
)  # fmt: skip
def test_progress_reads_done_failed_running_and_names_the_failed(
    statuses: list[str], text: str, failures: str
) -> None:
    tally = Tally.of(items_of(*statuses))
    assert (tally.text(), tally.failures()) == (text, failures)


def test_progress_names_at_most_a_few_items_of_many() -> None:
    tally = Tally.of(items_of(*["failed"] * 1000))
    assert len(tally.failed_names) == 10
    assert tally.failures() == "web1, web2, web3 and 997 more"
    assert names(["a", "b"], 3) == "a, b"


@pytest.mark.parametrize(
    ("max_failures", "statuses", "status", "error"),
    [
        (0, ["succeeded", "succeeded"], "succeeded", None),
        (0, ["succeeded", "failed"], "failed", "1 of 2 items failed: web2"),
        (1, ["succeeded", "failed"], "succeeded", None),
        ("50%", ["failed", "failed", "succeeded", "skipped"], "succeeded", None),
        ("25%", ["failed", "failed", "succeeded", "skipped"], "failed",
         "2 of 4 items failed: web1, web2"),
    ],
)  # fmt: skip
def test_the_step_fails_once_more_items_failed_than_allowed(
    max_failures: int | str, statuses: list[str], status: str, error: str | None
) -> None:
    spec = ForEach(items=[], max_failures=max_failures)
    assert outcome(spec, items_of(*statuses)) == (status, error)


def test_the_output_lists_every_item_in_order() -> None:
    done = Item(index=0, value={"name": "db1"}, status="succeeded", attempts=2, output={"x": 1})
    bad = Item(index=1, value="web", status="failed", attempts=1, error="boom")
    assert output([done, bad]) == {
        "items": [
            {"item": {"name": "db1"}, "status": "succeeded", "output": {"x": 1}, "error": None,
             "attempts": 2},
            {"item": "web", "status": "failed", "output": {}, "error": "boom", "attempts": 1},
        ]
    }  # fmt: skip


# --- the fan-out, driven with a real action body -------------------------------------------


class Recorder:
    """An action body that counts items in flight and fails the items it is told to."""

    def __init__(self, fail: Callable[[Any, int], bool] = lambda item, attempt: False) -> None:
        self.in_flight = 0
        self.most = 0
        self.calls: list[tuple[Any, int]] = []
        self.fail = fail
        self.hold: asyncio.Event | None = None

    async def act(
        self, context: dict[str, Any], attempt: int, why: Callable[[], str | None]
    ) -> msg.Finished:
        item = context.get("host", context.get("item"))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.calls.append((item, attempt))
        try:
            if self.hold is not None:
                await self.hold.wait()
            for _ in range(3):
                await asyncio.sleep(0)  # other items in flight run meanwhile
        except asyncio.CancelledError:
            reason = why() or "cancelled"
            outcome = "timed_out" if reason == "timeout" else "cancelled"
            return msg.Finished("roll", attempt, outcome, error=f"{reason}")
        finally:
            self.in_flight -= 1
        if self.fail(item, attempt):
            return msg.Finished("roll", attempt, "failed", error=f"{item} broke")
        return msg.Finished(
            "roll", attempt, "succeeded", output={"host": item, "i": context["index"]}
        )


class Driver:
    """Plays the run's driver: keeps the news, commits (settles) it at once, and lets a
    test wait until a condition holds after some news."""

    def __init__(self) -> None:
        self.posted: list[Any] = []
        self.moved = asyncio.Event()

    def post(self, news: Any) -> None:
        self.posted.append(news)
        if isinstance(news, items.ItemNews) and news.committed is not None:
            items.settle(news.committed)
        self.moved.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                self.moved.clear()
                await self.moved.wait()

    def moves(self, status: str) -> list[Item]:
        news = [n for n in self.posted if isinstance(n, items.ItemNews)]
        return [i for n in news for i in n.items if i.status == status]


def fan(
    for_each: dict[str, Any], recorder: Recorder, **step: Any
) -> tuple[fanout.FanOut, Driver, ManualTimers]:
    """A FanOut over a one-step playbook; the driver is played by ``post``, which
    commits (settles) news at once and keeps it."""
    pb = playbook.Playbook.model_validate(
        {"name": "p", "steps": [{"id": "roll", "action": "log", "for_each": for_each, **step}]}
    )
    clock = ManualClock()
    timers = ManualTimers(clock)
    run = RunState(
        id="r1", playbook=pb, status=RunStatus.RUNNING, params={}, masked_params={},
        masker=Masker({}), trigger="cli", requested_by="alice", source={},
        created_at=clock.now(), steps=new_steps(pb),
    )  # fmt: skip
    state = run.steps["roll"]
    state.attempts = 1
    driver = Driver()

    async def nothing_stored() -> list[Item]:
        return []

    made = fanout.FanOut(
        run,
        state,
        post=driver.post,
        act=recorder.act,
        load=nothing_stored,
        now=clock.now,
        timers=timers,
    )
    return made, driver, timers


HOSTS = [f"h{i}" for i in range(1, 21)]


@pytest.mark.parametrize("parallel", [1, 3, 7, 20, 50])
async def test_no_more_than_parallel_items_are_ever_in_flight(parallel: int) -> None:
    recorder = Recorder()
    made, driver, _ = fan({"items": HOSTS, "as": "host", "parallel": parallel}, recorder)
    result = await made.run()
    assert result.outcome == "succeeded"
    assert recorder.most == min(parallel, len(HOSTS))
    assert [c[0] for c in recorder.calls] == HOSTS  # started in item order
    assert result.output["items"][4] == {
        "item": "h5", "status": "succeeded", "output": {"host": "h5", "i": 4}, "error": None,
        "attempts": 1,
    }  # fmt: skip
    news = [n for n in driver.posted if isinstance(n, items.ItemNews)]
    assert news[0].kind == "item_new" and len(news[0].items) == len(HOSTS)
    assert news[-1].tally.text() == "20/20 done"


@pytest.mark.parametrize(
    ("max_failures", "parallel", "bad", "started", "status"),
    [
        (0, 1, {"h2"}, 2, "failed"),  # h2 fails: nothing after it starts
        (1, 1, {"h2", "h4"}, 4, "failed"),
        (2, 1, {"h2", "h4"}, 20, "succeeded"),
        ("10%", 1, {"h1", "h2", "h3"}, 3, "failed"),  # 10% of 20 is 2
        ("10%", 1, {"h1", "h2"}, 20, "succeeded"),
        (0, 4, {"h1"}, 4, "failed"),  # the 3 already running finish
    ],
)
async def test_max_failures_stops_new_items_and_skips_the_rest(
    max_failures: int | str, parallel: int, bad: set[str], started: int, status: str
) -> None:
    recorder = Recorder(fail=lambda item, attempt: item in bad)
    made, _, _ = fan(
        {"items": HOSTS, "as": "host", "parallel": parallel, "max_failures": max_failures},
        recorder,
    )
    result = await made.run()
    assert len(recorder.calls) == started
    assert result.outcome == status
    statuses = [i["status"] for i in result.output["items"]]
    assert statuses.count("skipped") == (0 if status == "succeeded" else 20 - started)
    if status == "failed":
        assert result.error is not None and result.error.startswith(
            f"{len(bad & set(HOSTS[:started]))} of 20 items failed"
        )
        skipped = result.output["items"][-1]
        assert "more than max_failures" in skipped["error"]


async def test_each_item_is_retried_on_its_own_with_the_steps_backoff() -> None:
    recorder = Recorder(fail=lambda item, attempt: item == "b" and attempt < 3)
    made, driver, timers = fan(
        {"items": ["a", "b", "c"], "parallel": 3}, recorder,
        retry={"attempts": 3, "delay": "10s"},
    )  # fmt: skip
    task = asyncio.create_task(made.run())
    for _ in range(2):  # b waits for its retry on the engine's clock
        await driver.until(lambda: timers.next_at() is not None)
        timers.advance(timedelta(seconds=10))
    result = await task
    assert result.outcome == "succeeded"
    by_item = {i["item"]: (i["status"], i["attempts"]) for i in result.output["items"]}
    assert by_item == {"a": ("succeeded", 1), "b": ("succeeded", 3), "c": ("succeeded", 1)}
    waiting = driver.moves("waiting")
    assert [(i.value, i.attempts, i.error) for i in waiting] == [
        ("b", 1, "b broke"),
        ("b", 2, "b broke"),
    ]


async def test_an_item_over_the_steps_timeout_times_out_alone() -> None:
    recorder = Recorder()
    recorder.hold = asyncio.Event()
    made, driver, timers = fan(
        {"items": ["a", "b"], "parallel": 2, "max_failures": 2}, recorder, timeout="5s"
    )
    task = asyncio.create_task(made.run())
    await driver.until(lambda: recorder.in_flight == 2)
    timers.advance(timedelta(seconds=5))
    result = await task
    assert [(i["status"], i["error"]) for i in result.output["items"]] == [
        ("timed_out", "timeout"),
        ("timed_out", "timeout"),
    ]
    assert result.outcome == "succeeded"  # 2 failures allowed


async def test_cancelling_the_step_cancels_running_items_and_skips_the_rest() -> None:
    recorder = Recorder()
    recorder.hold = asyncio.Event()
    made, driver, _ = fan({"items": HOSTS, "parallel": 2}, recorder)
    task = asyncio.create_task(made.run())
    await driver.until(lambda: recorder.in_flight == 2)
    made.step.cancel_reason = "cancelled"
    task.cancel()
    result = await task
    assert result.outcome == "cancelled"
    statuses = [i["status"] for i in result.output["items"]]
    assert statuses[:2] == ["cancelled", "cancelled"]
    assert set(statuses[2:]) == {"skipped"}
    assert recorder.in_flight == 0


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ('"{{ params.n }}"', "for_each.items must give a list, but gave int 3"),
        ('"{{ params.missing.x }}"', "for_each.items: "),
    ],
)
async def test_a_list_that_is_not_one_fails_the_step_with_what_to_write(
    items: str, error: str
) -> None:
    import yaml

    made, _, _ = fan({"items": yaml.safe_load(items)}, Recorder())
    made.run_state.params = {"n": 3}
    result = await made.run()
    assert result.outcome == "failed"
    assert result.error is not None and result.error.startswith(error)


def test_the_readmes_for_each_example_validates(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()
    (example,) = re.findall(r"```yaml\n(name: rolling-restart\n.*?)```", readme, flags=re.S)
    path = tmp_path / "rolling-restart.yaml"
    path.write_text(example)
    playbooks, problems = validate.validate_paths([path], Registry.from_entry_points())
    assert problems == [] and len(playbooks) == 1
    (loaded, _) = playbooks["rolling-restart"]
    spec = loaded.steps[0].for_each
    assert spec is not None and (spec.name, spec.parallel, spec.limit(40)) == ("host", 5, 2)
