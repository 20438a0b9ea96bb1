"""Plain-text and HTML views of runs and workflows: what a terminal, a papermill output and a
notebook show when no widget can (or need) be drawn. The live widgets build on these."""

from __future__ import annotations

import html
import json
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wfkit.model._events import StepEvent
from wfkit.model._processors import redact_text

if TYPE_CHECKING:
    from wfkit.engine._run import Run
    from wfkit.model._approvals import Ticket
    from wfkit.model._graph import Graph


def step_rows(events: Sequence[StepEvent]) -> list[dict[str, Any]]:
    """One row per step visit: last status, attempts, latency of the last attempt, route, error of
    the last event, and a gate's ``decision`` ("approved by alice: fine"), which stays on the row
    after the approved step has run."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for e in events:
        row = rows.setdefault((e.step, e.visit), {"step": e.step, "visit": e.visit, "attempts": 0})
        if e.attempt > 0:
            row["attempts"] = max(row["attempts"], e.attempt)
            row["latency_s"] = e.latency_s
        row["status"] = e.status
        row["route"] = e.route_taken or row.get("route")
        row["error"] = f"{e.error_type}: {e.error_message}" if e.error_type else None
        if e.approver:
            row["decision"] = f"{e.status} by {e.approver}" + (f": {e.decision_comment}" if e.decision_comment else "")
    return list(rows.values())


def _error_or_decision(row: dict[str, Any]) -> str:
    """The "error / decision" column: the gate's decision, then the error the visit ended with."""
    return "; ".join(part for part in (row.get("decision"), row.get("error")) if part)


def statuses(events: Sequence[StepEvent]) -> dict[str, str]:
    """The latest status of each step, for colouring the graph."""
    out: dict[str, str] = {}
    for e in events:
        out[e.step] = e.status
    return out


def _ms(seconds: float) -> str:
    """A step's latency in milliseconds, the unit of every run view: ``12.3 ms``, and a step of a
    few microseconds ``0.004 ms``, not ``0.0 ms`` (which reads as unmeasured). Always in ms: a unit
    that changed with the value would change a replayed notebook's output from one run to the next
    (its durations are compared by unit, their figures masked)."""
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms >= 0.1 or ms == 0 else f"{ms:.3f} ms"


def run_text(run: Run) -> str:
    lines = [f"run {run.run_id} of {run.workflow!r}: {run.status}"]
    rows = step_rows(run.events)
    if rows:  # the HTML table's column names, which the quickstart's text explains
        lines.append(
            f"  {'step':<20} {'visit':>5} {'status':<16} {'attempts':>8} {'latency':>11}  route / [error or decision]"
        )
    for r in rows:
        latency = f"{_ms(r['latency_s']):>11}" if "latency_s" in r else " " * 11
        route = f"-> {r['route']}" if r.get("route") else ""
        shown = _error_or_decision(r)
        extra = f"  [{shown}]" if shown else ""
        line = f"  {r['step']:<20} {r['visit']:>5} {r['status']:<16} {r['attempts']:>8} {latency}  {route}{extra}"
        lines.append(line.rstrip())
    if run.error is not None:
        lines.append(f"  error: {type(run.error).__name__}: {redact_text(str(run.error))}")
    for t in run.tickets():
        lines.append(f"  waiting for approval: ticket {t.ticket_id} at {t.step!r}: {t.reason}")
    return "\n".join(lines)


def run_html(run: Run, *, graph_html: str | None = None) -> str:
    status_color = {
        "succeeded": "#15803d",
        "failed": "#b91c1c",
        "timed_out": "#b91c1c",
        "waiting_approval": "#b45309",
        "running": "#2563eb",
    }.get(run.status, "#555")
    cells = []
    for r in step_rows(run.events):
        latency = _ms(r["latency_s"]) if "latency_s" in r else ""
        cells.append(
            "<tr>"
            + "".join(
                f'<td style="text-align:left">{html.escape(str(v))}</td>'
                for v in (
                    r["step"],
                    r["visit"],
                    r["status"],
                    r["attempts"],
                    latency,
                    r.get("route") or "",
                    _error_or_decision(r),
                )
            )
            + "</tr>"
        )
    error = ""
    if run.error is not None:
        shown = html.escape(redact_text(str(run.error)))
        error = f'<p style="color:#b91c1c">{html.escape(type(run.error).__name__)}: {shown}</p>'
    # Headers and cells aligned alike, whatever the front end's table style (JupyterLab centred the
    # headers over left-aligned cells).
    headers = ("step", "visit", "status", "attempts", "latency", "route", "error / decision")
    table = (
        '<table class="wfkit-steps"><thead><tr>'
        + "".join(f'<th style="text-align:left">{h}</th>' for h in headers)
        + "</tr></thead><tbody>"
        + "".join(cells)
        + "</tbody></table>"
    )
    return (
        f'<div class="wfkit-run"><b>run {html.escape(run.run_id)}</b> of <code>{html.escape(run.workflow)}</code>: '
        f'<span style="color:{status_color}">{html.escape(run.status)}</span>{error}{table}'
        + (graph_html or "")
        + "</div>"
    )


def ticket_text(t: Ticket, workspace: str | None = None) -> str:
    """A ticket for a terminal or a headless notebook's output; an open one says how to decide it
    (where no panel can be clicked, the run waits for one of these). ``workspace``: the folder of a
    ticket outside the default workspace, which both ways to decide it must name to find it."""
    text = (
        f"ticket {t.ticket_id}: run {t.run_id} of {t.workflow!r}, step {t.step!r} (visit {t.visit}) - "
        f"{t.status}{' by ' + str(t.decided_by) if t.decided_by else ''}\n  reason: {t.reason}\n"
        f"  payload: {json.dumps(t.payload, default=str)[:300]}"
    )
    if not t.is_open:
        return text
    return (
        f"{text}\n  decide: wf.pending({'' if workspace is None else repr(workspace)}).approve({t.ticket_id!r}, "
        f"by=NAME) (or .reject) in a kernel that defines {t.workflow!r}, which resumes the run, or `wfkit approve "
        f"{t.ticket_id}{'' if workspace is None else ' --workspace ' + shlex.quote(workspace)} --by NAME` in a "
        f"shell; a headless run decides by the policy it is given: policy='approve' or 'reject', or a "
        f"decisions file recorded with Workspace.export_decisions"
    )


def gate_outcomes(graph: Graph, step: str, decided: str | None = None) -> str:
    """What a reviewer's decision on ``step``'s gate leads to, from the workflow's graph (HTML).
    Once ``decided`` ("approved" or "rejected"), only what that decision leads to: the other one
    reads as if the choice were still open."""
    spec = graph.steps[step]
    irreversible = " (irreversible: it cannot be undone)" if spec.irreversible else ""
    approved = f"<code>{html.escape(step)}</code> runs{irreversible}"
    on_reject = spec.approval.on_reject if spec.approval is not None else None
    rejected = f"the run goes on at <code>{html.escape(on_reject)}</code>" if on_reject else "the run fails"
    if decided == "approved":
        return f"Approved: {approved}."
    if decided == "rejected":
        return f"Rejected: {rejected}."
    return f"If approved: {approved}. If rejected: {rejected}."
