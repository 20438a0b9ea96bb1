"""The renderer the engine's ``Run`` is handed: a live widget in an interactive notebook, HTML and
text elsewhere. Kept apart from ``_display`` (pure text/HTML) so the widgets can build on that
module while this one builds on the widgets, and apart from ``_widgets`` so that handing it in at
``import wfkit`` does not import ipywidgets."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from wfkit.notebook._display import run_html, run_text, statuses

if TYPE_CHECKING:
    from wfkit.engine._run import Run


# One live view per run handle, so redisplaying a run shows the same widget.
_views: weakref.WeakKeyDictionary[Run, Any] = weakref.WeakKeyDictionary()


def run_bundle(run: Run) -> dict[str, Any]:
    """A run's MIME bundle: a live widget in an interactive notebook; HTML and text elsewhere
    (papermill, a terminal). The engine is handed this function and never imports this layer."""
    from wfkit.engine._mode import current_mode
    from wfkit.model._graphview import as_img, to_svg, to_text

    text = run_text(run)
    if current_mode() == "interactive":
        view = _views.get(run)
        if view is None:
            from wfkit.notebook._pending import resume_after_decision
            from wfkit.notebook._widgets import RunView
            from wfkit.store._workspace import Workspace

            # A gate decided in another kernel or a shell: the run waiting here goes on, as after a click.
            view = _views[run] = RunView(run, elsewhere=lambda t: resume_after_decision(Workspace(t.workspace), t))
        bundle: dict[str, Any] = dict(view._repr_mimebundle_() or {})
        bundle["text/plain"] = text
        return bundle
    graph = run.graph
    # An image, not inline SVG: JupyterLab strips inline SVG from notebooks it does not trust, and
    # an executed notebook opened later (papermill's output, a replay's) is one of those.
    drawing = None if graph is None else as_img(to_svg(graph, statuses(run.events)), alt=to_text(graph))
    return {"text/plain": text, "text/html": run_html(run, graph_html=drawing)}
