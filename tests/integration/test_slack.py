"""The Slack front end in HTTP mode: signed requests into ``POST /slack/events``, the fake
Slack Web API recording what Baton sends back, the database holding the runs."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.slack import blocks
from engine.errors import BatonError
from storage import tables as t
from tests.fakes import slack as fake
from tests.integration.slack_support import (
    PLAYBOOKS,
    SlackBaton,
    buttons,
    no_jitter,
    served,
    settings_for,
    texts,
    write_playbooks,
)


@pytest.fixture
async def sb(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    async with fake.FakeSlack() as slack, served(settings_for(tmp_path, db_url, slack), slack) as s:
        yield s


async def audit_rows(sb: SlackBaton) -> list[Any]:
    return await sb.baton.store.all(sa.select(t.audit).order_by(t.audit.c.id))


# --- runs from a slash command -----------------------------------------------------------


async def test_slash_command_starts_a_run_with_one_card_in_the_channel(sb: SlackBaton) -> None:
    run = await sb.started(sb.command("run hello who=world"))
    await sb.settle(run["id"])

    posted = sb.slack.calls_to("chat.postMessage")
    cards = [c for c in posted if run["id"] in json.dumps(c.args.get("blocks"))]
    assert len(cards) == 1, "one card per run"
    assert cards[0].args["channel"] == "C0OPS"
    card = await sb.card_of(run["id"])
    shown = texts(card)
    assert "succeeded" in shown and "greet" in shown and "<@U0ALICE>" in shown
    assert "who=world" in shown
    (details,) = sb.slack.thread("C0OPS", card["ts"])  # step details go to the thread
    assert "`greet` output" in texts(details) and "hello world" in texts(details)
    assert buttons(card) == [], "a finished, successful run has no buttons"

    # the same run everywhere: the HTTP API and the database
    async with sb.session.get(f"{sb.url}/api/runs") as resp:
        listed = await resp.json()
    assert [r["id"] for r in listed] == [run["id"]]
    assert listed[0]["trigger"] == "slack" and listed[0]["requested_by"] == "U0ALICE"
    rows = [r for r in await audit_rows(sb) if r.action == "command:run"]
    assert rows[0].outcome == "ok" and rows[0].detail["via"] == "slack"
    assert rows[0].source["channel"] == "C0OPS"


async def test_a_forged_or_stale_request_is_refused_and_changes_nothing(sb: SlackBaton) -> None:
    body, ctype = fake.encode_command(fake.slash_command("run hello who=x"))
    status, _ = await fake.post_signed(
        sb.session, f"{sb.url}/slack/events", body, ctype, "not-the-secret"
    )
    assert status == 401
    stale = int(time.time()) - 3600
    status, _ = await sb.post(body, ctype, timestamp=stale)
    assert status == 401
    assert await sb.baton.store.all(sa.select(t.runs)) == []
    assert await audit_rows(sb) == []
    assert sb.slack.calls_to("chat.postMessage") == []


async def test_mistakes_get_a_short_answer_only_the_asker_sees(sb: SlackBaton) -> None:
    url = sb.slack.response_url("mistake")
    await sb.command("rnu hello", response_url=url)
    (answer,) = await sb.slack.wait_for("response_url")
    assert answer.args["response_type"] == "ephemeral"
    assert "Did you mean `run`" in answer.args["text"]
    assert "Traceback" not in json.dumps(answer.args)

    url = sb.slack.response_url("unknown")
    await sb.command("run helo who=x", response_url=url)
    (answer,) = await sb.slack.wait_for("response_url", lambda c: c.args["_name"] == "unknown")
    assert "Unknown playbook 'helo'" in answer.args["text"] and "`hello`" in answer.args["text"]


async def test_a_word_payload_in_a_command_is_kept(sb: SlackBaton) -> None:
    """bolt 1.30 drops form bodies that contain the word 'payload'; Baton reads them."""
    run = await sb.started(sb.command("run hello who=payload"))
    assert run["params"] == {"who": "payload"}
    await sb.settle(run["id"])


# --- failures: the thread, the file, the notice, Retry -------------------------------------


async def test_a_failed_run_tells_its_thread_the_on_call_channel_and_uploads_the_output(
    sb: SlackBaton, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_jitter(monkeypatch)
    run = await sb.started(sb.command("run boom"))
    await sb.settle(run["id"])
    card = await sb.card_of(run["id"])
    assert "failed" in texts(card)
    assert buttons(card) == [blocks.RETRY]

    thread = sb.slack.thread("C0OPS", card["ts"])
    step_msgs = [m for m in thread if "step `noisy` failed" in texts(m)]
    assert len(step_msgs) == 1
    assert "disk full" in texts(step_msgs[0])
    assert "line 3000 of the noisy step" in texts(step_msgs[0]), "the output's end is shown"
    (upload,) = sb.slack.files
    assert upload.channel == "C0OPS" and upload.thread_ts == card["ts"]
    assert "line 1 of the noisy step\n" in upload.text, "the whole output, from line 1"
    assert "line 3000 of the noisy step" in upload.text

    notices = [m for m in thread if ":rotating_light:" in texts(m)]
    assert len(notices) == 1
    assert "<!subteam^S0ONCALL>" in texts(notices[0]) and "<@U0CAROL>" in texts(notices[0])
    assert buttons(notices[0]) == [blocks.RETRY]
    # the playbook's notify.channel wins over the on-call setting
    (oncall,) = [m for m in sb.slack.messages("C0ALERTS") if ":rotating_light:" in texts(m)]
    assert "disk full" in texts(oncall) and "permalink" not in texts(oncall)
    assert sb.slack.messages("C0DEPLOYS") == []

    # Retry from the notice: the same run, attempt 2, the same card edited
    await sb.click(blocks.RETRY, run["id"], message_ts=notices[0]["ts"])
    await sb.slack.wait_for("chat.update", lambda c: "attempt 2" in json.dumps(c.args))
    await sb.settle(run["id"])
    again = await sb.card_of(run["id"])
    assert again["ts"] == card["ts"] and "attempt 2" in texts(again)
    later = sb.slack.thread("C0OPS", card["ts"])
    assert len([m for m in later if ":rotating_light:" in texts(m)]) == 2
    retried = [r for r in await audit_rows(sb) if r.action == "command:retry"]
    assert retried[0].outcome == "ok" and retried[0].actor == "U0ALICE"


async def test_cancel_button_stops_the_run_and_the_card_says_so(sb: SlackBaton) -> None:
    run = await sb.started(sb.command("run slow"))
    await sb.settle()
    card = await sb.card_of(run["id"])
    assert buttons(card) == [blocks.CANCEL]

    await sb.click(blocks.CANCEL, run["id"], user="U0BOB", message_ts=card["ts"])
    await sb.settle(run["id"])
    edited = await sb.card_of(run["id"])
    assert edited["ts"] == card["ts"] and edited["edits"] >= 1, "the same card, edited"
    assert "cancelled" in texts(edited) and buttons(edited) == [blocks.RETRY]
    assert len(sb.slack.messages("C0OPS")) == 1
    row = await sb.baton.store.one(sa.select(t.runs).where(t.runs.c.id == run["id"]))
    assert row is not None and row.status == "cancelled" and row.stopped_by == "U0BOB"


async def test_a_card_limited_by_slack_is_retried_after_retry_after(
    sb: SlackBaton, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_jitter(monkeypatch)
    sb.slack.rate_limit("chat.postMessage", times=2, retry_after=0)
    run = await sb.started(sb.command("run hello who=limits"))
    await sb.settle(run["id"])
    limited = [c for c in sb.slack.calls_to("chat.postMessage") if c.limited]
    assert len(limited) == 2
    assert "succeeded" in texts(await sb.card_of(run["id"]))


# --- the run form ------------------------------------------------------------------------


async def test_missing_params_open_a_form_built_from_the_schema(sb: SlackBaton) -> None:
    await sb.command("run deploy version=v1.2")
    (opened,) = await sb.slack.wait_for("views.open")
    view = opened.args["view"]
    fields = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert fields["param:env"]["element"]["type"] == "static_select"
    assert [o["value"] for o in fields["param:env"]["element"]["options"]] == ["staging", "prod"]
    assert fields["param:version"]["element"]["initial_value"] == "v1.2"
    assert fields["param:replicas"]["element"]["type"] == "number_input"
    assert fields["param:canary"]["element"]["type"] == "checkboxes"
    assert "initial_value" not in fields["param:token"]["element"]
    assert "secret" in fields["param:token"]["hint"]["text"]
    assert await sb.baton.store.all(sa.select(t.runs)) == [], "no run until the form is sent"

    def values(version: str) -> dict[str, Any]:
        return {
            "param:env": {"value": {"type": "static_select", "selected_option": {"value": "prod"}}},
            "param:version": {"value": {"type": "plain_text_input", "value": version}},
            "param:replicas": {"value": {"type": "number_input", "value": "3"}},
            "param:canary": {
                "value": {"type": "checkboxes", "selected_options": [{"value": "true"}]}
            },
            "param:token": {"value": {"type": "plain_text_input", "value": "hunter2"}},
        }

    meta = view["private_metadata"]
    bad = fake.view_submission(blocks.RUN_FORM, values("latest"), private_metadata=meta)
    status, text = await sb.post(*fake.encode_interactive(bad))
    assert status == 200
    answer = json.loads(text)
    assert answer["response_action"] == "errors"
    assert "pattern" in answer["errors"]["param:version"]
    assert await sb.baton.store.all(sa.select(t.runs)) == []

    good = fake.view_submission(blocks.RUN_FORM, values("v1.3"), private_metadata=meta)
    status, text = await sb.post(*fake.encode_interactive(good))
    assert status == 200 and text == ""
    await sb.slack.wait_for("chat.postMessage", lambda c: "deploy" in (c.args.get("text") or ""))
    run = await sb.latest_run()
    await sb.settle(run["id"])
    assert run["params"] == {
        "env": "prod",
        "version": "v1.3",
        "replicas": 3,
        "canary": True,
        "token": "***",
    }
    card = await sb.card_of(run["id"])
    assert "hunter2" not in json.dumps(sb.slack.calls and [c.args for c in sb.slack.calls])
    assert "token=***" in texts(card) and card["channel"] == "C0OPS"


# --- mentions, DMs, retried events -------------------------------------------------------


async def test_a_mention_is_answered_in_its_thread_and_its_run_card_goes_there(
    sb: SlackBaton,
) -> None:
    mention = fake.app_mention(f"<@{fake.BOT_USER_ID}> help", channel="C0OPS")
    status, _ = await sb.event(mention)
    assert status == 200
    (answer,) = await sb.slack.wait_for("chat.postMessage")
    assert answer.args["thread_ts"] == mention["event"]["ts"]
    assert "run PLAYBOOK" in texts(answer.args)

    asked = fake.app_mention(f"<@{fake.BOT_USER_ID}> run hello who=thread", channel="C0OPS")
    await sb.event(asked)
    await sb.slack.wait_for("chat.postMessage", count=2)
    run = await sb.latest_run()
    await sb.settle(run["id"])
    card = await sb.card_of(run["id"])
    assert card["thread_ts"] == asked["event"]["ts"]


async def test_an_event_slack_retries_is_handled_once(sb: SlackBaton) -> None:
    mention = fake.app_mention(f"<@{fake.BOT_USER_ID}> run hello who=once")
    await sb.event(mention)
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    status, _ = await sb.event(mention, headers=retry)
    assert status == 200
    await sb.settle()
    runs = await sb.baton.store.all(sa.select(t.runs))
    assert len(runs) == 1
    await sb.settle(runs[0].id)


async def test_a_dm_is_answered_in_the_dm(sb: SlackBaton) -> None:
    await sb.event(fake.im_message("playbooks", channel="D0ALICE"))
    (answer,) = await sb.slack.wait_for("chat.postMessage")
    assert answer.args["channel"] == "D0ALICE"
    assert "hello" in texts(answer.args) and "deploy" in texts(answer.args)


async def test_history_is_a_table_in_a_code_block(sb: SlackBaton) -> None:
    """Slack's font is proportional: a list aligned in columns is shown as code."""
    run = await sb.started(sb.command("run hello who=world"))
    await sb.settle(run["id"])
    await sb.event(fake.im_message("history", channel="D0ALICE"))
    (answer,) = await sb.slack.wait_for(
        "chat.postMessage", lambda c: c.args["channel"] == "D0ALICE"
    )
    (section,) = answer.args["blocks"]
    text = section["text"]["text"]
    assert text.startswith("```RUN ") and text.endswith("```") and run["id"] in text
    header, row = text.strip("`").splitlines()
    assert row.index("succeeded") == header.index("STATUS")


