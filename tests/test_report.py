"""`wfkit report` (HTML page and PNG plots) and `wfkit logs export|compact`, through the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from browsers import CHROMIUM, launch
from durable_flows import run_still_executing
from llm_server import LLMServer
from test_analysis import empty_map_runs, map_runs

import wfkit as wf
from wfkit.cli._cli import main
from wfkit.logs._steplog import steps_dir
from wfkit.store._workspace import DB_NAME

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("Latency per step (successful attempts)", "Failures", "Proposed timeouts")
RETRY = wf.RetryPolicy(max_retries=1, base_delay=0.001, jitter=0)


def table_rows(html: str, columns: int) -> dict[str, list[str]]:
    """The rows of the report's tables in ``html``: each row's first cell, and the text of the
    ``columns`` cells after it."""
    rows = (re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html))
    return {cells[0]: cells[1 : columns + 1] for cells in rows if cells}


def mixed_runs() -> None:
    """Five runs: fetch retried once in two, answer failing for good in one."""
    flow = wf.Workflow("mixed")

    @flow.step(retry=RETRY)
    def fetch(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="m", tokens_in=3, tokens_out=1, cost_usd=0.01)
        if ctx.attempt == 1 and state["i"] < 2:
            raise ConnectionError("reset")

    @flow.step
    def answer(state: Any) -> None:
        if state["i"] == 4:
            raise ValueError("bad input")

    flow.chain("fetch", "answer")
    for i in range(5):
        flow.run({"i": i}, raise_on_error=False)


def outage_runs() -> None:
    """Three runs of a step that always fails (transiently), retried once each."""
    flow = wf.Workflow("outage")

    @flow.step(retry=RETRY)
    def call(state: Any) -> None:
        raise ConnectionError("service down")

    for _ in range(3):
        flow.run({}, raise_on_error=False)


def assert_full_report(out: Path, printed: str, attempts: int, runs: int, workflows: list[str]) -> str:
    page = out / "index.html"
    assert f"report written to {page}" == printed.strip()
    html = page.read_text()
    assert html.startswith("<!doctype html>")
    assert f"{attempts} attempts, {runs} runs" in html
    assert "<h2>Overview</h2>" in html
    for name in workflows:
        assert f'<section id="wf-{name}"><h2>Workflow <code>{name}</code></h2>' in html
        assert f'<img src="wf-{name}-latency.png"' in html
        assert f'<img src="wf-{name}-slowest-timeline.png"' in html
        for png in out.glob(f"wf-{name}-*.png"):
            assert PNG_MAGIC == png.read_bytes()[:8]
    for title in SECTIONS:
        assert html.count(f"<h3>{title}</h3>") == len(workflows)
    assert not re.search(r"\d\.\d{5,}", html)  # no raw seconds like 0.0001472
    return html


def test_report_writes_a_section_per_workflow(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`wfkit report --out DIR` writes index.html with an overview and a section per workflow,
    each with its tables and PNGs, durations formatted."""
    outage_runs()
    mixed_runs()
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    html = assert_full_report(out, capsys.readouterr().out, attempts=18, runs=8, workflows=["mixed", "outage"])
    assert "service down" in html  # failures with their messages
    assert "bad input" in html
    assert "only 5 successful attempts; need 20 for advice" in html


