"""The article's query router as an eval: does each query reach the right branch, with the right
tools? Two variants: classification by keywords in code, and by the (simulated) model. The router
itself is the one ``wfkit.examples`` defines."""

from __future__ import annotations

from typing import Literal

import wfkit as wf
from wfkit.examples import QUERY_TYPES, query_router


def build(classifier: Literal["keywords", "llm"] = "keywords") -> wf.Workflow:
    # The simulated model answers with the query type whose pattern the prompt matches.
    model = wf.llm.SimulatedModel(p50=0.002, p99=0.01, seed=0, reply={p: k for k, p in QUERY_TYPES.items()})
    return query_router(
        classifier=classifier,
        name=f"query-router-{classifier}",
        llm=wf.llm.ChatClient(transport=model),
        tools=wf.llm.example_registry(time_scale=0.0005, failures=False),
    )


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
