"""The shipped example workflow: the article's query router."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

import wfkit as wf
from wfkit.examples import QUERIES, query_router
from wfkit.testing import test_mode


@pytest.mark.parametrize(
    ("query", "branch", "tools"),
    [
        ("How to implement binary search in Python?", "code_search", ("web_search", "code_interpreter")),
        ("What were Q1 sales figures?", "data_query", ("sql_query", "file_read")),
        ("What is the capital of France?", "web_search", ("web_search",)),
        ("Random question", "web_search", ("web_search",)),
    ],
)
def test_router_takes_branch_with_bound_tools(query: str, branch: str, tools: tuple[str, ...]) -> None:
    """Each query type reaches its branch with that route's tools, then answer and review."""
    run = query_router().run({"query": query})
    path = run.path()
    assert ["classify", branch, "generate_answer", "review"] == path[:4]
    assert tools == next(e.tools for e in run.events if e.step == branch)
    assert run.state["answer"].startswith("Answer (draft")


def test_review_loop_is_bounded() -> None:
    """The review loop revises at most three drafts."""
    run = query_router().run(QUERIES[0])
    assert run.path().count("generate_answer") <= 3


def test_flaky_search_retries_then_falls_back() -> None:
    """With every search call failing, retries run out and the answer is written without context."""
    with test_mode(seed=1):
        run = query_router(flaky=1.0).run({"query": "Fix this stack trace in my code"})
    statuses = [e.status for e in run.events if e.step == "code_search"]
    assert statuses == ["retry", "retry", "retry", "failed"]
    assert "no context (search failed)" in run.state["answer"]


@pytest.mark.parametrize("classifier", ["keywords", "llm"])
def test_router_declares_the_query_it_reads(
    classifier: Literal["keywords", "llm"], tmp_path: Path, workspace: Path
) -> None:
    """A run of the router without a query is refused before any step runs, naming the input (it
    started a run that failed inside `classify` with `KeyError: 'query'`), and its saved spec says
    `inputs: [query]`, as `rag_router()`'s does, so `wfkit run` refuses it too."""
    flow = query_router(classifier=classifier)
    with pytest.raises(ValueError, match=r"declares the inputs \['query'\], and this run's inputs lack \['query'\]"):
        flow.run({"question": "What were Q1 sales figures?"})
    assert not (workspace / "wfkit.db").exists() or [] == wf.Workspace(workspace).runs()
    assert "inputs: [query]\n" in flow.save(tmp_path / "router.yaml").read_text(encoding="utf-8")
