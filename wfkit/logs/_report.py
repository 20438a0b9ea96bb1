"""``wfkit report``: the step-log tables and plots as one HTML page with PNGs beside it."""

from __future__ import annotations

import datetime as dt
import html
import os
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin-bottom: 1.5em; }
"""


def write_report(
    workspace: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    since: dt.datetime | str | None = None,
    workflow: str | None = None,
) -> Path:
    """Write ``out/index.html`` and PNG plots for the runs in a workspace; returns the page."""
    from wfkit.logs._analysis import steps

    frame = steps(workspace, since=since, workflow=workflow)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[str] = [
        f"<h1>wfkit report</h1><p>{len(frame)} attempts, {frame['run_id'].nunique()} runs"
        + (f", since {html.escape(str(since))}" if since else "")
        + f"; written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.</p>"
    ]
    if frame.empty:
        parts.append("<p>No step attempts recorded yet.</p>")
    else:
        runs = frame.wf.runs()
        tables: list[tuple[str, Any]] = [
            ("Run latency (s)", frame.wf.run_latency().to_frame("seconds")),
            ("Latency per step (s)", frame.wf.latency()),
            ("Failures per step", frame.wf.failures()),
            ("Retries per step", frame.wf.retries()),
            ("Cost per step", frame.wf.cost(by="step")),
            ("Proposed timeouts (P99 x 1.5)", frame.wf.advise_timeouts()),
        ]
        for title, table in tables:
            parts.append(f"<h2>{html.escape(title)}</h2>{table.to_html(float_format=lambda v: f'{v:.4g}')}")
        plots = {
            "latency.png": frame.wf.plot_latency(),
            "failures.png": frame.wf.plot_failures(),
            "timeline.png": frame.wf.plot_timeline(str(runs.index[-1])),
        }
        for name, fig in plots.items():
            fig.savefig(folder / name, dpi=110)
            parts.append(f'<h2>{name[:-4].title()}</h2><img src="{name}" alt="{name[:-4]}">')
        parts.append("<h2>Runs</h2>" + runs.tail(50).to_html())
    page = folder / "index.html"
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>wfkit report</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    return page