def test_report_shows_advice_with_its_samples(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """With enough runs the advice gives a timeout per step, the samples behind it and a deadline."""
    flow = wf.Workflow("steady")
    flow.step(lambda s: None, name="only")
    for _ in range(21):
        flow.run({})
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    html = (out / "index.html").read_text()
    capsys.readouterr()
    assert "Run deadline: <b>" in html
    assert "(from 21 runs)" in html
    assert re.search(r"<td class=\"text\">only</td><td class=\"\">21</td>", html)
    assert "p99 x 1.5" in html or "slowest success" in html


def test_report_counts_failed_runs_by_how_they_ended(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """A run whose failing step a fallback took over is not a failed run (the page says the step
    fell back); a run the deadline cut off, with no failed step attempt, is."""
    saved = wf.Workflow("saved")

    @saved.step(fallback="apologise")
    def llm(state: Any) -> None:
        if state["i"] % 2 == 0:
            raise wf.PermanentError("model refused")

    saved.step(lambda s: {"out": "sorry"}, name="apologise")
    for i in range(4):
        assert "succeeded" == saved.run({"i": i}).status
    slow = wf.Workflow("cut")

    @slow.step
    async def wait(state: Any) -> None:
        await asyncio.sleep(1)

    for _ in range(3):
        assert "timed_out" == slow.run({}, timeout=0.02, raise_on_error=False).status
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    html = (out / "index.html").read_text()
    assert (
        '<p>4 runs, <span class="ok">0 failed</span> (2 steps fell back to their fallback, '
        "in 2 runs that did not fail); "
    ) in html
    assert '<p>3 runs, <span class="bad">3 failed</span>; ' in html
    overview = html[html.index("<h2>Overview</h2>") : html.index("<section")]
    cells = re.findall(
        r"<tr><td class=\"text\">([^<]+)</td><td class=\"\">(\d+)</td><td class=\"\">(\d+)</td>"
        r"<td class=\"\">([^<]+)</td><td class=\"\">(\d+)</td>",
        overview,
    )
    assert [("cut", "3", "3", "100.0%", "0"), ("saved", "4", "0", "0.0%", "2")] == cells


def test_report_counts_a_map_steps_item_attempts(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """A map step's attempts are its items' (eight, in two runs of three items, one retried in
    each); the map's own row is none: not in the header's count, the latency table (five
    successes) nor the failures table."""
    map_runs(workspace)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    html = (out / "index.html").read_text()
    assert "<p>9 attempts, 2 runs;" in html  # eight items' attempts and one total

    def size_row(title: str) -> list[str]:
        table = html[html.index(f"<h3>{title}</h3>") :]
        row = re.search(r'<tr><td class="text">size</td>(.*?)</tr>', table)
        assert row is not None
        return re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))

    assert "5" == size_row("Latency per step (successful attempts)")[-1]
    assert ["8", "2", "1", "0", "37.5%", "0"] == size_row("Failures")


def test_report_counts_no_attempt_for_a_map_over_an_empty_list(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """Two runs whose map step had no items: the map made no attempt, so the header counts the
    other step's two, and neither the latency nor the failures table has a row for the map."""
    empty_map_runs(workspace)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    html = (out / "index.html").read_text()
    assert "<p>2 attempts, 2 runs;" in html
    for title in ("Latency per step (successful attempts)", "Failures"):
        table = html[html.index(f"<h3>{title}</h3>") :]
        table = table[: table.index("</table>")]
        assert ["total"] == re.findall(r'<tr><td class="text">([^<]+)</td>', table), title


def test_report_of_one_run_says_one_run_and_one_attempt(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """One run of a one-step workflow: the header says "1 attempt, 1 run", the section "1 run"."""
    flow = wf.Workflow("single")
    flow.step(lambda s: None, name="only")
    flow.run({})
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    html = (out / "index.html").read_text()
    assert "<p>1 attempt, 1 run;" in html
    assert '<p>1 run, <span class="ok">0 failed</span>; ' in html


def test_report_says_which_runs_it_lacks_still_executing(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """A report written while a run executes (its rows are exported when it ends) left it out without
    a word: its header now names it, and the command prints no warning besides."""
    single = wf.Workflow("single")
    single.step(lambda s: None, name="only")
    single.run({})
    out = tmp_path / "report"

    async def main_() -> None:
        run = await run_still_executing()
        assert 0 == await asyncio.to_thread(main, ["report", "--out", str(out)])
        html = (out / "index.html").read_text()
        assert "<p>1 attempt, 1 run;" in html  # the finished run alone
        assert f"<p>1 run still executing (long {run.run_id}) is not in this report: " in html
        assert "still executing" not in capsys.readouterr().err
        await run

    asyncio.run(main_())
    assert 0 == main(["report", "--out", str(out)])
    assert "still executing" not in (out / "index.html").read_text()


def test_report_renders_in_chromium(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """Opened in headless Chromium: every image loads, nothing spills sideways at 1280 px, each
    workflow has a section with its heading, and a screenshot can be taken."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    outage_runs()
    mixed_runs()
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((out / "index.html").as_uri())
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            assert len(images) >= 4
            assert all(done and width > 200 for done, width in images)
            assert 1280 >= page.evaluate("document.documentElement.scrollWidth")
            headings = page.eval_on_selector_all("section h2", "els => els.map(e => e.innerText)")
            assert ["Workflow mixed", "Workflow outage"] == headings
            links = page.eval_on_selector_all("nav a", "els => els.map(e => e.getAttribute('href'))")
            assert ["#wf-mixed", "#wf-outage"] == links
            assert "wfkit report" == page.title()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert PNG_MAGIC == (tmp_path / "report.png").read_bytes()[:8]


def test_report_error_messages_stay_readable_beside_long_step_names(
    workspace: Path, tmp_path: Path, capsys: Any
) -> None:
    """The commonest errors of a step with a long name: the message column, which may break anywhere,
    was squeezed to a few characters a line (a 429's message took 20 lines of 9 characters at 1280 px).
    It keeps a readable width now, the table scrolling sideways in its own box if it must."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    flow = wf.Workflow("customer-support-escalation-triage-with-very-long-name-v2")

    @flow.step(retry=RETRY)
    def classify_incoming_customer_message_with_large_language_model(state: Any) -> None:
        raise ConnectionError(
            "http://127.0.0.1:46383/v1/chat/completions answered HTTP 429 Too Many Requests for model "
            "'llama-3.1-8b-instruct-q4'; retry after 0.01 s: rate limited"
        )

    flow.run({}, raise_on_error=False)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((out / "index.html").as_uri())
            widths = page.eval_on_selector_all("td.message", "els => els.map(e => e.getBoundingClientRect().width)")
            assert widths
            assert min(widths) >= 300, widths
            assert 1280 >= page.evaluate("document.documentElement.scrollWidth")
        finally:
            browser.close()


PRICED = {"small-model": (0.0005, 0.0015), "other-small": (0.0002, 0.0006), "big-model": (0.005, 0.015)}


def two_model_runs(server: LLMServer) -> None:
    """Six runs of a flow comparing models: ``classify`` on the model its input names (a variant:
    small-model or other-small), ``lookup`` calling none, ``answer`` on big-model (its first call
    refused with a 500 and retried), ``polish`` on local-model, which no price table knows."""
    flow = wf.Workflow("triage")

    @flow.step()
    async def classify(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"label": (await ctx.llm.complete(f"classify {state['q']}", model=state["model"])).text}

    @flow.step()
    def lookup(state: dict[str, Any]) -> dict[str, Any]:
        return {"hits": 3}

    @flow.step(retry=RETRY)
    async def answer(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete(f"answer {state['q']} now", model="big-model")).text}

    @flow.step()
    async def polish(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"final": (await ctx.llm.complete(state["answer"], model="local-model")).text}

    flow.chain("classify", "lookup", "answer", "polish")
    client = wf.llm.ChatClient(server.url, model="small-model", prices=PRICED)
    server.script("ok", "500")  # the first run's answer: refused once
    for i in range(6):
        flow.run({"q": f"question {i}", "model": "small-model" if i % 2 else "other-small"}, llm=client)


def test_report_shows_cost_per_model(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """A flow that compares models (a step whose input switches its model, steps on different
    models): the report's cost section has a table per model, with the steps that called it, its
    calls (a failed one too), tokens in and out and cost, the figures of the step log's parquet
    files read back with pandas; a model no price table knows costs "-" (unknown), not $0; a
    step that called no model is in no row. Opened in headless Chromium, the table reads so and
    fits the page. The report summed cost per step only."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with LLMServer(model=None) as server:
        two_model_runs(server)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()

    rows = pd.read_parquet(steps_dir(workspace))
    called = rows[rows["model"].notna()].astype({"model": str})
    assert "lookup" not in set(called["step"])
    expected = {}
    for model, mine in called.groupby("model"):
        cost = mine["cost_usd"].sum(min_count=1)
        expected[model] = [
            model,
            ", ".join(dict.fromkeys(mine.sort_values("started_at")["step"].astype(str))),
            f"{len(mine):,}",  # one call per attempt here
            f"{int(mine['tokens_in'].sum()):,}",
            f"{int(mine['tokens_out'].sum()):,}",
            "-" if pd.isna(cost) else cost,
        ]
    assert "-" == expected["local-model"][-1]
    assert ["big-model", "answer", "7"] == expected["big-model"][:3]  # 6 answers, 1 refused

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((out / "index.html").as_uri())
            table = page.locator("h3:text-is('Cost per model') + p + .table-wrap table")
            head = table.locator("thead th").all_inner_texts()
            assert ["model", "steps", "model calls", "tokens in", "tokens out", "cost"] == head[:6]
            shown = [r.locator("td").all_inner_texts()[:6] for r in table.locator("tbody tr").all()]
            per_step = page.locator("h3:text-is('Cost') + .table-wrap table tbody tr").all()
            steps_shown = [r.locator("td").all_inner_texts()[:5] for r in per_step]
            table.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "cost.png"), full_page=True)
            assert 1280 >= page.evaluate("document.documentElement.scrollWidth")
        finally:
            browser.close()
    by_model = {row[0]: row for row in shown}
    assert set(expected) == set(by_model)
    for model, want in expected.items():
        got = by_model[model]
        assert want[:5] == got[:5], model
        if want[5] == "-":
            assert "-" == got[5]
        else:  # two significant digits at least, never "$0.0000" for a cost that is not 0
            assert float(got[5].lstrip("$").replace(",", "")) == pytest.approx(want[5], rel=0.05), (model, got)
    assert PNG_MAGIC == (tmp_path / "cost.png").read_bytes()[:8]
    # Per step, in the order a run meets them: lookup called nothing ($0); polish's cost is unknown.
    assert ["classify", "lookup", "answer", "polish"] == [row[0] for row in steps_shown]
    assert (["lookup", "0", "0", "0", "$0.0000"], ["polish", "6", "36", "48", "-"]) == (steps_shown[1], steps_shown[3])


def test_report_cost_agrees_with_the_accessor_on_unpriced_calls(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """A step that called a priced model in two runs and an unpriced one in the third costs "-"
    in the report (unknown), as ``df.wf.cost()`` gives NaN, not the priced calls' $0.0200 as if
    that were the whole; a step whose calls are all priced shows its exact sum, one that called no
    model $0. The report summed a part-priced step's known part."""
    flow = wf.Workflow("part-priced")

    @flow.step
    def ask(state: Any, ctx: wf.StepContext) -> None:
        if state["i"] == 2:  # as ChatClient records a model no price table knows: tokens, no cost
            ctx.record(model="local-llama", tokens_in=4, tokens_out=1)
        else:
            ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.01)

    @flow.step
    def answer(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="priced-1", tokens_in=2, tokens_out=2, cost_usd=0.005)

    @flow.step
    def tidy(state: Any) -> None:
        pass

    flow.chain("ask", "answer", "tidy")
    for i in range(3):
        flow.run({"i": i})
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    html = (out / "index.html").read_text()
    per_step = html.split("<h3>Cost</h3>", 1)[1].split("<h3>Cost per model</h3>", 1)[0]
    rows = table_rows(per_step, 4)
    assert {
        "ask": ["3", "12", "3", "-"],
        "answer": ["3", "6", "6", "$0.0150"],
        "tidy": ["0", "0", "0", "$0.0000"],
    } == rows
    table = wf.steps(workspace).wf.cost(by=None).loc["part-priced"]
    assert table.loc["ask", "cost_usd"] != table.loc["ask", "cost_usd"]  # NaN, as the page's "-"
    per_model = html.split("<h3>Cost per model</h3>", 1)[1]
    assert re.search(r"<td[^>]*>local-llama</td>(<td[^>]*>[^<]*</td>){4}<td[^>]*>-</td>", per_model)


def test_report_cost_of_an_attempt_mixing_priced_and_unpriced_calls_is_unknown(
    workspace: Path, tmp_path: Path, capsys: Any
) -> None:
    """One attempt that called priced-1 ($0.006) and then local-llama, which no price table knows,
    through ChatClient: its step costs "-" in the report, not the $0.0060 of its priced call; a
    step calling priced-1 alone shows its exact $0.0060."""
    client = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes"), prices={"priced-1": wf.llm.Price(1.0, 2.0)}
    )
    flow = wf.Workflow("mixed-call")

    @flow.step
    async def both(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c", model="priced-1")
        await ctx.llm.complete("a b c", model="local-llama")

    @flow.step
    async def priced(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c", model="priced-1")

    flow.edge("both", "priced")
    flow.run({}, llm=client)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    per_step = (out / "index.html").read_text().split("<h3>Cost</h3>", 1)[1].split("<h3>Cost per model</h3>", 1)[0]
    rows = table_rows(per_step, 4)
    assert {"both": ["2", "8", "2", "-"], "priced": ["1", "4", "1", "$0.0060"]} == rows
    # Under the table, what "-" means, since no step's cost there is $0 as if free.
    assert 'A cost of "-" is unknown: a call of that step had no known price' in per_step


def test_report_says_nothing_of_unknown_costs_when_every_call_is_priced(
    workspace: Path, tmp_path: Path, capsys: Any
) -> None:
    """The note on "-" comes only with an unknown cost: a flow whose calls are all priced shows its
    exact cost and no note."""
    client = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes"), prices={"priced-1": wf.llm.Price(1.0, 2.0)}
    )
    flow = wf.Workflow("all-priced")

    @flow.step
    async def priced(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c", model="priced-1")

    flow.run({}, llm=client)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    per_step = (out / "index.html").read_text().split("<h3>Cost</h3>", 1)[1].split("<h3>Cost per model</h3>", 1)[0]
    assert "$0.0060" in per_step
    assert "is unknown" not in per_step


def test_report_counts_no_model_call_for_a_tools_cost(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """A step whose only cost is a priced tool's (``ctx.tool``, no model called) shows 0 model calls
    and the tool's cost in both cost tables; the table per model counted 1 call under "(no model
    named)" where the table per step said 0."""
    from wfkit.llm._tools import ToolRegistry

    tools = ToolRegistry()

    @tools.tool(category="search", cost_estimate=0.003)
    def code_search(query: str) -> list[str]:
        return [f"def {query}(): ..."]

    client = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes"), prices={"priced-1": wf.llm.Price(1.0, 2.0)}
    )
    flow = wf.Workflow("tool-cost", tools=tools)

    @flow.step(tools=["code_search"])
    async def search(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"found": await ctx.tool("code_search", query="route")}

    @flow.step
    async def answer(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c", model="priced-1")

    flow.edge("search", "answer")
    flow.run({}, llm=client)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    capsys.readouterr()
    html = (out / "index.html").read_text()
    per_step, per_model = html.split("<h3>Cost</h3>", 1)[1].split("<h3>Cost per model</h3>", 1)
    assert {"search": ["0", "0", "0", "$0.0030"], "answer": ["1", "4", "1", "$0.0060"]} == table_rows(per_step, 4)
    # model: steps, model calls, tokens in, tokens out, cost
    assert {
        "priced-1": ["answer", "1", "4", "1", "$0.0060"],
        "(no model named)": ["search", "0", "0", "0", "$0.0030"],
    } == table_rows(per_model.split("</table>", 1)[0], 5)


def test_report_since_the_future_says_so_and_names_the_dates_held(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`--since` a date in the future exits 1 saying it is in the future and which dates the step log
    holds, and writes nothing (it wrote a report of 0 attempts, "No step attempts since 2999-01-01.",
    and exited 0, as if nothing had run)."""
    mixed_runs()
    held = wf.steps()["started_at"]
    out = tmp_path / "empty"
    assert 1 == main(["report", "--out", str(out), "--since", "2999-01-01"])
    err = capsys.readouterr().err
    first, last = (f"{t.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" for t in (held.min(), held.max()))
    assert err.startswith("wfkit report: since 2999-01-01 is in the future (2999-01-01 00:00 UTC; it is now ")
    assert err.endswith(
        f"), so no attempt has started since; the step log at {workspace / 'steps'} holds attempts from {first} "
        f"to {last}: give a time in that range\n"
    )
    assert not out.exists()


def test_report_since_a_past_time_after_every_run_says_there_are_no_attempts(
    workspace: Path, tmp_path: Path, capsys: Any
) -> None:
    """`--since` a time that has passed, after every run, is a question answered (nothing ran since):
    the page says no attempts were made since then, not that none were recorded, with no PNGs."""
    mixed_runs()
    since = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(2.1)
    out = tmp_path / "empty"
    assert 0 == main(["report", "--out", str(out), "--since", since])
    html = (out / "index.html").read_text()
    assert f"No step attempts since {since}." in html
    assert "recorded yet" not in html
    assert [] == sorted(p.name for p in out.glob("*.png"))
    capsys.readouterr()


def test_report_of_one_workflow(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`--workflow` limits the report to one workflow's runs."""
    outage_runs()
    mixed_runs()
    out = tmp_path / "one"
    assert 0 == main(["report", "--out", str(out), "--workflow", "outage", "--workspace", str(workspace)])
    html = (out / "index.html").read_text()
    assert "6 attempts, 3 runs" in html
    assert "wf-mixed" not in html
    capsys.readouterr()


def test_report_of_an_unknown_workflow_is_an_error_naming_those_there(
    workspace: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--workflow nosuch` exits 1 naming the workflows the log holds, and writes nothing (it wrote
    an empty report and exited 0); the step logs it read to say so are closed (their DuckDB
    connections were left open in a notebook's kernel)."""
    from wfkit.logs._summaries import StepLog

    opened: list[StepLog] = []
    runs = StepLog.runs
    monkeypatch.setattr(StepLog, "runs", lambda self, *a, **k: opened.append(self) or runs(self, *a, **k))
    outage_runs()
    out = tmp_path / "none"
    assert 1 == main(["report", "--out", str(out), "--workflow", "nosuch"])
    assert "no runs of workflow 'nosuch' in the step log; it holds runs of 'outage'" in capsys.readouterr().err
    assert not out.exists()
    assert len(opened) == 2
    assert [None, None] == [log._conn for log in opened]


def test_report_out_a_file_says_a_report_is_a_folder(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`--out` naming a file exits 1 saying a report is a folder, and leaves the file as it was; it
    said only "[Errno 17] File exists"."""
    outage_runs()
    out = tmp_path / "report.html"
    out.write_text("mine")
    assert 1 == main(["report", "--out", str(out)])
    assert (
        f"wfkit report: --out {out} is a file: a report is a folder (index.html and its plots); give a folder's "
        "path, new or one a report was written to\n"
    ) == capsys.readouterr().err
    assert "mine" == out.read_text()


def test_report_of_workflows_whose_names_differ_only_in_punctuation_or_script_keeps_their_plots_apart(
    workspace: Path, tmp_path: Path, capsys: Any
) -> None:
    """Each workflow's section shows its own plots: "support_triage" and "support-triage", or two
    names in Cyrillic, were given one file name (wf-support-triage, wf-x), the second workflow's plots
    overwriting the first's, so both sections showed the same figures."""
    names = ["support-triage", "support_triage", "заказы", "возвраты"]
    for name in names:
        flow = wf.Workflow(name)
        flow.step(lambda s: None, name="only")
        flow.run({})
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    html = (out / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+-latency\.png)"', html)
    assert len(names) == len(set(sources)), sources
    assert set(sources) == {png.name for png in out.glob("*-latency.png")}
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert len(names) == len(set(ids)), ids
    assert 'id="wf-support-triage"' in html  # a name that is its own slug keeps it
    for name in names:  # each section links one latency plot, a file of its own
        section = html.split(f"<code>{name}</code>", 1)[1].split("<section", 1)[0]
        (latency,) = re.findall(r'<img src="([^"]+-latency\.png)"', section)
        assert (out / latency).is_file()


def test_report_since_text_that_is_no_date_says_what_would_be(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`--since garbage` exits 1 with an example of an ISO date, not Python's bare message, and no folder."""
    outage_runs()
    out = tmp_path / "bad"
    assert 1 == main(["report", "--out", str(out), "--since", "garbage"])
    err = capsys.readouterr().err
    assert "since='garbage' is not a date or time: give an ISO 8601 one, e.g. 2026-12-01" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="until='yesterday' is not a date or time"):
        wf.steps(until="yesterday")


def test_report_leaves_eval_runs_out(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """Runs made by an eval live in their own part of the workspace: the report does not show them."""
    mixed_runs()
    suite = wf.evals.Suite(
        name="tiny",
        dataset=[{"id": "a", "i": 1}],
        workflow=serial_eval_flow(),
        scorers=[wf.evals.custom(lambda c, r: 1.0)],
    )
    wf.evals.evaluate(suite, progress=False)
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    html = (out / "index.html").read_text()
    capsys.readouterr()
    assert "12 attempts, 5 runs" in html
    assert "eval-flow" not in html


def serial_eval_flow() -> wf.Workflow:
    flow = wf.Workflow("eval-flow")
    flow.step(lambda s: {"out": 1}, name="only")
    return flow


def test_logs_export_prints_the_rows_it_exported(workspace: Path, capsys: Any) -> None:
    """`wfkit logs export` exports what the journal holds beyond parquet and says how much."""
    mixed_runs()
    wf.steps()
    with contextlib.closing(sqlite3.connect(workspace / DB_NAME)) as conn, conn:
        conn.execute("UPDATE runs SET exported_seq = 0")  # as if a crash came before recording
    assert 0 == main(["logs", "export"])
    assert f"exported 12 rows to {steps_dir(workspace)}" == capsys.readouterr().out.strip()
    assert 0 == main(["logs", "export"])
    assert f"exported 0 rows to {steps_dir(workspace)}" == capsys.readouterr().out.strip()
    assert 12 == len(wf.steps())


def test_logs_compact_prints_what_it_merged(workspace: Path, capsys: Any) -> None:
    """`wfkit logs compact` exports first, merges the small files, and says how many."""
    mixed_runs()
    assert 0 == main(["logs", "compact"])
    printed = capsys.readouterr().out.strip()
    folders = {p.parent for p in steps_dir(workspace).rglob("*.parquet")}
    assert f"compacted 5 files into {len(folders)} (exported " in printed
    assert printed.endswith(" rows first)")
    assert all(p.name.startswith("compact-") for p in steps_dir(workspace).rglob("*.parquet"))
    assert 12 == len(wf.steps())
    assert 0 == main(["logs", "compact"])
    assert "compacted 0 files into 0 (exported 0 rows first)" == capsys.readouterr().out.strip()
