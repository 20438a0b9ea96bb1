"""The workflow graph drawn as SVG and as text, with no network and no graphviz."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import wfkit as wf
from wfkit.examples import query_router
from wfkit.model._graphview import edges, to_svg, to_text


def _noop(state: Any) -> None:
    return None


def test_svg_is_well_formed_and_names_every_step_and_condition() -> None:
    """The router's SVG parses as XML and shows each step and each route's condition."""
    graph = query_router().validate()
    svg = to_svg(graph)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    for step in graph.steps:
        assert f">{step}<" in svg or f" {step}<" in svg
    assert "query_type == &#x27;code&#x27;" in svg or "query_type == 'code'" in svg
    assert "default" in svg
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_statuses_colour_the_steps() -> None:
    """A failed step is drawn in the failure colour, a succeeded one in the success colour."""
    flow = wf.Workflow("colours")
    flow.step(_noop, name="a")
    flow.step(_noop, name="b")
    flow.chain("a", "b")
    svg = to_svg(flow.validate(), {"a": "ok", "b": "failed"})
    assert "#15803d" in svg  # ok stroke
    assert "#b91c1c" in svg  # failed stroke


def test_loops_fallbacks_and_end_are_drawn() -> None:
    """A loop back, a fallback (dashed) and the END node all appear."""
    flow = wf.Workflow("loopy")
    flow.step(_noop, name="draft", max_visits=3, fallback="escalate")
    flow.step(_noop, name="review")
    flow.step(_noop, name="escalate")
    flow.edge("draft", "review")
    flow.route("review", wf.when("ok", "eq", False) >> wf.go("draft"), default=wf.go(wf.END))
    graph = flow.validate()
    labels = {(s, t, label) for s, t, label in edges(graph)}
    assert ("review", "draft", "ok == False") in labels
    assert ("draft", "escalate", "on failure") in labels
    svg = to_svg(graph)
    assert "stroke-dasharray" in svg
    assert ">end<" in svg
    ET.fromstring(svg)


def test_text_form_lists_options_and_edges() -> None:
    """The text form reads in a terminal: options per step and each edge with its condition."""
    text = to_text(query_router().validate())
    assert "workflow 'query-router' (entry: classify)" in text
    assert "[code_search]  (retry 3x, timeout 2s)" in text
    assert "classify -> code_search   if query_type == 'code'" in text
    assert "review -> END   if default" in text


def test_workflow_mimebundle_has_svg_html_and_text() -> None:
    """A Workflow displays as SVG in a notebook and as text elsewhere; a broken one explains itself."""
    bundle = query_router()._repr_mimebundle_()
    assert bundle["text/html"].startswith("<svg")
    assert "entry: classify" in bundle["text/plain"]
    broken = wf.Workflow("broken")
    broken.step(_noop, name="a")
    broken.edge("a", "nowhere")
    assert "no step named 'nowhere'" in broken._repr_mimebundle_()["text/plain"]


def test_a_map_step_is_drawn_as_a_stack_naming_its_fields_and_described_in_text() -> None:
    """The SVG draws the map as stacked cards with `each of docs → out`; the text names the map and cache."""
    flow = wf.Workflow("drawn-map", inputs=["docs"])
    flow.map(lambda d: d, over="docs", into="out", name="each", max_concurrency=4, cache=True)
    svg = to_svg(flow.validate())
    assert 1 == svg.count('class="wfk-map"')
    assert "each of docs → out" in svg
    assert "  [each]  (map over docs into out, 4 at a time, cache)" in to_text(flow.validate())
