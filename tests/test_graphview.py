"""The workflow graph drawn as SVG and as text, with no network and no graphviz."""

from __future__ import annotations

import base64
import html
import xml.etree.ElementTree as ET
from typing import Any

import wfkit as wf
from wfkit.examples import query_router
from wfkit.model._graphview import as_img, edges, to_svg, to_text


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
    """The text form reads in a terminal: options per step and each edge with its condition and the
    tools its route binds (the SVG, Mermaid and DOT show them: which tools a step gets is the route's)."""
    text = to_text(query_router().validate())
    assert "workflow 'query-router' (entry: classify)" in text
    assert "[code_search]  (retry 3x, timeout 2s)" in text
    assert "classify -> code_search   if query_type == 'code' [web_search, code_interpreter]\n" in text
    assert "classify -> web_search   if default [web_search]\n" in text
    assert "code_search -> generate_answer\n" in text  # an unconditional edge binds no tools
    assert "review -> END   if default" in text


def test_workflow_mimebundle_has_svg_html_and_text() -> None:
    """A Workflow displays as an SVG image in a notebook and as text elsewhere; a broken one explains itself."""
    import base64

    bundle = query_router()._repr_mimebundle_()
    assert bundle["text/html"].startswith('<img class="wfk-graph" src="data:image/svg+xml;base64,')
    data = bundle["text/html"].split("base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(data).decode().startswith("<svg")
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


def refunds() -> wf.Workflow:
    """A gated, irreversible step with an approval condition and a rejection route."""
    flow = wf.Workflow("refunds")
    flow.step(_noop, name="quote")
    flow.step(
        _noop,
        name="refund",
        approval=wf.Approval("Refunds over $100", when=wf.when("amount", "gt", 100), on_reject="explain"),
        irreversible=True,
    )
    flow.step(_noop, name="explain")
    flow.chain("quote", "refund")
    return flow


def test_mimebundle_has_the_mermaid_export() -> None:
    """text/vnd.mermaid is in the display bundle: the very text flow.to_mermaid() exports."""
    flow = query_router()
    bundle = flow._repr_mimebundle_()
    assert flow.to_mermaid() == bundle["text/vnd.mermaid"]
    assert bundle["text/vnd.mermaid"].startswith("flowchart")


def test_svg_shows_loop_bounds_and_approval_conditions_with_drawn_markers() -> None:
    """Boxes say "at most N visits" and "approval if ..."; the markers are shapes, not emoji."""
    svg = to_svg(refunds().validate())
    assert "approval if amount &gt; 100" in svg
    assert "⏸" not in svg
    assert "⚠" not in svg
    assert "<circle cx=" in svg  # the pause marker
    router = to_svg(query_router().validate())
    assert "at most 3 visits" in router
    ET.fromstring(svg)


def label_boxes(svg: str) -> list[tuple[float, float, float, float]]:
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    return [
        (
            float(r.get("x", 0)),
            float(r.get("y", 0)),
            float(r.get("x", 0)) + float(r.get("width", 0)),
            float(r.get("y", 0)) + float(r.get("height", 0)),
        )
        for r in root.iter(f"{ns}rect")
        if r.get("fill-opacity") == "0.85"
    ]


def test_route_labels_never_overlap() -> None:
    """Many routes out of one step: every label's box is clear of every other label's."""
    flow = wf.Workflow("fan")
    flow.step(_noop, name="pick")
    names = [f"target_{i}" for i in range(5)]
    for name in names:
        flow.step(_noop, name=name)
    flow.route(
        "pick",
        *(wf.when("choice", "eq", f"a long value number {i}") >> wf.go(name) for i, name in enumerate(names[:4])),
        default=wf.go(names[4]),
    )
    boxes = label_boxes(to_svg(flow.validate()))
    assert 5 == len(boxes)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def _straight_edges(svg: str) -> list[tuple[float, float, float, float]]:
    """Every straight edge (``M x,y L x,y``) of a drawing, as its two ends."""
    root = ET.fromstring(svg)
    out = []
    for path in root.iter("{http://www.w3.org/2000/svg}path"):
        d = path.get("d", "")
        if d.startswith("M") and " L" in d and "C" not in d and "Q" not in d and "z" not in d:
            start, end = d[1:].split(" L")
            x1, y1 = map(float, start.split(","))
            x2, y2 = map(float, end.split(","))
            out.append((x1, y1, x2, y2))
    return out


def _crosses(edge: tuple[float, float, float, float], box: tuple[float, float, float, float]) -> bool:
    """Whether the segment passes through the box (sampled finely: boxes are 13 px tall)."""
    x1, y1, x2, y2 = edge
    return any(
        box[0] < x1 + (x2 - x1) * t / 200 < box[2] and box[1] < y1 + (y2 - y1) * t / 200 < box[3] for t in range(201)
    )


def test_a_fanned_out_route_label_sits_beside_its_own_edge_and_no_line_runs_through_it() -> None:
    """Notebook 07's triage graph placed `kind == 'billing'` between its edge (down to the left) and
    the default's, and the default's own line ran under the start of `default`: which label went
    with which arrow was a guess. A label now sits on the outer side of its edge, clear of every
    straight line, for two routes and for the query router's three."""
    triage = wf.Workflow("triage")
    for name in ("classify", "lookup", "debug", "draft"):
        triage.step(_noop, name=name)
    triage.route("classify", wf.when("kind", "eq", "billing") >> wf.go("lookup"), default=wf.go("debug"))
    triage.edge("lookup", "draft")
    triage.edge("debug", "draft")
    for graph in (triage.validate(), query_router().validate()):
        svg = to_svg(graph)
        lines, boxes = _straight_edges(svg), label_boxes(svg)
        assert boxes
        for box in boxes:
            assert not any(_crosses(line, box) for line in lines), (box, lines)
    svg = to_svg(triage.validate())
    (billing,) = [b for b in label_boxes(svg) if b[2] - b[0] > 60]
    to_lookup = next(line for line in _straight_edges(svg) if line[2] < line[0])
    assert billing[2] <= to_lookup[0]  # left of where its edge leaves classify: on its outer side


def _label_lines(svg: str) -> list[tuple[str, ...]]:
    """Each edge label of a drawing, as the lines it is drawn on."""
    ns = "{http://www.w3.org/2000/svg}"
    return [
        tuple(span.text or "" for span in text.iter(f"{ns}tspan"))
        for text in ET.fromstring(svg).iter(f"{ns}text")
        if text.get("fill") == "#444"
    ]


def test_route_labels_name_their_tools_and_a_long_label_is_wrapped_whole() -> None:
    """A route's label names the tools it binds, as the Mermaid and DOT exports' do, and a label
    longer than 48 characters is drawn whole on lines of its own (it was cut, with the tools left
    out), beside its edge: clear of every straight line and of every other label."""
    router = to_svg(query_router().validate())
    assert ("query_type == 'code'", "[web_search, code_interpreter]") in _label_lines(router)
    assert ("query_type == 'data'", "[sql_query, file_read]") in _label_lines(router)
    flow = wf.Workflow("long-labels")
    for name in ("pick", "a", "b", "c"):
        flow.step(_noop, name=name)
    value = "a rather long category value that runs past forty-eight"
    flow.route(
        "pick",
        wf.when("category", "eq", value) >> wf.go("a", tools=["web_search", "code_interpreter", "sql_query"]),
        wf.when("kind", "eq", "b") >> wf.go("b", tools=["file_reader"]),
        default=wf.go("c"),
    )
    svg = to_svg(flow.validate())
    drawn = {" ".join(lines): lines for lines in _label_lines(svg)}
    assert {
        f"category == '{value}' [web_search, code_interpreter, sql_query]",
        "kind == 'b' [file_reader]",
        "default",
    } == set(drawn)
    assert all(len(line) <= 48 for lines in drawn.values() for line in lines)
    assert "…" not in svg
    boxes, straight = label_boxes(svg), _straight_edges(svg)
    assert 3 == len(boxes)
    for i, box in enumerate(boxes):
        assert not any(_crosses(line, box) for line in straight), (box, straight)
        assert not any(_overlaps(box, other) for other in boxes[i + 1 :])


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_a_step_routing_to_itself_is_a_loop_on_its_right_side() -> None:
    """A self-loop leaves the box's right side and comes back to it, bulging out to the right: it
    was drawn as a dip below the box and back, which read as an arrow from the next step."""
    flow = wf.Workflow("redraft")
    flow.step(_noop, name="draft", max_visits=3)
    flow.step(_noop, name="send")
    flow.route("draft", wf.when("drafts", "lt", 2) >> wf.go("draft"), default=wf.go("send"))
    svg = to_svg(flow.validate())
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    box = next(r for r in root.iter(f"{ns}rect") if r.get("rx") == "8")
    right, top = float(box.get("x", 0)) + float(box.get("width", 0)), float(box.get("y", 0))
    bottom = top + float(box.get("height", 0))
    [loop] = [p.get("d", "") for p in root.iter(f"{ns}path") if p.get("marker-end") and " C" in p.get("d", "")]
    numbers = [float(v) for v in loop.replace("M", " ").replace("C", " ").replace(",", " ").split()]
    xs, ys = numbers[0::2], numbers[1::2]
    assert right == xs[0]  # out of the right side
    assert abs(xs[-1] - right) <= 2  # and back into it
    assert min(xs) >= right
    assert max(xs) > right + 20  # bulging out to the right
    assert top < ys[0] < ys[-1] < bottom
    assert "drafts &lt; 2" in svg


def test_same_layer_edges_arc_below_and_dashed_lie_under_solid() -> None:
    """An edge within a row dips below it instead of crossing a box; dashed edges come first
    (drawn under) and bow away from a solid edge between the same steps."""
    flow = wf.Workflow("row")
    flow.step(_noop, name="start")
    flow.step(_noop, name="a", fallback="b")
    flow.step(_noop, name="b")
    flow.step(_noop, name="c")
    flow.route("start", wf.when("x", "eq", 1) >> wf.go("a"), wf.when("x", "eq", 2) >> wf.go("b"), default=wf.go("c"))
    flow.edge("c", "b")
    svg = to_svg(flow.validate())
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    paths = [p for p in root.iter(f"{ns}path") if p.get("marker-end")]
    dashed = [i for i, p in enumerate(paths) if p.get("stroke-dasharray")]
    solid = [i for i, p in enumerate(paths) if not p.get("stroke-dasharray")]
    assert dashed
    assert max(dashed) < min(solid)
    row_bottom = max(
        float(r.get("y", 0)) + float(r.get("height", 0)) for r in root.iter(f"{ns}rect") if r.get("rx") == "8"
    )
    same_row = [p.get("d", "") for p in paths if p.get("d", "").count("C") == 1 and " C" in p.get("d", "")]
    for d in same_row:
        numbers = [float(v) for v in d.replace("M", " ").replace("C", " ").replace(",", " ").split()]
        assert max(numbers[1::2]) >= row_bottom  # the arc's control points lie below the row


def _nested() -> wf.Workflow:
    inner = wf.Workflow("inner-most", inputs=["x"])
    inner.step(lambda s: {"y": s["x"]}, name="deep")
    child = wf.Workflow("middle", inputs=["x"])
    child.subflow(inner, name="dive", inputs={"x": "x"}, outputs={"y": "y"})
    parent = wf.Workflow("outer")
    parent.step(lambda s: {"x": 1}, name="start")
    parent.subflow(child, name="nested", inputs={"x": "x"}, outputs={"z": "y"})
    parent.edge("start", "nested")
    return parent


def test_a_sub_workflow_step_is_drawn_naming_its_workflow_and_expands_on_request() -> None:
    """Folded, the step names its workflow; expanded, each level's graph is drawn in a frame, as valid SVG."""
    flow = _nested()
    folded = to_svg(flow.validate())
    assert 1 == folded.count('class="wfk-subflow"')
    assert "⊂ middle" in folded
    assert 0 == folded.count("wfk-subflow-panel")
    expanded = flow.to_svg(expand=True)
    ET.fromstring(expanded)  # well-formed, nested frames included
    assert 2 == expanded.count('class="wfk-subflow-panel"')
    assert "step nested runs workflow middle" in expanded
    assert "step dive runs workflow inner-most" in expanded
    assert ">deep</text>" in expanded
    coloured = to_svg(flow.validate(), expand=True, sub_statuses={"inner-most": {"deep": "failed"}})
    assert 'fill="#fee2e2"' in coloured
    assert 'fill="#fee2e2"' not in expanded


def test_describe_expands_sub_workflows_under_their_step() -> None:
    """describe(expand=True) indents each child's graph under the step that runs it."""
    flow = _nested()
    assert "  [nested]  (sub-workflow 'middle', in: x->x, out: y->z)" in flow.describe()
    assert "inner-most" not in flow.describe()
    expected = [
        "  [nested]  (sub-workflow 'middle', in: x->x, out: y->z)",
        "    | workflow 'middle' (entry: dive)",
        "    |   [dive]  (sub-workflow 'inner-most', in: x->x, out: y->y)",
        "    |     | workflow 'inner-most' (entry: deep)",
        "    |     |   [deep]",
    ]
    lines = flow.describe(expand=True).splitlines()
    start = lines.index(expected[0])
    assert expected == lines[start : start + len(expected)]


def test_as_img_carries_the_svg_whole_in_a_data_uri_with_escaped_alt_text() -> None:
    """as_img is one <img> whose data URI decodes to the very SVG given, and whose alt text is escaped."""
    svg = to_svg(query_router().validate(), {"classify": "ok"})
    tag = as_img(svg, alt='graph "router" <a> & b')
    assert tag.startswith('<img class="wfk-graph" src="data:image/svg+xml;base64,')
    assert "<svg" not in tag
    data = tag.split("base64,", 1)[1].split('"', 1)[0]
    assert svg == base64.b64decode(data).decode()
    assert 'graph "router" <a> & b' == html.unescape(tag.split('alt="', 1)[1].rsplit('"', 1)[0])
    assert f'alt="{html.escape(chr(34) + "x")}"' in as_img(svg, alt='"x')


def _lowest(svg: str) -> float:
    """How far down the drawing goes: the lowest box, label or edge point (a curve stays within its
    control points)."""
    import re

    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    low = max(float(r.get("y", 0)) + float(r.get("height", 0)) for r in root.iter(f"{ns}rect"))
    low = max([low, *(float(t.get("y", 0)) for t in root.iter(f"{ns}text"))])
    for path in root.iter(f"{ns}path"):
        if path.get("marker-end"):
            numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
            low = max([low, *numbers[1::2]])
    return low


def test_the_drawing_ends_a_margin_below_its_lowest_step() -> None:
    """A graph with no edge to the end (a gate whose rejection goes to its own step) ends a margin
    below its lowest box: it kept room for an end marker it did not draw, a blank band under every
    run view's graph."""
    flow = wf.Workflow("gated")
    flow.step(_noop, name="quote")
    flow.step(_noop, name="refund", approval=wf.Approval("over $100", on_reject="explain"), irreversible=True)
    flow.step(_noop, name="explain")
    flow.chain("quote", "refund")
    svg = to_svg(flow.validate())
    height = float(ET.fromstring(svg).get("height", 0))
    assert 10 <= height - _lowest(svg) <= 25


def test_a_drawing_with_an_end_keeps_the_end_and_its_labels_inside() -> None:
    """The end marker, and a label pushed down under another, stay inside the drawing."""
    flow = wf.Workflow("loopy")
    flow.step(_noop, name="draft", max_visits=3)
    flow.step(_noop, name="review")
    flow.edge("draft", "review")
    flow.route("review", wf.when("ok", "eq", False) >> wf.go("draft"), default=wf.go(wf.END))
    svg = to_svg(flow.validate())
    assert ">end<" in svg
    height = float(ET.fromstring(svg).get("height", 0))
    assert 10 <= height - _lowest(svg) <= 30
