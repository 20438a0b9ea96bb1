"""A workflow graph as SVG and as text, drawn here: no network (no mermaid.ink), no graphviz.

Layout: steps are placed in layers by their distance from the entry; edges that go back to an
earlier layer (loops) are drawn as arcs on the right, and a step's route to itself as a loop on its
right side. Routes carry their condition as a label, and the tools a route binds after it (as the
Mermaid and DOT exports do); a long label is wrapped onto lines of its own, never cut.
Colours show a run's step statuses when given. Boxes name their loop bound and approval condition;
markers are drawn shapes, so no emoji font is needed.
"""

from __future__ import annotations

import base64
import html
import re
import textwrap
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial

from wfkit.model._graph import Graph
from wfkit.model._routes import END, Go
from wfkit.model._steps import Subflow

STATUS_COLORS = {
    "pending": ("#f4f4f4", "#9a9a9a"),
    "running": ("#dbeafe", "#2563eb"),
    "ok": ("#dcfce7", "#15803d"),
    "retry": ("#fef3c7", "#b45309"),
    "failed": ("#fee2e2", "#b91c1c"),
    "timeout": ("#fee2e2", "#b91c1c"),
    "waiting_approval": ("#fef3c7", "#b45309"),
    "approved": ("#dbeafe", "#1d4ed8"),
    "rejected": ("#ede9fe", "#6d28d9"),
    "cancelled": ("#f4f4f4", "#6b7280"),
}

_W, _H, _GAP_X, _GAP_Y = 170, 44, 40, 64
_CHAR = 5.6  # width of a character at font-size 10, for placing labels without measuring text


def edges(graph: Graph, *, tools: bool = False) -> list[tuple[str, str, str]]:
    """Every edge as (source, target, label): "" for an unconditional edge. With ``tools`` a
    route's label adds the tools it binds (``query_type == 'code' [web_search]``), as every
    drawing of the graph shows them: which tools a step gets is part of the route taken to it."""

    def routed(label: str, go: Go) -> str:
        return f"{label} [{', '.join(go.tools)}]" if tools and go.tools is not None else label

    out: list[tuple[str, str, str]] = []
    for src, targets in graph.edges.items():
        out.extend((src, t, "") for t in targets)
    for src, router in graph.routers.items():
        out.extend((src, r.target, routed(str(r.condition), r.go)) for r in router.routes)
        out.append((src, router.default.target, routed("default", router.default)))
    for spec in graph.steps.values():
        if spec.fallback:
            out.append((spec.name, spec.fallback, "on failure"))
        if spec.approval is not None and spec.approval.on_reject:
            out.append((spec.name, spec.approval.on_reject, "on reject"))
    return out


def _dashed(label: str) -> bool:
    return label in ("on failure", "on reject")


def notes(graph: Graph, name: str) -> list[str]:
    """What a step's box says under its name: what it maps over, caching, its loop bound and its
    approval condition."""
    spec = graph.steps[name]
    out = []
    if spec.subflow is not None:
        out.append(f"⊂ {spec.subflow.workflow.name}")
    if spec.map is not None:
        out.append(f"each of {spec.map.over} → {spec.map.into}")
    if spec.cache is not None:
        out.append("cached")
    if spec.max_visits is not None:
        out.append(f"at most {spec.max_visits} visits")
    if spec.approval is not None:
        when = spec.approval.when
        out.append("approval" + (f" if {when}" if when is not None else ""))
    return out


def _layers(graph: Graph, all_edges: list[tuple[str, str, str]]) -> dict[str, int]:
    succ: dict[str, list[str]] = {}
    for s, t, _ in all_edges:
        if t != END:
            succ.setdefault(s, []).append(t)
    layer = {graph.entry: 0}
    todo = deque([graph.entry])
    while todo:
        node = todo.popleft()
        for nxt in succ.get(node, []):
            if nxt not in layer:
                layer[nxt] = layer[node] + 1
                todo.append(nxt)
    for name in graph.steps:  # unreachable steps cannot exist in a valid graph; be safe anyway
        layer.setdefault(name, max(layer.values(), default=0) + 1)
    return layer


