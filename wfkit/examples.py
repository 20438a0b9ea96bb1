"""Ready-made workflows for demos, notebooks and tests, runnable offline.

``query_router()`` is the article's RAG router: classify a query, then search code, data or the
web (tools bound per route, unknown types to the default), then answer, with a quality check
that may loop back to revise the answer a bounded number of times.

The module-level steps ``classify``, ``code_search``, ``data_query``, ``web_search`` and
``generate_answer`` are the same router's parts as plain importable functions, for shaping the
flow as data (a spec naming ``wfkit.examples:classify``) or in the visual builder
(``wf.edit("router.yaml", steps=wfkit.examples, tools=wf.example_registry())``). The search steps
call every tool their route bound, so a run shows which route it took and with which tools.
"""

from __future__ import annotations

import asyncio
from typing import Any

import wfkit as wf
from wfkit._tools import ToolRegistry, example_registry

QUERIES: list[dict[str, str]] = [
    {"query": "How to implement binary search in Python?"},
    {"query": "What were Q1 sales figures?"},
    {"query": "What is the capital of France?"},
    {"query": "Random question"},
    {"query": "Fix this stack trace in my code"},
    {"query": "Average order value by region from the data warehouse"},
    {"query": "Who wrote the Odyssey?"},
]

_KEYWORDS = {
    "code": ("code", "python", "implement", "stack trace", "bug"),
    "data": ("sales", "data", "average", "figures", "warehouse"),
    "factual": ("capital", "who", "when", "what is"),
}


def _classify_text(query: str) -> str:
    text = query.lower()
    for kind, words in _KEYWORDS.items():
        if any(w in text for w in words):
            return kind
    return "unknown"


def classify(state: dict[str, Any]) -> dict[str, Any]:
    """Decide the query type from keywords (code, data, factual or unknown)."""
    return {"query_type": _classify_text(state["query"])}


_TOOL_ARGUMENTS = {"code_interpreter": "code", "file_read": "path"}


async def _call_bound_tools(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
    for tool in ctx.tools:
        argument = _TOOL_ARGUMENTS.get(tool, "query")
        await ctx.tool(tool, **{argument: "notes.md" if argument == "path" else state["query"]})
    return {"searched_with": list(ctx.tools)}


async def code_search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
    """Search code sources with every tool the route bound."""
    return await _call_bound_tools(state, ctx)


async def data_query(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
    """Query the data warehouse with every tool the route bound."""
    return await _call_bound_tools(state, ctx)


async def web_search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
    """Search the web with every tool the route bound."""
    return await _call_bound_tools(state, ctx)


def generate_answer(state: dict[str, Any]) -> dict[str, Any]:
    """Answer from what the search step found, naming the tools it used."""
    return {"answer": f"answered {state['query']!r} with {', '.join(state.get('searched_with', [])) or 'no tools'}"}


def query_router(*, flaky: float = 0.0, slow: float = 0.0) -> wf.Workflow:
    """The article's query router. ``flaky`` is the chance that a search call fails with a
    transient error (retried with backoff); ``slow`` is the chance a search takes 50 ms."""
    flow = wf.Workflow("query-router", description="classify, search by type, answer, review")
    retry = wf.RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.1)

    @flow.step
    def classify(state: dict[str, Any]) -> dict[str, Any]:
        """Decide the query type (in code, not in a prompt)."""
        return {"query_type": _classify_text(state["query"])}

    async def _search(ctx: wf.StepContext, source: str, query: str) -> dict[str, Any]:
        if flaky and ctx.rng.random() < flaky:
            raise wf.TransientError(f"{source} search: 503 from upstream")
        await asyncio.sleep(0.05 if slow and ctx.rng.random() < slow else 0.001)
        return {"context": f"[{source}:{','.join(ctx.tools)}] results for {query!r}"}

    @flow.step(retry=retry, timeout=2.0, fallback="generate_answer")
    async def code_search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Search code sources with the tools the route bound."""
        return await _search(ctx, "code", state["query"])

    @flow.step(retry=retry, timeout=2.0, fallback="generate_answer")
    async def data_query(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Query the data warehouse."""
        return await _search(ctx, "data", state["query"])

    @flow.step(retry=retry, timeout=2.0, fallback="generate_answer")
    async def web_search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Search the web."""
        return await _search(ctx, "web", state["query"])

    @flow.step(max_visits=3)
    def generate_answer(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Write the answer from whatever context the search found."""
        context = state.get("context") or "no context (search failed)"
        draft = state.get("draft", 0) + 1
        return {"answer": f"Answer (draft {draft}) to {state['query']!r} using {context}", "draft": draft}

    @flow.step
    def review(state: dict[str, Any]) -> dict[str, Any]:
        """Score the answer; a real kit would ask a judge model here."""
        return {"quality": 0.5 + 0.25 * state["draft"] if "results" in state["answer"] else 0.4}

    flow.route(
        "classify",
        wf.when("query_type", "eq", "code") >> wf.go("code_search", tools=["web_search", "code_interpreter"]),
        wf.when("query_type", "eq", "data") >> wf.go("data_query", tools=["sql_query", "file_read"]),
        wf.when("query_type", "in", ["general", "factual"]) >> wf.go("web_search", tools=["web_search"]),
        default=wf.go("web_search", tools=["web_search"]),
    )
    for search in ("code_search", "data_query", "web_search"):
        flow.edge(search, "generate_answer")
    flow.edge("generate_answer", "review")
    flow.route(
        "review",
        (wf.when("quality", "lt", 0.9) & wf.when("draft", "lt", 3)) >> wf.go("generate_answer"),
        default=wf.go(wf.END),
    )
    return flow


ARTICLE_QUERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "How to implement binary search in Python?": ("code_search", ("web_search", "code_interpreter")),
    "What were Q1 sales figures?": ("data_query", ("sql_query", "file_read")),
    "What is the capital of France?": ("web_search", ("web_search",)),
    "Random question": ("web_search", ("web_search",)),
}
"""The article's four queries, each with the step its route reaches and the tools it binds."""


def rag_router() -> wf.Workflow:
    """The article's router from the module-level steps: classify, three routes on ``query_type``
    binding their tools, the default to web search, then generate the answer."""
    flow = wf.Workflow("rag-router", description="the article's query router")
    for step in (classify, code_search, data_query, web_search, generate_answer):
        flow.step(step)
    flow.route(
        "classify",
        wf.when("query_type", "eq", "code") >> wf.go("code_search", tools=["web_search", "code_interpreter"]),
        wf.when("query_type", "eq", "data") >> wf.go("data_query", tools=["sql_query", "file_read"]),
        wf.when("query_type", "in", ["general", "factual"]) >> wf.go("web_search", tools=["web_search"]),
        default=wf.go("web_search", tools=["web_search"]),
    )
    for search in ("code_search", "data_query", "web_search"):
        flow.edge(search, "generate_answer")
    return flow


def reliable_tools() -> ToolRegistry:
    """The article's four tools, offline, instant and never failing (for specs run from the CLI:
    ``wfkit run router.yaml --tools wfkit.examples:reliable_tools``)."""
    return example_registry(time_scale=0.0, failures=False)
