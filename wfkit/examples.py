"""Ready-made workflows for demos, notebooks, evals and tests, runnable offline.

``query_router()`` is the article's RAG router, defined here once: classify a query (by keywords
in code, or by a model that only names the intent), then search code, data or the web with the
tools its route binds (unknown types take the default route), then answer, with a review that may
send the answer back for a bounded number of revisions. ``wfkit demo``, notebook 02 and the
``query_router`` eval suite all import it from here.

The module-level steps ``classify``, ``code_search``, ``data_query``, ``web_search`` and
``generate_answer`` are the same router's parts as plain importable functions, for shaping the
flow as data (a spec naming ``wfkit.examples:classify``) or in the visual builder
(``wf.edit("router.yaml", steps=wfkit.examples, tools=wfkit.examples.reliable_tools())``);
``rag_router()`` wires them. The search steps call every tool their route bound, so a run shows
which route it took and with which tools.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

import wfkit as wf
from wfkit.llm import ToolRegistry, example_registry

QUERIES: list[dict[str, str]] = [
    {"query": "How to implement binary search in Python?"},
    {"query": "What were Q1 sales figures?"},
    {"query": "What is the capital of France?"},
    {"query": "Random question"},
    {"query": "Fix this stack trace in my code"},
    {"query": "Average order value by region from the data warehouse"},
    {"query": "Who wrote the Odyssey?"},
]

QUERY_TYPES: dict[str, str] = {
    "code": r"python|code|function|stack trace|bug|regex|sql syntax",
    "data": r"sales|revenue|figures|average|how many|churn|warehouse",
    "factual": r"capital|who |when |what is the|tallest|invented",
}
"""Query type -> the regular expression that recognises it (first match wins; else "unknown")."""


def classify_query(text: str) -> str:
    """The query type by keywords, in code: the decision a prompt must never be trusted with."""
    lowered = text.lower()
    return next((kind for kind, pattern in QUERY_TYPES.items() if re.search(pattern, lowered)), "unknown")


def route_by_query_type(flow: wf.Workflow, step: str = "classify") -> None:
    """The article's routing table as structured data: each query type goes to its search step
    with only the tools that search needs; everything else goes to the web search."""
    flow.route(
        step,
        wf.when("query_type", "eq", "code") >> wf.go("code_search", tools=["web_search", "code_interpreter"]),
        wf.when("query_type", "eq", "data") >> wf.go("data_query", tools=["sql_query", "file_read"]),
        wf.when("query_type", "in", ["general", "factual"]) >> wf.go("web_search", tools=["web_search"]),
        default=wf.go("web_search", tools=["web_search"]),
    )


_TOOL_ARGUMENTS: dict[str, dict[str, Any]] = {"code_interpreter": {"code": "pass"}, "file_read": {"path": "notes.md"}}


def query_router(
    *,
    classifier: Literal["keywords", "llm"] = "keywords",
    name: str = "query-router",
    llm: wf.ChatModel | None = None,
    tools: wf.ToolProvider | None = None,
    flaky: float = 0.0,
    slow: float = 0.0,
) -> wf.Workflow:
    """The article's query router.

    ``classifier``: "keywords" decides the query type in code; "llm" asks the model (``llm``, or the
    run's ``ctx.llm``) to name it, and anything it answers outside the known types is "unknown".
    ``tools``: a registry the searches call with the tools their route bound (without one they
    only say which tools they would use). ``flaky`` is the chance a search fails with a transient
    error (retried with backoff, then the answer is written without context); ``slow`` the chance
    a search takes 50 ms.
    """
    if classifier not in ("keywords", "llm"):
        raise ValueError(f"classifier must be 'keywords' or 'llm', got {classifier!r}")
    # The query is the run's input, declared (as rag_router() does): a run without it stops before classify.
    flow = wf.Workflow(name, description="classify, search by type, answer, review", tools=tools, inputs=["query"])
    retry = wf.RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.1)

    @flow.step
    async def classify(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Decide the query type; the routes, not the model, decide what happens next."""
        if classifier == "keywords":
            return {"query_type": classify_query(state["query"])}
        client: Any = ctx.llm if llm is None else llm
        bind = getattr(client, "for_step", None)
        reply = await (bind(ctx) if callable(bind) else client).complete(
            f"Which kind of question is this? {state['query']}"
        )
        kind = reply.text.strip().lower()
        return {"query_type": kind if kind in QUERY_TYPES else "unknown"}

    async def _search(state: dict[str, Any], ctx: wf.StepContext, source: str) -> dict[str, Any]:
        if flaky and ctx.rng.random() < flaky:
            raise wf.TransientError(f"{source} search: 503 from upstream")
        await asyncio.sleep(0.05 if slow and ctx.rng.random() < slow else 0.001)
        if ctx.tool_registry is not None:
            for tool in ctx.tools:
                await ctx.tool(tool, **_TOOL_ARGUMENTS.get(tool, {"query": state["query"]}))
        return {"context": f"[{source}:{','.join(ctx.tools)}] results for {state['query']!r}"}

    @flow.step(retry=retry, timeout=2.0, fallback="generate_answer")
    async def code_search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Search code sources with the tools the route bound."""
        return await _search(state, ctx, "code")

    @flow.step(retry=retry, timeout=2.0, fallback="generate_answer")
    async def data_query(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Query the data warehouse."""
        return await _search(state, ctx, "data")

    @flow.step(retry=retry, timeout=2.0, fallback="generate_answer")
    async def web_search(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        """Search the web."""
        return await _search(state, ctx, "web")

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

    route_by_query_type(flow)
    for search in ("code_search", "data_query", "web_search"):
        flow.edge(search, "generate_answer")
    flow.edge("generate_answer", "review")
    flow.route(
        "review",
        (wf.when("quality", "lt", 0.9) & wf.when("draft", "lt", 3)) >> wf.go("generate_answer"),
        default=wf.go(wf.END),
    )
    return flow


# ---- the router's parts as importable functions (flows as data, the visual builder) -------------


def classify(state: dict[str, Any]) -> dict[str, Any]:
    """Decide the query type from keywords (code, data, factual or unknown)."""
    return {"query_type": classify_query(state["query"])}


async def _call_bound_tools(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
    for tool in ctx.tools:
        await ctx.tool(tool, **_TOOL_ARGUMENTS.get(tool, {"query": state["query"]}))
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
    # The query is the run's input, declared: `wfkit run router.yaml` without it stops before classify.
    flow = wf.Workflow("rag-router", description="the article's query router", inputs=["query"])
    for step in (classify, code_search, data_query, web_search, generate_answer):
        flow.step(step)
    route_by_query_type(flow)
    for search in ("code_search", "data_query", "web_search"):
        flow.edge(search, "generate_answer")
    return flow


def reliable_tools() -> ToolRegistry:
    """The article's four tools, offline, instant and never failing (for specs run from the CLI:
    ``wfkit run router.yaml --tools wfkit.examples:reliable_tools``)."""
    return example_registry(time_scale=0.0, failures=False)
