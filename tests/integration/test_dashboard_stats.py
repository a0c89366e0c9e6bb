"""``/stats`` through the real app and logins: the playbooks' table, one playbook's steps
and critical path, the charts inline (no namespace URL, nothing from elsewhere), the
picker, and bad input as a message."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.dashboard_support import dashboard, ids_in, start


def cells(page: str, attribute: str, value: str) -> list[str]:
    """The texts of the cells of the row ``<tr attribute="value">``."""
    row = page.split(f'<tr {attribute}="{value}">', 1)[1].split("</tr>", 1)[0]
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]


async def test_the_stats_page_shows_each_playbook_and_the_charts(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, vera = site.baton, await site.visitor("vera")  # a viewer reads stats too
        await start(baton, "chain")
        for who in ("a", "b"):
            await start(baton, "hello", who=who)
        page = await vera.text("/stats")
        assert '<a href="/stats" class="current">Stats</a>' in page
        assert ids_in(page, "data-playbook") == ["chain", "hello"]
        assert cells(page, "data-playbook", "chain")[:4] == ["chain", "1", "1", "0%"]
        assert cells(page, "data-playbook", "hello")[:4] == ["hello", "2", "2", "100%"]
        charts = re.findall(r'<figure id="chart-(\w+)" class="card chart"><svg ', page)
        assert charts == ["runs_per_day", "step_p95", "critical_path"]
        assert "Runs per day, the last 30 days" in page
        assert "one playbook&#x27;s stats show its steps" in page  # no playbook chosen
        assert re.findall(r"https?://", page) == [] and "xmlns" not in page
        assert '<option value="nap" >nap</option>' in page  # the picker: every playbook


async def test_one_playbook_in_detail(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, alice = site.baton, await site.visitor("alice")
        await start(baton, "chain")
        await start(baton, "chain")
        page = await alice.text("/stats?playbook=chain&days=7")
        assert '<option value="chain" selected>chain</option>' in page
        assert ids_in(page, "data-playbook") == ["chain"]
        assert ids_in(page, "data-step") == ["first", "second"]
        assert cells(page, "data-step", "second")[:2] == ["second", "2"]
        assert cells(page, "data-step", "second")[4] == "100%"  # failed every time
        path = page.split('id="critical-path">', 1)[1].split("</p>", 1)[0]
        assert "(2 of 2 recent runs): <strong>first</strong>" in path  # a manual clock: 0 s
        assert "Step duration, p95: chain" in page and "the last 7 days" in page

        nap = await alice.text("/stats?playbook=nap")  # loaded, never run
        assert 'id="no-stats"' in nap and "No runs of nap in the last 30 days" in nap


async def test_bad_input_is_a_message(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        alice = await site.visitor("alice")
        page = await alice.text("/stats?playbook=chian", status=404)
        assert "No playbook &#39;chian&#39;" in page and "Did you mean chain?" in page
        page = await alice.text("/stats?days=0", status=400)
        assert 'id="error"' in page and "days must be a whole number from 1 to 366" in page
        assert 'value="0"' in page  # the form shows what was typed