def _merged(all_edges: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Edges between the same two steps become one, their labels joined: one line, one label."""
    labels: dict[tuple[str, str, bool], list[str]] = {}
    for src, dst, label in all_edges:
        labels.setdefault((src, dst, _dashed(label)), []).append(label)
    return [(src, dst, "; ".join(x for x in found if x) or "") for (src, dst, _), found in labels.items()]


class _Labels:
    """Places edge labels so that no two overlap: a label that would hit one already placed moves
    down a line until it is clear."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, float, float, float]] = []

    def place(
        self, x: float, y: float, text: tuple[str, ...], avoid: list[tuple[float, float, float, float]]
    ) -> tuple[float, float]:
        width, height = _extent(text)
        for _ in range(40):
            box = (x - 3, y - 10, x - 3 + width, y - 10 + height)
            if not any(_overlap(box, other) for other in self.boxes + avoid):
                self.boxes.append(box)
                return x, y
            y += _LINE
        self.boxes.append((x - 3, y - 10, x - 3 + width, y - 10 + height))
        return x, y


def _quadratic(
    start: tuple[float, float], control: tuple[float, float], end: tuple[float, float], t: float
) -> tuple[float, float]:
    """The point at ``t`` of a quadratic Bezier curve (a straight line when ``control`` is its middle)."""
    a, b, c = (1 - t) ** 2, 2 * t * (1 - t), t * t
    return a * start[0] + b * control[0] + c * end[0], a * start[1] + b * control[1] + c * end[1]


_WIDEST = 48  # characters on one line of an edge's label; a longer label takes more lines
_NARROW = 24  # ... and on one squeezed between two fanned-out edges
_LINE = 13  # px from one line of a label to the next, and the height of a one-line label's box


def _lines(label: str, widest: int = _WIDEST) -> tuple[str, ...]:
    """A label as the lines it is drawn on: whole when it is short, else broken where it reads
    best (after the ``;`` between the labels of edges drawn as one, before a route's ``[tools]``),
    then between words. Nothing is left out: a condition cut at 48 characters lost its value's end
    and the tools the exports show."""
    if len(label) <= widest:
        return (label,)
    lines: list[str] = []
    for piece in re.split(r"(?<=;) | (?=\[)", label):
        for part in textwrap.wrap(piece, widest, break_on_hyphens=False):
            if lines and len(lines[-1]) + 1 + len(part) <= widest:
                lines[-1] += " " + part
            else:
                lines.append(part)
    return tuple(lines)


def _extent(text: tuple[str, ...]) -> tuple[float, float]:
    """A label's box: its width and height, from its lines (no text is measured)."""
    return max(len(line) for line in text) * _CHAR + 6, _LINE * len(text)


def _label(lx: float, ly: float, text: tuple[str, ...]) -> str:
    """A label's lines on a white box, its first baseline's start at (lx, ly)."""
    width, height = _extent(text)
    lines = "".join(
        f'<tspan x="{lx:.0f}" dy="{0 if i == 0 else _LINE}">{html.escape(line)}</tspan>' for i, line in enumerate(text)
    )
    return (
        f'<rect x="{lx - 3:.0f}" y="{ly - 10:.0f}" width="{width:.0f}" height="{height:.0f}" rx="3" '
        f'fill="white" fill-opacity="0.85"/>'
        f'<text x="{lx:.0f}" y="{ly:.0f}" fill="#444" font-size="10">{lines}</text>'
    )


def _cuts(segment: tuple[float, float, float, float], box: tuple[float, float, float, float]) -> bool:
    """Whether a straight edge (which always runs downwards or level) passes through the box."""
    x1, y1, x2, y2 = segment
    top, bottom = max(min(y1, y2), box[1]), min(max(y1, y2), box[3])
    if top > bottom or y1 == y2:
        return y1 == y2 and box[1] <= y1 <= box[3] and min(x1, x2) < box[2] and box[0] < max(x1, x2)
    xa, xb = (x1 + (x2 - x1) * (y - y1) / (y2 - y1) for y in (top, bottom))
    return min(xa, xb) < box[2] and box[0] < max(xa, xb)


def _along(
    point: Callable[[float], tuple[float, float]],
    ts: tuple[float, ...],
    slope: float,
    extent: tuple[float, float],
    left: bool,
) -> list[tuple[float, float]]:
    """Where a label of ``extent`` (width, height) may go beside a line: at each fraction ``ts`` of
    it (``point(t)``), on its left or right, clear of it across the label's height (6 px above the
    point to the box's foot, 7 below for one line, where a line of ``slope`` px per px down has
    moved on). As (x, y) of the text's first baseline start."""
    width, height = extent
    below = height - 6
    out = []
    for t in ts:
        px, py = point(t)
        lx = px + min(slope * below, slope * -6) - 5 - width if left else px + max(slope * below, slope * -6) + 8
        out.append((lx, py + 4))
    return out


def _beside_line(
    line: Callable[[float], tuple[float, float]],
    ts: tuple[float, ...],
    slope: float,
    sides: tuple[bool, ...],
    extent: tuple[float, float],
) -> list[tuple[float, float]]:
    """Where a label of ``extent`` may go beside a straight edge: :func:`_along` on each of ``sides``
    (left: True) in turn."""
    return [spot for left in sides for spot in _along(line, ts, slope, extent, left)]


def _place(
    candidates: list[tuple[float, float]],
    text: tuple[str, ...],
    placer: _Labels,
    steps: list[tuple[float, float, float, float]],
    segments: list[tuple[float, float, float, float]],
) -> tuple[float, float] | None:
    """The first of ``candidates`` inside the drawing where no straight edge runs through the label
    and it covers no step or label (taken: no later label covers it); None if there is none."""
    width, height = _extent(text)
    for lx, ly in candidates:
        box = (lx - 3, ly - 10, lx - 3 + width, ly - 10 + height)
        if (
            box[0] >= 0
            and not any(_overlap(box, other) for other in placer.boxes + steps)
            and not any(_cuts(segment, box) for segment in segments)
        ):
            placer.boxes.append(box)
            return lx, ly
    return None


def _ys(path: str) -> list[float]:
    """The y of every point of an SVG path (``M x,y C x,y x,y x,y``...)."""
    numbers = path.replace("M", " ").replace("C", " ").replace("Q", " ").replace("L", " ").replace(",", " ").split()
    return [float(v) for v in numbers[1::2]]


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _pause_icon(x: float, y: float) -> str:
    """The approval marker as shapes (no emoji font needed): a pause sign in an amber disc."""
    return (
        f'<circle cx="{x + 7}" cy="{y + 7}" r="7" fill="#b45309"/>'
        f'<rect x="{x + 4}" y="{y + 3.5}" width="2.2" height="7" fill="white"/>'
        f'<rect x="{x + 7.8}" y="{y + 3.5}" width="2.2" height="7" fill="white"/>'
    )


def _warning_icon(x: float, y: float) -> str:
    """The irreversible marker as shapes: an exclamation mark in a red triangle."""
    return (
        f'<path d="M{x + 7},{y} L{x + 14},{y + 13} L{x},{y + 13} z" fill="#b91c1c"/>'
        f'<rect x="{x + 6.2}" y="{y + 4}" width="1.6" height="5" fill="white"/>'
        f'<rect x="{x + 6.2}" y="{y + 10}" width="1.6" height="1.6" fill="white"/>'
    )


def to_svg(
    graph: Graph,
    statuses: Mapping[str, str] | None = None,
    *,
    expand: bool = False,
    sub_statuses: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """The graph as an SVG string; ``statuses`` colours steps (pending, running, ok, failed...).

    Steps sit in layers by distance from the entry. Edges back to an earlier layer (loops) arc on
    the right, edges within a layer arc below the row, dashed edges (fallbacks, rejections) bow to
    the side and lie under the solid ones, and labels never overlap one another.

    A sub-workflow step is drawn with a double border naming its workflow; with ``expand`` each
    sub-workflow's own graph is drawn in a frame below, joined to its step by a dashed line (and
    so on down), coloured by ``sub_statuses`` (the child workflow's name -> its step statuses).
    """
    parts, width, height, pos = _draw(graph, statuses or {})
    panels: list[str] = []
    if expand:
        y = height
        for name in sorted(n for n, spec in graph.steps.items() if spec.subflow is not None):
            child = _child_graph(graph, name)
            if child is None:
                continue
            inner = to_svg(child, (sub_statuses or {}).get(child.name), expand=True, sub_statuses=sub_statuses)
            child_w, child_h = _size(inner)
            x0, y0 = 20, y + 30
            sx, sy = pos[name]
            panels.append(
                f'<g class="wfk-subflow-panel"><path d="M{sx - 3},{sy + _H / 2} L{x0 + 4},{sy + _H / 2} '
                f'L{x0 + 4},{y0}" fill="none" stroke="#7c3aed" stroke-dasharray="3 3"/>'
                f'<rect x="{x0}" y="{y0}" width="{child_w + 16}" height="{child_h + 30}" rx="10" fill="none" '
                f'stroke="#7c3aed" stroke-dasharray="6 3"/>'
                f'<text x="{x0 + 10}" y="{y0 + 18}" fill="#5b21b6">step {html.escape(name)} runs workflow '
                f"{html.escape(child.name)}</text>"
                f'<svg x="{x0 + 8}" y="{y0 + 24}" width="{child_w}" height="{child_h}">{_inner(inner)}</svg></g>'
            )
            width = max(width, int(child_w) + 56)
            y = y0 + child_h + 30
        height = y + 10 if panels else height
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">' + "".join(parts + panels) + "</svg>"
    )


def as_img(svg: str, *, alt: str) -> str:
    """An SVG drawing as an HTML ``<img>`` with a data URI, for HTML outputs in notebooks.

    JupyterLab sanitizes the HTML outputs of a notebook it does not trust (one executed by
    papermill, a colleague's, any notebook opened from disk that this browser did not run), and
    the sanitizer strips inline ``<svg>``: the drawing would shrink to the text of its labels. An
    image survives it, in trusted notebooks as well, so the graph shows wherever it is opened.
    ``alt`` is the text shown where images are off (say, the graph as text).
    """
    data = base64.b64encode(svg.encode()).decode("ascii")
    return f'<img class="wfk-graph" src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt)}"/>'


def _child_graph(graph: Graph, step: str) -> Graph | None:
    sub = graph.steps[step].subflow
    child = None if sub is None else sub.workflow.validate()
    return child if isinstance(child, Graph) else None


def _size(svg: str) -> tuple[float, float]:
    head = svg[: svg.index(">")]
    width = float(head.split('width="', 1)[1].split('"', 1)[0])
    height = float(head.split('height="', 1)[1].split('"', 1)[0])
    return width, height


def _inner(svg: str) -> str:
    """What an SVG string draws, without its outer element (to nest it in another)."""
    return svg[svg.index(">") + 1 : svg.rindex("</svg>")]


_Drawing = tuple[list[str], int, float, dict[str, tuple[float, float]]]


def _draw(graph: Graph, statuses: Mapping[str, str]) -> _Drawing:
    """The graph's own drawing: (SVG parts without the outer element, width, height, each step's
    top-left corner). Where a label finds no place beside its edge (a condition and its tools
    between two fanned-out edges), the rows its edge joins are drawn further apart, a little at a
    time, while that places more labels."""
    drawing, squeezed = _layout(graph, statuses, {})
    best = drawing, len(squeezed)
    gaps: dict[int, float] = {}  # a layer -> the space below it, where wider than _GAP_Y
    for _ in range(6):
        if not squeezed:
            break
        for level in set(squeezed):
            gaps[level] = gaps.get(level, _GAP_Y) + 16
        drawing, squeezed = _layout(graph, statuses, gaps)
        if len(squeezed) < best[1]:
            best = drawing, len(squeezed)
    return best[0]


def _layout(graph: Graph, statuses: Mapping[str, str], gaps: Mapping[int, float]) -> tuple[_Drawing, list[int]]:
    """The drawing with ``gaps`` below some layers (``_GAP_Y`` below the others), and for each label
    that found no place beside its edge, its edge's source layer."""
    all_edges = _merged(edges(graph, tools=True))
    layer = _layers(graph, all_edges)
    rows: dict[int, list[str]] = {}
    for name in graph.steps:
        rows.setdefault(layer[name], []).append(name)
    width = max(len(r) for r in rows.values()) * (_W + _GAP_X) + 260
    tops = [20.0]  # the top of each layer's row, and of the row below the last (the end marker's)
    for level in range(max(rows) + 1):
        tops.append(tops[-1] + _H + gaps.get(level, _GAP_Y))
    pos: dict[str, tuple[float, float]] = {}
    for level, names in sorted(rows.items()):
        row_width = len(names) * (_W + _GAP_X) - _GAP_X
        x0 = (width - 260 - row_width) / 2 + 20
        for i, name in enumerate(names):
            pos[name] = (x0 + i * (_W + _GAP_X), tops[level])
    end_y = tops[-1]
    has_end = any(t == END for _, t, _ in all_edges)
    if has_end:
        pos[END] = ((width - 260) / 2 + 20 - 30, end_y)
    boxes = [(x, y, x + _W, y + _H) for n, (x, y) in pos.items() if n != END]
    placer = _Labels()
    lines: list[tuple[bool, str]] = []  # (dashed, svg) so dashed edges go under the solid ones
    texts: list[str] = []
    loops = 0
    segments: list[tuple[float, float, float, float]] = []  # the straight edges, end to end
    # Each label with where it may go, placed once every line is known so that none runs through it
    # (between two fanned-out edges, or on the solid edge a fallback bows from, its edge was a guess).
    pending: list[
        tuple[Callable[[tuple[float, float]], list[tuple[float, float]]] | None, tuple[float, float], str, int]
    ] = []
    # How far down the drawing goes, for its height: a row is kept for the end marker only when it
    # is drawn (it left a blank band under every graph without an edge to the end).
    lowest = max(y + (24 if n == END else _H) for n, (_, y) in pos.items())
    for src, dst, label in sorted(all_edges, key=lambda e: (_dashed(e[2]), layer[e[0]], e[1])):
        extent = _extent(_lines(label))
        beside: Callable[[tuple[float, float]], list[tuple[float, float]]] | None = None  # extent -> spots
        x1, y1 = pos[src]
        x2, y2 = pos[dst] if dst in pos else (x1, y1 + _H + _GAP_Y)
        dashed = _dashed(label)
        style = ' stroke-dasharray="5 3" stroke="#8a8a8a"' if dashed else ' stroke="#555"'
        if dst != END and layer.get(dst, 0) < layer[src]:  # a loop back: arc on the right
            loops += 1
            sx, sy = x1 + _W, y1 + _H / 2
            ex, ey = x2 + _W, y2 + _H / 2
            bulge = max(sx, ex) + 30 + 22 * loops
            path = f"M{sx},{sy} C{bulge},{sy} {bulge},{ey} {ex + 2},{ey}"
            lx, ly = bulge - 8, (sy + ey) / 2
        elif dst == src:  # a step routing to itself: a loop out of its right side and back
            sx, sy, ey = x1 + _W, y1 + _H * 0.3, y1 + _H * 0.7
            bulge = sx + 42
            path = f"M{sx},{sy} C{bulge},{sy - 14} {bulge},{ey + 14} {sx + 2},{ey}"
            lx, ly = bulge - 6, (sy + ey) / 2 + 4
        elif dst != END and layer.get(dst, 0) == layer[src]:  # same row: an arc below it
            sx, sy = x1 + _W / 2, y1 + _H
            ex, ey = x2 + _W / 2, y2 + _H
            dip = sy + 26
            path = f"M{sx},{sy} C{sx},{dip} {ex},{dip} {ex},{ey + 2}"
            lx, ly = (sx + ex) / 2 - (extent[0] - 6) / 2, dip + 4
        else:
            sx, sy = x1 + _W / 2, y1 + _H
            ex, ey = (x2 + _W / 2, y2) if dst != END else (x2 + 30, y2)
            if dashed:  # bow sideways, across its own direction, so it never runs along a solid edge
                dx, dy = ex - sx, ey - sy
                length = max((dx * dx + dy * dy) ** 0.5, 1.0)
                bow = 45 if dx >= 0 else -45
                mx, my = (sx + ex) / 2 - dy / length * bow, (sy + ey) / 2 + dx / length * bow
                path = f"M{sx},{sy} Q{mx},{my} {ex},{ey - 2}"
                lx, ly = (sx + mx) / 2 + 4, (sy + my) / 2 + 4
                # Around the bow's outermost point, on its outer side, away from the solid edges.
                outer_left = mx < (sx + ex) / 2
                curve = partial(_quadratic, (sx, sy), (mx, my), (ex, ey - 2))
                beside = partial(_along, curve, (0.5, 0.4, 0.6, 0.3, 0.7), 0.0, left=outer_left)
            else:
                path = f"M{sx},{sy} L{ex},{ey - 2}"
                segments.append((sx, sy, ex, ey - 2))
                lx, ly = sx + (ex - sx) * 0.35 + 4, sy + (ey - sy) * 0.35 + 4
                # Near the source, where fanned-out edges have parted, on the edge's outer side (left
                # of an edge going left); further along, where they have parted more, if need be.
                slope = (ex - sx) / (ey - sy) if ey != sy else 0.0
                line = partial(_quadratic, (sx, sy), ((sx + ex) / 2, (sy + ey) / 2), (ex, ey))
                ts = (0.35, 0.45, 0.55, 0.25, 0.65, 0.75)
                # Straight down: either side will do.
                beside = partial(_beside_line, line, ts, slope, (slope < 0, True) if slope == 0 else (slope < 0,))
        lines.append((dashed, f'<path d="{path}" fill="none"{style} marker-end="url(#wfk-arrow)"/>'))
        lowest = max(lowest, *_ys(path))  # a curve stays within its control points
        if label:
            pending.append((beside, (lx, ly), label, layer[src]))
    squeezed: list[int] = []
    for beside, fallback, label, level in pending:
        # Whole lines first; lines of half the width (the tools under their condition) where those
        # find no place; else its fallback, and the rows it joins are tried further apart.
        for text in (_lines(label), _lines(label, _NARROW)) if beside is not None else (_lines(label),):
            spot = None if beside is None else _place(beside(_extent(text)), text, placer, boxes, segments)
            if spot is not None:
                break
        if spot is None:
            if beside is not None:
                squeezed.append(level)
            spot = placer.place(*fallback, text, boxes)
        texts.append(_label(*spot, text))
    used = max([b[2] for b in placer.boxes] + [width])
    width = int(used + 10)
    height = max([b[3] for b in placer.boxes] + [lowest]) + 20  # the margin above the first row
    parts = [
        '<defs><marker id="wfk-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    parts += [svg for dashed, svg in lines if dashed] + [svg for dashed, svg in lines if not dashed]
    for name, (x, y) in pos.items():
        if name == END:
            parts.append(
                f'<rect x="{x}" y="{y}" width="60" height="24" rx="12" fill="#333"/>'
                f'<text x="{x + 30}" y="{y + 16}" fill="white" text-anchor="middle">end</text>'
            )
            continue
        fill, stroke = STATUS_COLORS.get(statuses.get(name, "pending"), STATUS_COLORS["pending"])
        spec = graph.steps[name]
        title = html.escape(f"{name}: {spec.description}" if spec.description else name)
        if spec.map is not None:
            title += html.escape(f" (map over {spec.map.over})")
        width_attr = 3 if name == graph.entry else 1.5
        icons = ""
        if spec.approval is not None:
            icons += _pause_icon(x + 6, y + 6)
        if spec.irreversible:
            icons += _warning_icon(x + _W - 20, y + 6)
        below = notes(graph, name)
        name_y = y + (_H / 2 + 4 if not below else 18)
        note = (
            f'<text x="{x + _W / 2}" y="{y + 33}" text-anchor="middle" font-size="9" fill="#555">'
            f"{html.escape('; '.join(below)[:34])}</text>"
            if below
            else ""
        )
        # A map step is drawn as a stack of cards (one per item).
        stack = (
            f'<rect x="{x + 6}" y="{y - 6}" width="{_W}" height="{_H}" rx="8" fill="{fill}" stroke="{stroke}"/>'
            f'<rect x="{x + 3}" y="{y - 3}" width="{_W}" height="{_H}" rx="8" fill="{fill}" stroke="{stroke}"/>'
            if spec.map is not None
            else ""
        )
        if spec.subflow is not None:  # a double border: the step holds a whole workflow
            stack = (
                f'<rect x="{x - 3}" y="{y - 3}" width="{_W + 6}" height="{_H + 6}" rx="10" fill="none" '
                f'stroke="{stroke}"/>'
            )
            title += html.escape(f" (sub-workflow {spec.subflow.workflow.name})")
        group = (
            '<g class="wfk-map">'
            if spec.map is not None
            else '<g class="wfk-subflow">'
            if spec.subflow is not None
            else "<g>"
        )
        parts.append(
            f'{group}<title>{title}</title>{stack}<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width_attr}"/>{icons}'
            f'<text x="{x + _W / 2}" y="{name_y}" text-anchor="middle">{html.escape(name[:22])}</text>{note}</g>'
        )
    parts += texts  # labels last: on top of every line
    return (parts, width, height, pos), squeezed


def to_text(graph: Graph, *, expand: bool = False) -> str:
    """The graph as plain text: steps with their options, then every edge with its condition and
    the tools a route binds (as the drawings show them); with ``expand``, each sub-workflow's own
    graph indented under its step."""
    lines = [f"workflow {graph.name!r} (entry: {graph.entry})"]
    for name, spec in graph.steps.items():
        notes = [
            text
            for text, on in (
                (f"retry {spec.retry.max_retries}x", spec.retry.max_retries > 0),
                (f"timeout {spec.timeout:g}s" if spec.timeout else "", spec.timeout is not None),
                (f"max_visits {spec.max_visits}", spec.max_visits is not None),
                ("approval", spec.approval is not None),
                ("irreversible", spec.irreversible),
                (
                    f"map over {spec.map.over} into {spec.map.into}"
                    + (f", {spec.map.max_concurrency} at a time" if spec.map and spec.map.max_concurrency else "")
                    if spec.map
                    else "",
                    spec.map is not None,
                ),
                ("cache", spec.cache is not None),
                (_subflow_note(spec.subflow) if spec.subflow else "", spec.subflow is not None),
            )
            if on
        ]
        lines.append(f"  [{name}]" + (f"  ({', '.join(notes)})" if notes else ""))
        child = _child_graph(graph, name) if expand else None
        if child is not None:
            lines.extend("    | " + line for line in to_text(child, expand=True).splitlines())
    for src, dst, label in edges(graph, tools=True):
        lines.append(f"  {src} -> {'END' if dst == END else dst}" + (f"   if {label}" if label else ""))
    return "\n".join(lines)


def _subflow_note(sub: Subflow) -> str:
    ins = ", ".join(f"{parent}->{child}" for child, parent in sub.inputs)
    outs = ", ".join(f"{child}->{parent}" for parent, child in sub.outputs)
    return f"sub-workflow {sub.workflow.name!r}" + (f", in: {ins}" if ins else "") + f", out: {outs}"