async def test_messages_from_bots_are_not_commands(sb: SlackBaton) -> None:
    """Another bot writing in Baton's DMs (an integration echoing text) starts nothing;
    the same line from a person does."""
    from_bot = fake.im_message("run hello who=bot", channel="D0ALICE")
    from_bot["event"].update({"bot_id": "B0OTHER", "subtype": "bot_message"})
    await sb.event(from_bot)
    await sb.settle()
    assert await sb.baton.store.all(sa.select(t.runs)) == []
    assert sb.slack.calls_to("chat.postMessage") == []
    run = await sb.started(sb.event(fake.im_message("run hello who=person")))
    assert run["params"] == {"who": "person"}
    await sb.settle(run["id"])


# --- access rules ----------------------------------------------------------------------

RULES = """
groups:
  sre: [U0BOB, "@admins"]
access:
  rules:
    - playbooks: deploy
      groups: [sre]
      channels: ["#ops"]
    - playbooks: boom
      users: [U0BOB]
    - playbooks: "*"
"""


@pytest.fixture
async def guarded(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    config = tmp_path / "baton.yaml"
    config.write_text(RULES)
    async with (
        fake.FakeSlack() as slack,
        served(settings_for(tmp_path, db_url, slack, config=config), slack) as s,
    ):
        yield s


async def answer_to(sb: SlackBaton, text: str, name: str, **kw: Any) -> str:
    await sb.command(text, response_url=sb.slack.response_url(name), **kw)
    (answer,) = await sb.slack.wait_for("response_url", lambda c: c.args["_name"] == name)
    return str(answer.args["text"])


async def test_access_rules_refuse_with_who_may_and_from_where(guarded: SlackBaton) -> None:
    run = "run deploy env=prod version=v1"
    said = await answer_to(guarded, run, "alice")
    assert said == "`deploy` can be run by group sre, from #ops"
    said = await answer_to(guarded, run, "bob-elsewhere", user="U0BOB", channel="C0DEPLOYS")
    assert said == "`deploy` can be run by group sre, from #ops"

    # carol is in group sre through the Slack user group @admins (usergroups.list)
    started = await guarded.started(guarded.command(run, user="U0CAROL"))
    assert started["requested_by"] == "U0CAROL"
    await guarded.settle(started["id"])
    rows = await audit_rows(guarded)
    outcomes = [(r.actor, r.action, r.outcome) for r in rows if r.action == "command:run"]
    assert outcomes == [
        ("U0ALICE", "command:run", "refused"),
        ("U0BOB", "command:run", "refused"),
        ("U0CAROL", "command:run", "ok"),
    ]
    assert len(await guarded.baton.store.all(sa.select(t.runs))) == 1


async def test_a_refusal_mentions_who_may_and_escapes_the_rest(guarded: SlackBaton) -> None:
    await guarded.command("run boom", response_url=guarded.slack.response_url("boom"))
    (answer,) = await guarded.slack.wait_for("response_url", lambda c: c.args["_name"] == "boom")
    shown = texts(answer.args)
    assert "<@U0BOB>" in shown and "&lt;@U0BOB&gt;" not in shown


async def test_help_lists_only_what_the_asker_may_run(guarded: SlackBaton) -> None:
    alice = await answer_to(guarded, "help", "alice")
    assert "hello" in alice and "deploy" not in alice
    carol = await answer_to(guarded, "help", "carol", user="U0CAROL")
    assert "deploy" in carol and "hello" in carol


# --- restarts ------------------------------------------------------------------------------


async def test_after_a_restart_the_same_card_is_edited_not_posted_again(
    tmp_path: Path, db_url: str
) -> None:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    async with fake.FakeSlack() as slack:
        settings = settings_for(tmp_path, db_url, slack)
        async with served(settings, slack) as first:
            run = await first.started(first.command("run slow"))
            await first.settle()
            card = await first.card_of(run["id"])
        posts_before = len(slack.calls_to("chat.postMessage"))
        async with served(settings, slack) as second:
            await second.slack.wait_for(
                "chat.update", lambda c: c.args["ts"] == card["ts"], count=1
            )
            await second.click(blocks.CANCEL, run["id"], message_ts=card["ts"])
            await second.settle(run["id"])
            after = await second.card_of(run["id"])
        assert after["ts"] == card["ts"] and "cancelled" in texts(after)
        assert len(slack.calls_to("chat.postMessage")) == posts_before, "no second card"
        assert len(slack.messages("C0OPS")) == 1


CHAIN = "name: chain\nsteps:\n" + "".join(
    f"  - id: s{i}\n    action: log\n    with: {{message: step {i}}}\n"
    + (f"    needs: [s{i - 1}]\n" if i else "")
    for i in range(30)
)


class SteppedClock:
    """Monotonic time that moves only when the cards wait: edits' spacing, without
    waiting for real."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_card_edits_are_spaced_by_the_interval_and_fold_events(
    tmp_path: Path, db_url: str
) -> None:
    write_playbooks(tmp_path / "playbooks", {**PLAYBOOKS, "chain": CHAIN})
    async with fake.FakeSlack() as slack:
        settings = settings_for(tmp_path, db_url, slack, slack_card_interval=1.0)
        async with served(settings, slack) as sb:
            assert sb.front.cards is not None
            clock = SteppedClock()
            sb.front.cards.monotonic, sb.front.cards.sleep = clock.monotonic, clock.sleep
            stamps: list[float] = []
            original = sb.front.client.chat_update

            async def stamped(**kw: Any) -> Any:
                stamps.append(clock.now)
                return await original(**kw)

            sb.front.client.chat_update = stamped  # type: ignore[method-assign]
            run = await sb.started(sb.command("run chain"))
            await sb.settle(run["id"])
            card = await sb.card_of(run["id"])
    assert "succeeded" in texts(card) and texts(card).count(":white_check_mark:") == 31
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) >= 2 and clock.waits, "the card was edited, and edits waited"
    assert all(gap >= 1.0 for gap in gaps), gaps
    assert all(0 < w <= 1.0 for w in clock.waits)
    # 30 steps publish 60+ events; the card is edited far fewer times than that
    assert len(stamps) < 30


@pytest.mark.parametrize(
    ("fake_tokens", "extra", "needle"),
    [
        ({"bot_token": "xoxb-real"}, {}, "Slack refused SLACK_BOT_TOKEN (invalid_auth)"),
        (
            {"app_token": "xapp-real"},
            {"slack_app_token": "xapp-test"},
            "Slack refused SLACK_APP_TOKEN (invalid_auth)",
        ),
    ],
    ids=["bot-token", "app-token"],
)
async def test_a_wrong_token_stops_baton_at_start_with_what_to_do(
    tmp_path: Path, fake_tokens: dict[str, str], extra: dict[str, str], needle: str
) -> None:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    async with fake.FakeSlack(**fake_tokens) as slack:
        with pytest.raises(BatonError, match=re.escape(needle)):
            async with served(settings_for(tmp_path, db, slack, **extra), slack):
                pass


async def test_a_secret_typed_with_missing_params_is_not_carried_into_the_form(
    sb: SlackBaton,
) -> None:
    mention = fake.app_mention(f"<@{fake.BOT_USER_ID}> run deploy token=hunter3 env=prod")
    await sb.event(mention)
    (answer,) = await sb.slack.wait_for("chat.postMessage")
    shown = json.dumps(answer.args)
    assert "version" in shown and "token=***" in shown
    assert "hunter3" not in shown, "the secret is asked again in the form, never echoed"
    assert "hunter3" not in json.dumps([c.args for c in sb.slack.calls])


OUTER = """
name: outer
steps:
  - id: inner
    action: playbook
    with: {name: gated}
"""

GATED = """
name: gated
steps:
  - id: ask
    action: approval
    with: {message: "Go on?", approvers: {users: [U0BOB]}}
"""


async def test_a_child_runs_prompt_goes_to_its_parents_thread(tmp_path: Path, db_url: str) -> None:
    write_playbooks(tmp_path / "playbooks", {**PLAYBOOKS, "outer": OUTER, "gated": GATED})
    async with (
        fake.FakeSlack() as slack,
        served(settings_for(tmp_path, db_url, slack), slack) as sb,
    ):
        run = await sb.started(sb.command("run outer"))
        await sb.slack.wait_for("chat.postMessage", lambda c: "Go on?" in json.dumps(c.args))
        await sb.settle()
        card = await sb.card_of(run["id"])
        (prompt,) = [m for m in slack.thread("C0OPS", card["ts"]) if "Go on?" in texts(m)]
        assert buttons(prompt) == [blocks.APPROVE, blocks.REJECT]
        tops = [m for m in slack.messages("C0OPS") if not m.get("thread_ts")]
        assert len(tops) == 1, "the child has no card of its own"
        await sb.click(blocks.APPROVE, prompt_gate(prompt), user="U0BOB")
        await sb.settle(run["id"])
        assert "succeeded" in texts(await sb.card_of(run["id"]))


def prompt_gate(message: dict[str, Any]) -> str:
    (gate,) = [
        e["value"]
        for b in message.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == blocks.APPROVE
    ]
    return str(gate)
