"""A workflow graph as Mermaid or Graphviz DOT text, for docs, reviews and other tools.

Both draw the edges the SVG view draws (:func:`wfkit.model._graphview.edges`): unconditional edges
plain, routes labelled with their condition and the tools they bind (as the SVG view labels them,
on lines of 48 characters at most there), fallbacks and rejections dashed.
"""

from __future__ import annotations

import json

from wfkit.model._graph import Graph
from wfkit.model._graphview import edges
from wfkit.model._routes import END

_DASHED = ("on failure", "on reject")


def _mermaid_text(text: str) -> str:
    # Mermaid reads "..." labels literally except for quotes, which it takes as entity codes.
    return text.replace('"', "#quot;")


def to_mermaid(graph: Graph) -> str:
    """``flowchart TD`` text; node ids are ``s0, s1, ...`` so any step name is safe."""
    ids = {name: f"s{i}" for i, name in enumerate(graph.steps)}
    ids[END] = "end_"
    lines = ["flowchart TD"]
    for name, node in ids.items():
        if name == END:
            continue
        spec = graph.steps[name]
        marks = [m for m, on in (("approval", spec.approval is not None), ("irreversible", spec.irreversible)) if on]
        label = name + (f" ({', '.join(marks)})" if marks else "")
        shape = f'(["{_mermaid_text(label)}"])' if name == graph.entry else f'["{_mermaid_text(label)}"]'
        lines.append(f"    {node}{shape}")
    rows = edges(graph, tools=True)
    if any(dst == END for _, dst, _ in rows):
        lines.append('    end_(("end"))')
    for src, dst, label in rows:
        arrow = "-.->" if label in _DASHED else "-->"
        lines.append(f"    {ids[src]} {arrow}" + (f'|"{_mermaid_text(label)}"|' if label else "") + f" {ids[dst]}")
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    # A double-quoted DOT id: quotes and backslashes escaped as JSON does. Other text stays as it
    # is (DOT files are UTF-8): DOT has no \u escape, so "café" written "caf\u00e9" is drawn so.
    return json.dumps(text, ensure_ascii=False)


def to_dot(graph: Graph) -> str:
    """Graphviz ``digraph`` text (``dot -Tsvg`` draws it)."""
    lines = [
        f"digraph {_dot_id(graph.name)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded", fontname="sans-serif"];',
        '    edge [fontname="sans-serif", fontsize=10];',
    ]
    for name, spec in graph.steps.items():
        attrs = [f"label={_dot_id(name)}"]
        if name == graph.entry:
            attrs.append("penwidth=2")
        if spec.approval is not None or spec.irreversible:
            attrs.append('style="rounded,bold"')
        lines.append(f"    {_dot_id(name)} [{', '.join(attrs)}];")
    rows = edges(graph, tools=True)
    if any(dst == END for _, dst, _ in rows):
        lines.append(f'    {_dot_id(END)} [label="end", shape=oval];')
    for src, dst, label in rows:
        attrs = []
        if label:
            attrs.append(f"label={_dot_id(label)}")
        if label in _DASHED:
            attrs.append("style=dashed")
        lines.append(f"    {_dot_id(src)} -> {_dot_id(dst)}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"
