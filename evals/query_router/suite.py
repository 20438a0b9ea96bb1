"""The article's query router as an eval: does each query reach the right branch, with the right
tools? Two variants: classification by keywords in code, and by the (simulated) model."""

from __future__ import annotations

import re
from typing import Any

import wfkit as wf

RULES = {
    "code": r"python|code|function|stack trace|bug|regex|sql syntax",
    "data": r"sales|revenue|figures|average|how many|churn|warehouse",
    "factual": r"capital|who |when |what is the|tallest|invented",
}


def _by_keywords(text: str) -> str:
    lowered = text.lower()
    return next((kind for kind, pattern in RULES.items() if re.search(pattern, lowered)), "unknown")


def build(classifier: str = "keywords") -> wf.Workflow:
    flow = wf.Workflow(f"query-router-{classifier}", tools=wf.llm.example_registry(time_scale=0.0005, failures=False))
    llm = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0.002, p99=0.01, seed=0, reply={p: k for k, p in RULES.items()})
    )

    @flow.step
    async def classify(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        if classifier == "keywords":
            return {"query_type": _by_keywords(state["query"])}
        reply = await llm.for_step(ctx).complete(f"Which kind of question is this? {state['query']}")
        text = reply.text.strip().lower()
        return {"query_type": text if text in RULES else "unknown"}

    async def search(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        for tool in ctx.tools:
            await ctx.tool(
                tool,
                **(
                    {"code": "pass"}
                    if tool == "code_interpreter"
                    else {"path": "notes.md"}
                    if tool == "file_read"
                    else {"query": state["query"]}
                ),
            )
        return {"searched_with": list(ctx.tools)}

    for name in ("code_search", "data_query", "web_search"):
        flow.step(search, name=name, retry=wf.RetryPolicy(max_retries=2, base_delay=0.001))
        flow.edge(name, "generate_answer")

    @flow.step
    def generate_answer(state: Any) -> dict[str, Any]:
        return {"answer": f"answered {state['query']!r} with {', '.join(state['searched_with'])}"}

    flow.route(
        "classify",
        wf.when("query_type", "eq", "code") >> wf.go("code_search", tools=["web_search", "code_interpreter"]),
        wf.when("query_type", "eq", "data") >> wf.go("data_query", tools=["sql_query", "file_read"]),
        wf.when("query_type", "in", ["general", "factual"]) >> wf.go("web_search", tools=["web_search"]),
        default=wf.go("web_search", tools=["web_search"]),
    )
    return flow


suite = wf.evals.Suite(
    name="query-router",
    dataset="dataset.jsonl",
    workflow=build,
    variants={"keywords": {"classifier": "keywords"}, "llm": {"classifier": "llm"}},
    scorers=[
        wf.evals.route_taken(),
        wf.evals.tools_used(),
        wf.evals.latency_budget(2.0),
        wf.evals.contains("answer", name="answer_mentions_tool"),
    ],
    thresholds={"route_taken": 0.9, "tools_used": 0.9},
)
