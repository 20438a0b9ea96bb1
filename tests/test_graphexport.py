"""Mermaid and Graphviz DOT text for a workflow graph."""

from __future__ import annotations

import pytest

import wfkit as wf
from wfkit.examples import query_router, rag_router


def noop(state: object) -> None:
    return None


def test_mermaid_draws_steps_routes_with_tools_and_the_end() -> None:
    """Steps are nodes (the entry rounded), routes carry their condition and tools, loops back and
    the end are drawn."""
    text = query_router().to_mermaid()
    lines = text.splitlines()
    assert "flowchart TD" == lines[0]
    assert '    s0(["classify"])' == lines[1]
    assert """    s0 -->|"query_type == 'code' [web_search, code_interpreter]"| s1""" in lines
    assert '    s0 -->|"default [web_search]"| s3' in lines
    assert '    s1 -.->|"on failure"| s4' in lines
    assert '    end_(("end"))' in lines
    assert '    s5 -->|"default"| end_' in lines


def test_mermaid_escapes_quotes_in_labels() -> None:
    """A double quote in a condition value cannot end a Mermaid label."""
    flow = wf.Workflow("q")
    flow.step(noop, name="a")
    flow.step(noop, name="b")
    flow.route("a", wf.when("text", "eq", 'say "hi"') >> wf.go("b"), default=wf.go("b"))
    assert """    s0 -->|"text == 'say #quot;hi#quot;'"| s1""" in flow.to_mermaid().splitlines()


def test_dot_quotes_every_id_and_dashes_fallbacks() -> None:
    """DOT ids are quoted (any step name is safe), fallbacks dashed, the entry drawn bold."""
    lines = query_router().to_dot().splitlines()
    assert 'digraph "query-router" {' == lines[0]
    assert '    "classify" [label="classify", penwidth=2];' in lines
    assert '    "code_search" -> "generate_answer" [label="on failure", style=dashed];' in lines
    assert '    "review" -> "__end__" [label="default"];' in lines
    assert '    "__end__" [label="end", shape=oval];' in lines
    assert "}" == lines[-1]


def test_dot_escapes_quotes_and_backslashes() -> None:
    """Names and labels with quotes or backslashes stay inside their DOT strings."""
    flow = wf.Workflow('say "hi"')
    flow.step(noop, name="a")
    flow.step(noop, name="b")
    flow.route("a", wf.when("path", "eq", "C:\\tmp") >> wf.go("b"), default=wf.go("b"))
    text = flow.to_dot()
    assert text.startswith('digraph "say \\"hi\\"" {')
    assert """    "a" -> "b" [label="path == 'C:\\\\\\\\tmp'"];""" in text.splitlines()


def test_dot_keeps_text_beyond_ascii() -> None:
    """A step name or condition value beyond ASCII is written as itself: DOT has no \\u escape, so
    Graphviz would draw "caf\\u00e9" for "café"."""
    flow = wf.Workflow("tâches")
    flow.step(noop, name="résumé")
    flow.step(noop, name="b")
    flow.route("résumé", wf.when("drink", "eq", "café") >> wf.go("b"), default=wf.go("b"))
    text = flow.to_dot()
    assert "\\u" not in text
    assert text.startswith('digraph "tâches" {')
    assert """    "résumé" -> "b" [label="drink == 'café'"];""" in text.splitlines()


@pytest.mark.parametrize("export", ["to_mermaid", "to_dot"])
def test_exports_refuse_an_invalid_workflow(export: str) -> None:
    """Drawing validates first: a broken workflow raises its definition error."""
    flow = rag_router()
    flow.edge("generate_answer", "nowhere")
    with pytest.raises(wf.WorkflowDefinitionError, match="no step named 'nowhere'"):
        getattr(flow, export)()
