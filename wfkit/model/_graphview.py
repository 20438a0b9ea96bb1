"""A workflow graph as SVG (and as text), drawn here: no network (no mermaid.ink), no graphviz.

Layout: steps are placed in layers by their distance from the entry; edges that go back to an
earlier layer (loops) are drawn as arcs on the right. Routes carry their condition as a label.
Colours show a run's step statuses when given.
"""

from __future__ import annotations

import html
from collections import deque
from collections.abc import Mapping

from wfkit.model._graph import Graph
from wfkit.model._routes import END

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
}

_W, _H, _GAP_X, _GAP_Y = 150, 36, 40, 56


def edges(graph: Graph) -> list[tuple[str, str, str]]:
    """Every edge as (source, target, label): "" for an unconditional edge."""
    out: list[tuple[str, str, str]] = []
    for src, targets in graph.edges.items():
        out.extend((src, t, "") for t in targets)
    for src, router in graph.routers.items():
        out.extend((src, r.target, str(r.condition)) for r in router.routes)
        out.append((src, router.default.target, "default"))
    for spec in graph.steps.values():
        if spec.fallback:
            out.append((spec.name, spec.fallback, "on failure"))
        if spec.approval is not None and spec.approval.on_reject:
            out.append((spec.name, spec.approval.on_reject, "on reject"))
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


def to_svg(graph: Graph, statuses: Mapping[str, str] | None = None) -> str:
    """The graph as an SVG string; ``statuses`` colours steps (pending, running, ok, failed...)."""
    all_edges = edges(graph)
    layer = _layers(graph, all_edges)
    rows: dict[int, list[str]] = {}
    for name in graph.steps:
        rows.setdefault(layer[name], []).append(name)
    width = max(len(r) for r in rows.values()) * (_W + _GAP_X) + 160
    pos: dict[str, tuple[float, float]] = {}
    for level, names in sorted(rows.items()):
        row_width = len(names) * (_W + _GAP_X) - _GAP_X
        x0 = (width - 160 - row_width) / 2 + 20
        for i, name in enumerate(names):
            pos[name] = (x0 + i * (_W + _GAP_X), 20 + level * (_H + _GAP_Y))
    end_y = 20 + (max(rows) + 1) * (_H + _GAP_Y)
    height = end_y + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="wfk-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    statuses = statuses or {}
    has_end = any(t == END for _, t, _ in all_edges)
    if has_end:
        pos[END] = (width / 2 - 80 - 30, end_y)
    for src, dst, label in all_edges:
        x1, y1 = pos[src]
        x2, y2 = pos[dst] if dst in pos else (x1, y1 + _H + _GAP_Y)
        dashed = ' stroke-dasharray="4 3"' if label in ("on failure", "on reject") else ""
        if dst != END and layer.get(dst, 0) <= layer[src]:  # a loop back: arc on the right
            sx, sy = x1 + _W, y1 + _H / 2
            ex, ey = x2 + _W, y2 + _H / 2
            bulge = sx + 40 + 15 * (layer[src] - layer.get(dst, 0))
            path = f"M{sx},{sy} C{bulge},{sy} {bulge},{ey} {ex + 2},{ey}"
            lx, ly = bulge - 10, (sy + ey) / 2
        else:
            sx, sy = x1 + _W / 2, y1 + _H
            ex, ey = (x2 + _W / 2, y2) if dst != END else (x2 + 30, y2)
            path = f"M{sx},{sy} L{ex},{ey - 2}"
            lx, ly = (sx + ex) / 2 + 4, (sy + ey) / 2
        parts.append(f'<path d="{path}" fill="none" stroke="#555"{dashed} marker-end="url(#wfk-arrow)"/>')
        if label:
            parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" fill="#444" font-size="10">{html.escape(label[:40])}</text>')
    for name, (x, y) in pos.items():
        if name == END:
            parts.append(
                f'<rect x="{x}" y="{y}" width="60" height="24" rx="12" fill="#333"/>'
                f'<text x="{x + 30}" y="{y + 16}" fill="white" text-anchor="middle">end</text>'
            )
            continue
        fill, stroke = STATUS_COLORS.get(statuses.get(name, "pending"), STATUS_COLORS["pending"])
        spec = graph.steps[name]
        badges = "".join(mark for mark, on in (("⏸", spec.approval is not None), ("⚠", spec.irreversible)) if on)
        if spec.cache is not None:
            badges += "⟲"
        title = html.escape(f"{name}: {spec.description}" if spec.description else name)
        width_attr = 3 if name == graph.entry else 1.5
        label = html.escape((badges + " " if badges else "") + name[:22])
        if spec.map is None:
            parts.append(
                f'<g><title>{title}</title><rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="8" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="{width_attr}"/>'
                f'<text x="{x + _W / 2}" y="{y + _H / 2 + 4}" text-anchor="middle">{label}</text></g>'
            )
            continue
        # A map step is drawn as a stack of cards (one per item), with what it maps over and into.
        over = html.escape(f"each of {spec.map.over} → {spec.map.into}"[:30])
        parts.append(
            f'<g class="wfk-map"><title>{title} (map over {html.escape(spec.map.over)})</title>'
            f'<rect x="{x + 6}" y="{y - 6}" width="{_W}" height="{_H}" rx="8" fill="{fill}" stroke="{stroke}"/>'
            f'<rect x="{x + 3}" y="{y - 3}" width="{_W}" height="{_H}" rx="8" fill="{fill}" stroke="{stroke}"/>'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width_attr}"/>'
            f'<text x="{x + _W / 2}" y="{y + 15}" text-anchor="middle">{label}</text>'
            f'<text x="{x + _W / 2}" y="{y + 29}" text-anchor="middle" font-size="9" fill="#555">{over}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def to_text(graph: Graph) -> str:
    """The graph as plain text: steps with their options, then every edge with its condition."""
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
            )
            if on
        ]
        lines.append(f"  [{name}]" + (f"  ({', '.join(notes)})" if notes else ""))
    for src, dst, label in edges(graph):
        lines.append(f"  {src} -> {'END' if dst == END else dst}" + (f"   if {label}" if label else ""))
    return "\n".join(lines)
