"""Tests for wfkit.llm._tools: the registry, route-bound tools, and tool calls in step events."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import wfkit as wf
from wfkit.llm._tools import ToolInfo, ToolNotBoundError, ToolRegistry, UnknownToolError, example_registry
from wfkit.testing import test_mode


def registry() -> ToolRegistry:
    tools = ToolRegistry()

    @tools.tool(category="database", cost_estimate=0.002, avg_latency_ms=50, reliability=0.99)
    async def orders_db(order_id: int) -> dict[str, Any]:
        """Look an order up."""
        return {"id": order_id, "total": 120}

    @tools.tool(category="search", cost_estimate=0.001)
    def faq_search(query: str) -> list[str]:
        return [f"faq about {query}", threading.current_thread().name]

    return tools


def triage(tools: Any = None, call: str = "faq_search", **arguments: Any) -> wf.Workflow:
    """classify routes refunds to lookup (orders_db bound) and the rest to answer (faq_search bound)."""
    flow = wf.Workflow("triage", tools=tools)

    @flow.step
    def classify(state: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "refund" if "money" in state["query"] else "other"}

    @flow.step
    async def lookup(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"order": await ctx.tool("orders_db", order_id=17)}

    @flow.step
    async def answer(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": await ctx.tool(call, **(arguments or {"query": state["query"]}))}

    flow.route(
        "classify",
        wf.when("kind", "eq", "refund") >> wf.go("lookup", tools=["orders_db"]),
        default=wf.go("answer", tools=["faq_search"]),
    )
    return flow


def test_a_step_calls_the_tools_its_route_bound() -> None:
    """Each branch uses its own bound tool; results come back, sync tools run off the event loop."""
    flow = triage(registry())
    refund = flow.run({"query": "money back"}, workspace=False)
    other = flow.run({"query": "opening hours"}, workspace=False)
    assert {"id": 17, "total": 120} == refund.state["order"]
    assert "faq about opening hours" == other.state["answer"][0]
    assert "MainThread" != other.state["answer"][1]


def test_calling_an_unbound_tool_is_a_clear_permanent_error() -> None:
    """A tool the route did not bind fails the step before it runs, naming step, tool, bound tools and fix."""
    flow = triage(registry(), call="orders_db", order_id=1)
    with test_mode():
        run = flow.run({"query": "hours"}, workspace=False, raise_on_error=False)
    event = run.events[-1]
    assert ("answer", "failed", "permanent", "ToolNotBoundError") == (
        event.step,
        event.status,
        event.error_kind,
        event.error_type,
    )
    message = event.error_message or ""
    assert "step 'answer' called tool 'orders_db'" in message
    assert "bound 'faq_search'" in message
    assert "wf.go('answer', tools=[..., 'orders_db'])" in message
    assert event.extra is None  # nothing ran, nothing recorded


def test_an_unbound_tool_in_the_entry_step_names_the_steps_own_tools() -> None:
    """The entry step, which no route leads to, is told to bind a tool with @flow.step(tools=...),
    not with a wf.go(...) that would bind nothing to it; so is a step reached by an edge."""
    flow = wf.Workflow("entry-tools", tools=registry())

    @flow.step(tools=["faq_search"])
    async def classify(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"order": await ctx.tool("orders_db", order_id=1)}

    @flow.step
    async def after(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"hits": await ctx.tool("faq_search", query="x")}

    flow.edge("classify", "after")
    with test_mode():
        run = flow.run({}, workspace=False, raise_on_error=False)
    event = run.events[-1]
    assert ("classify", "ToolNotBoundError") == (event.step, event.error_type)
    assert (
        "step 'classify' called tool 'orders_db', but it may call 'faq_search': it is the workflow's entry step, "
        "which no route leads to, so its own tools are all it may call (a route's wf.go(..., tools=...) binds "
        "tools only to the step it leads to); declare them on the step: "
        "@flow.step(tools=['faq_search', 'orders_db']) (in a flow spec, tools: [faq_search, orders_db] under the "
        "step)"
    ) == event.error_message

    flow2 = wf.Workflow("edge-tools", tools=registry())
    flow2.step(tools=["orders_db"])(classify)
    flow2.step(after)
    flow2.edge("classify", "after")
    with test_mode():
        run = flow2.run({}, workspace=False, raise_on_error=False)
    message = run.events[-1].error_message or ""
    assert "step 'after' called tool 'faq_search', but it may call no tools: it is reached by an edge" in message
    assert "@flow.step(tools=['faq_search'])" in message


def test_a_tool_called_with_arguments_it_does_not_take_says_what_it_takes() -> None:
    """ctx.tool("faq_search", q=...) failed with Python's "registry.<locals>.faq_search() got an
    unexpected keyword argument 'q'"; the step now fails (permanent, before the tool runs) naming the
    tool, its parameters and the call to write. A TypeError the tool raises itself is left as it is."""
    flow = triage(registry(), q="hours")
    with test_mode():
        run = flow.run({"query": "hours"}, workspace=False, raise_on_error=False)
    event = run.events[-1]
    assert ("answer", "failed", "permanent", "TypeError") == (
        event.step,
        event.status,
        event.error_kind,
        event.error_type,
    )
    assert (
        "tool 'faq_search' takes (query: str), and was called with q=... "
        "(it has no parameter 'q'; 'query' is missing): call ctx.tool('faq_search', query=...)"
    ) == event.error_message

    tools = ToolRegistry()

    @tools.tool()
    def strict(query: str) -> None:
        raise TypeError("the tool's own complaint")

    own = wf.Workflow("own", tools=tools)

    @own.step(tools=["strict"])
    async def answer(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": await ctx.tool("strict", query=state["query"])}

    with test_mode():
        mine = own.run({"query": "hours"}, workspace=False, raise_on_error=False)
    assert "the tool's own complaint" == mine.events[-1].error_message


def test_tool_calls_land_in_the_step_event() -> None:
    """Each call is listed in extra["tool_calls"], and its cost estimate adds to cost_usd."""
    flow = wf.Workflow("twice", tools=registry())

    @flow.step(tools=["orders_db", "faq_search"])
    async def work(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        await ctx.tool("orders_db", order_id=1)
        await ctx.tool("faq_search", query="x")
        return {}

    event = flow.run({}, workspace=False).events[0]
    calls = (event.extra or {})["tool_calls"]
    assert [("orders_db", True, 0.002), ("faq_search", True, 0.001)] == [
        (c["tool"], c["ok"], c["cost_usd"]) for c in calls
    ]
    assert all(c["latency_ms"] >= 0 for c in calls)
    assert pytest.approx(0.003) == event.cost_usd
    assert ("orders_db", "faq_search") == event.tools


def test_a_failing_tool_is_recorded_and_retried() -> None:
    """A tool's transient error is recorded as a failed call on the retry event, then retried."""
    tools = ToolRegistry()
    attempts = []

    @tools.tool(category="search")
    async def flaky(ctx: wf.StepContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise wf.TransientError("503 upstream")
        return "fine"

    flow = wf.Workflow("flaky", tools=tools)

    @flow.step(tools=["flaky"], retry=wf.RetryPolicy(max_retries=2, base_delay=0.01))
    async def use(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"out": await ctx.tool("flaky")}

    with test_mode():
        run = flow.run({}, workspace=False)
    retry, ok = run.events
    assert [1, 2] == attempts
    assert [{"ok": False, "error": "TransientError"}] == [
        {k: c[k] for k in ("ok", "error")} for c in (retry.extra or {})["tool_calls"]
    ]
    assert [True] == [c["ok"] for c in (ok.extra or {})["tool_calls"]]
    assert retry.cost_usd is None  # a free tool adds no cost


def test_a_bound_tool_missing_from_the_registry_says_what_is_registered() -> None:
    """A step binding a tool nobody registered is refused before anything runs, listing what the registry has."""
    flow = wf.Workflow("missing", tools=registry())
    ran: list[str] = []

    @flow.step(tools=["calculator"])
    async def use(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        ran.append("use")
        return {"x": await ctx.tool("calculator")}

    with pytest.raises(
        UnknownToolError, match=r"'calculator' \(bound by step 'use'\). The registry has: faq_search, orders_db"
    ):
        flow.run({}, workspace=False)
    assert [] == ran


def test_no_registry_says_where_to_pass_one() -> None:
    """A tool call in a run without a registry explains Workflow(..., tools=registry)."""
    flow = triage(None)
    run = flow.run({"query": "hours"}, workspace=False, raise_on_error=False)
    assert "Workflow(..., tools=registry)" in (run.events[-1].error_message or "")


def test_a_run_may_bring_its_own_registry_or_a_plain_dict() -> None:
    """run(..., tools=) overrides the workflow's registry; a dict of functions is a registry too."""
    flow = triage(registry())
    tools = {"faq_search": lambda query: f"dict says {query}", "orders_db": lambda **kw: None}
    run = flow.run({"query": "hours"}, workspace=False, tools=tools)
    assert "dict says hours" == run.state["answer"]


def test_registry_api() -> None:
    """Tools register by decorator (bare or with info) or add(); names are unique; infos filter by category."""
    tools = registry()

    @tools.tool
    def plain(x: int) -> int:
        return x

    tools.add(len, name="length", category="compute")
    assert ["orders_db", "faq_search", "plain", "length"] == list(tools)
    assert ToolInfo("orders_db", "database", 0.002, 50, 0.99, "Look an order up.") == tools["orders_db"].info
    assert ["orders_db"] == [i.name for i in tools.infos("database")]
    assert "plain" in tools
    assert 4 == len(tools)
    with pytest.raises(ValueError, match="already registered"):
        tools.add(plain)
    with pytest.raises(UnknownToolError, match="no tool 'nope'"):
        tools["nope"]


def test_tool_info_is_validated() -> None:
    """Negative costs or latencies and reliabilities outside [0, 1] are refused together."""
    with pytest.raises(ValueError, match=r"cost_estimate must be .*reliability must be"):
        ToolInfo("t", cost_estimate=-1, reliability=1.5)


def test_unbound_error_is_a_value_error() -> None:
    """ToolNotBoundError and UnknownToolError are ValueErrors, so the engine never retries them."""
    assert issubclass(ToolNotBoundError, ValueError)
    assert issubclass(UnknownToolError, ValueError)


# --- the article's registry ---------------------------------------------------------------------------


def test_example_registry_has_the_articles_four_tools() -> None:
    """web_search, code_interpreter, sql_query and file_read, each with category, cost, latency, reliability."""
    tools = example_registry()
    assert [
        ("web_search", "search"),
        ("code_interpreter", "compute"),
        ("sql_query", "database"),
        ("file_read", "filesystem"),
    ] == [(i.name, i.category) for i in tools.infos()]
    assert all(0 < i.reliability <= 1 and i.avg_latency_ms > 0 for i in tools.infos())


def test_example_tools_run_offline_in_the_query_router() -> None:
    """The article's routes bind its tools; each path calls what it bound and nothing more."""
    flow = wf.Workflow("router", tools=example_registry(failures=False))

    @flow.step
    def classify(state: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "data" if "sales" in state["query"] else "code"}

    @flow.step
    async def data_query(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        rows = await ctx.tool("sql_query", query="select region, sum(value) from sales")
        doc = await ctx.tool("file_read", path="reports/q1.md")
        return {"rows": rows["rows"], "doc": doc["content"]}

    @flow.step
    async def code_search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        hits = await ctx.tool("web_search", query=state["query"], max_results=2)
        run = await ctx.tool("code_interpreter", code="print(1)\nprint(2)")
        return {"hits": hits, "run": run}

    flow.route(
        "classify",
        wf.when("kind", "eq", "data") >> wf.go("data_query", tools=["sql_query", "file_read"]),
        default=wf.go("code_search", tools=["web_search", "code_interpreter"]),
    )
    data = flow.run({"query": "Q1 sales"}, workspace=False, seed=1)
    code = flow.run({"query": "binary search"}, workspace=False, seed=1)
    assert 4 == len(data.state["rows"])
    assert data.state["doc"].startswith("Simulated contents of reports/q1.md")
    assert ["https://example.com/binary-search/1", "https://example.com/binary-search/2"] == [
        h["url"] for h in code.state["hits"]
    ]
    assert {"ok": True, "stdout": "(simulated) ran 2 lines", "executed": False} == code.state["run"]
    assert pytest.approx(0.0005) == data.events[-1].cost_usd
    assert pytest.approx(0.003) == code.events[-1].cost_usd


def test_example_tools_fail_at_their_reliability_and_repeat_by_seed() -> None:
    """web_search (95% reliable) fails about 5% of calls, the same calls for the same seed."""
    flow = wf.Workflow("many", tools=example_registry(time_scale=0))

    @flow.step(tools=["web_search"])
    async def search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        outcomes = []
        for _ in range(2000):
            try:
                await ctx.tool("web_search", query="q")
                outcomes.append(True)
            except wf.TransientError:
                outcomes.append(False)
        return {"outcomes": outcomes}

    first = flow.run({}, workspace=False, seed=3).state["outcomes"]
    assert pytest.approx(0.05, abs=0.015) == first.count(False) / len(first)
    assert first == flow.run({}, workspace=False, seed=3).state["outcomes"]
