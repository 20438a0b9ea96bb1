"""``wfkit report``: one HTML page a team can share, with its PNG plots beside it.

An overview of every workflow, then a section per workflow: run durations, latency per step (a
table and the faceted plot), failures with their commonest messages, retries, the timeout advice
with the samples behind it, cost, and the timelines of the slowest run and of the run at P99.
Durations read "12.3 ms" or "1.52 s". The tables come from :class:`StepLog` (DuckDB over the
files); only the rows a plot draws are loaded. Figures use matplotlib's object API (no pyplot), so
writing a report touches no global plotting state.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfkit.logs._units import count_of, format_seconds
from wfkit.model._context import (
    ABANDONED_STREAM_MODELS,
    NO_TOKENS_IN_MODELS,
    NO_TOKENS_OUT_MODELS,
    NO_USAGE_MODELS,
    UNKNOWN_OUTCOME_MODELS,
    UNPRICED_MODELS,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from wfkit.logs._summaries import StepLog

# td.message has a min-width: it may break anywhere, so beside long step names a table squeezed it
# to a few characters a line (the table scrolls sideways in its .table-wrap instead).
_STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #fff; }
header { background: #24292f; color: #fff; padding: 1.2em 2em; }
header h1 { margin: 0 0 0.3em; font-size: 1.5em; }
header p { margin: 0; color: #d0d7de; }
nav { padding: 0.8em 2em; border-bottom: 1px solid #d0d7de; background: #f6f8fa; }
nav a { margin-right: 1.2em; color: #0969da; text-decoration: none; }
main { padding: 0 2em 3em; max-width: 1200px; }
section { border-bottom: 1px solid #d0d7de; padding-bottom: 1.5em; }
h2 { margin-top: 1.6em; }
h3 { margin: 1.4em 0 0.4em; font-size: 1.05em; }
p.note { color: #57606a; margin: 0.2em 0 0.6em; font-size: 0.9em; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.3em 0 1em; font-size: 0.88em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.7em; text-align: right; vertical-align: top; }
th { background: #f6f8fa; }
td.text, th.text { text-align: left; }
td.message { text-align: left; min-width: 24em; max-width: 38em; overflow-wrap: anywhere;
  font-family: ui-monospace, monospace; }
.bad { color: #cf222e; font-weight: 600; }
.ok { color: #1a7f37; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; margin: 0.3em 0 1em; }
"""


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _slug(name: str) -> str:
    """The id of a workflow's section and the stem of its plots' files: the name itself when it is
    written in lowercase letters, digits and single dashes, else that much of it and a digest of the
    whole name. Two workflows never share one: "support_triage" and "support-triage", or any two
    names written in another script ("заказы", "возвраты", both "wf-x" before), shared their plots'
    files, one workflow's section showing the other's plots."""
    import hashlib

    readable = re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower()
    if readable == name:
        return f"wf-{readable}"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"wf-{readable}-{digest}" if readable else f"wf-{digest}"


def _count(value: object) -> str:
    import pandas as pd

    # None, NaN and pd.NA (an unknown count of a nullable integer column) alike: pandas' own test.
    return "-" if pd.isna(value) else f"{int(value):,}"  # type: ignore[call-overload]


def _rate(value: object) -> str:
    return f"{float(value):.1%}" if value is not None and value == value else "-"  # type: ignore[arg-type]


def _money(value: object) -> str:
    """Dollars to four places, and to two significant digits at least: a cheap model's cost
    ($0.000013, $0.00066) must not read "$0.0000" (as if free) nor "$0.0007"."""
    if value is None or value != value:
        return "-"
    amount = float(value)  # type: ignore[arg-type]
    places = 4 if amount == 0 else max(4, 1 - math.floor(math.log10(abs(amount))))
    return f"${amount:,.{places}f}"


def _duration(value: object) -> str:
    return format_seconds(float(value)) if value is not None and value == value else "-"  # type: ignore[arg-type]


def _table(
    frame: pd.DataFrame,
    columns: Mapping[str, tuple[str, Callable[[Any], str]]],
    *,
    index: Mapping[str, str] | None = None,
    classes: Mapping[str, str] | None = None,
) -> str:
    """An HTML table: ``index`` maps index levels to headers, ``columns`` maps a column to its
    header and formatter; ``classes`` gives a column's cells a CSS class."""
    index = index or {}
    classes = classes or {}
    head = "".join(f'<th class="text">{_esc(h)}</th>' for h in index.values())
    head += "".join(f'<th class="{classes.get(c, "")}">{_esc(h)}</th>' for c, (h, _) in columns.items())
    body = []
    names = list(frame.index.names)
    for key, row in frame.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        values = dict(zip(names, keys, strict=True))
        cells = "".join(
            f'<td class="{"message" if level == "error_message" else "text"}">{_esc(values.get(level))}</td>'
            for level in index
        )
        cells += "".join(
            f'<td class="{classes.get(c, "")}">{_esc(fmt(row[c]))}</td>' for c, (_, fmt) in columns.items()
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _save(fig: Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=100)
    return name


def _nearest_rank(durations: pd.Series, q: float) -> str:
    """The run at quantile ``q`` of duration (nearest rank: an actual run, not an interpolation)."""
    ordered = durations.sort_values(kind="stable")
    return str(ordered.index[max(math.ceil(q * len(ordered)) - 1, 0)])


def _workflow_section(
    log: StepLog, runs: pd.DataFrame, workspace: str | os.PathLike[str] | None, name: str, folder: Path
) -> str:
    """The workflow's section: ``runs`` are its rows of the log's runs table (read once for all)."""
    import numpy as np
    from matplotlib.figure import Figure

    from wfkit.logs._plots import plot_latency, plot_timeline
    from wfkit.logs._steplog import steps

    mine = log.narrow(workflow=name)
    slug = _slug(name)
    parts = [f'<section id="{slug}"><h2>Workflow <code>{_esc(name)}</code></h2>']
    durations = runs["duration_s"]
    # A run a fallback saved did not fail: its outcome says, not its failed steps.
    failed_runs = int(runs["run_failed"].sum())
    fell_back = int(runs["fell_back"].sum())
    rescued = int(((runs["fell_back"] > 0) & ~runs["run_failed"]).sum())
    quantiles = {f"P{round(q * 100)}": float(np.quantile(durations, q)) for q in (0.5, 0.9, 0.99)}
    parts.append(
        f'<p>{count_of(len(runs), "run")}, <span class="{"bad" if failed_runs else "ok"}">{failed_runs:,} failed</span>'
        + (
            f" ({count_of(fell_back, 'step')} fell back to {'their' if fell_back != 1 else 'its'}"
            f" fallback, in {count_of(rescued, 'run')} that did not fail)"
            if fell_back
            else ""
        )
        + "; "
        + ", ".join(f"{k} {format_seconds(v)}" for k, v in quantiles.items())
        + f", slowest {format_seconds(float(durations.max()))} (the time whole runs ran: approval waits "
        "included, the time a run lay stopped between a crash, a failure or a cancellation and its resume not).</p>"
    )

    latency = mine.latency()
    parts.append("<h3>Latency per step (successful attempts)</h3>")
    parts.append(
        _table(
            latency,
            {
                **{c: (c.upper(), _duration) for c in ("p50", "p90", "p95", "p99")},
                "max": ("max", _duration),
                "mean": ("mean", _duration),
                "count": ("attempts", _count),
            },
            index={"step": "step"},
        )
    )
    rows = mine.frame(["workflow", "step", "attempt", "status", "latency_s", "map_index"], sort=False).wf.attempts
    if len(rows):
        from wfkit.logs._plots import FAILED_STATUSES

        failures_drawn = bool(rows["status"].isin(list(FAILED_STATUSES)).any())
        steps_n = max(rows["step"].nunique(), 1)
        cols = min(3, steps_n)
        fig = Figure(figsize=(max(4.2 * cols, 6.4), 2.6 * math.ceil(steps_n / cols) + 0.8), layout="constrained")
        plot_latency(rows, workflow=name, failures=failures_drawn, fig=fig)
        image = _save(fig, folder, f"{slug}-latency.png")
        parts.append(
            f'<img src="{image}" alt="latency of each step of {_esc(name)}">'
            '<p class="note">One panel per step on a shared log axis; dashed line P50, dotted P99 of successful '
            "attempts" + ("; failed attempts in red." if failures_drawn else ".") + "</p>"
        )

    failures = mine.failures()
    parts.append("<h3>Failures</h3>")
    parts.append(
        _table(
            failures,
            {
                "attempts": ("attempts", _count),
                "transient": ("transient", _count),
                "permanent": ("permanent", _count),
                "unknown": ("unknown", _count),
                "failure_rate": ("failure rate", _rate),
                "timeouts": ("timeouts", _count),
            },
            index={"step": "step"},
        )
    )
    errors = mine.errors(top=10)
    if len(errors):
        parts.append('<p class="note">The commonest errors (a retried attempt counts too):</p>')
        parts.append(
            _table(
                errors,
                {"count": ("attempts", _count), "runs": ("runs", _count), "last_run": ("last run", str)},
                index={"step": "step", "error_kind": "kind", "error_type": "type", "error_message": "message"},
            )
        )
    retries = mine.retries()
    if len(retries) and int(retries["retries"].sum()):
        parts.append("<h3>Retries</h3>")
        parts.append(
            _table(
                retries,
                {
                    "retries": ("retries", _count),
                    "mean_per_visit": ("per visit", lambda v: f"{float(v):.2f}"),
                    "max_per_visit": ("most in one visit", _count),
                },
                index={"step": "step"},
            )
        )

    advice = mine.advise_timeouts()
    q_label = f"p{advice.attrs['quantile'] * 100:g}"
    deadline = advice.attrs["run_deadline_s"].get(name)
    parts.append("<h3>Proposed timeouts</h3>")
    parts.append(
        f'<p class="note">{q_label.upper()} of attempt latency x {advice.attrs["margin"]:g} (an attempt a timeout '
        "cut off counted as slower than every success), never below the slowest success nor "
        f"{format_seconds(advice.attrs['min_timeout'])} (a tighter timer fails healthy attempts whenever the event "
        "loop is busy for a moment); no advice under "
        f"{count_of(advice.attrs['min_samples'], 'sample')}, nor when the {q_label.upper()} falls among the attempts "
        "a timeout cut off (their latency is unknown). Run deadline: "
        + (
            f"<b>{format_seconds(deadline)}</b> (from {count_of(advice.attrs['run_samples'].get(name, 0), 'run')})."
            if deadline is not None
            else f"none: {_esc(advice.attrs['run_deadline_note'].get(name))}."
        )
        + "</p>"
    )
    parts.append(
        _table(
            advice,
            {
                "samples": ("samples", _count),
                q_label: (q_label.upper(), _duration),
                "max": ("slowest", _duration),
                "timeouts": ("timed out", _count),
                "timeout_s": ("timeout", _duration),
                "basis": ("basis", lambda v: "" if v is None or v != v else str(v)),
                "note": ("note", lambda v: "" if v is None or v != v else str(v)),
            },
            index={"step": "step"},
            classes={"basis": "text", "note": "text"},
        )
    )

    slowest, at_p99 = str(durations.idxmax()), _nearest_rank(durations, 0.99)
    shown = [("Slowest run", slowest, "slowest")]
    if at_p99 != slowest:
        shown.append(("The run at P99", at_p99, "p99"))
    for title, run_id, tag in shown:
        frame = steps(workspace, run_id=run_id)
        lanes = max(frame["step"].nunique(), 1)
        fig = Figure(figsize=(10, 0.45 * lanes + 1.6), layout="constrained")
        plot_timeline(frame, run_id, ax=fig.subplots())
        image = _save(fig, folder, f"{slug}-{tag}-timeline.png")
        also = " (with under 100 runs, also the run at P99)" if at_p99 == slowest else ""
        parts.append(
            f"<h3>{title}: <code>{_esc(run_id)}</code>, {format_seconds(float(durations[run_id]))}{also}</h3>"
            f'<img src="{image}" alt="timeline of run {_esc(run_id)}">'
        )

    usage = ["tokens_in", "tokens_out", "cost_usd", "model", "extra", "model_latency_s", "ttft_s"]
    # started_at: each table lists steps in the order a run meets them, as the latency table does.
    cost = mine.frame(["workflow", "step", "attempt", "status", "started_at", "map_index", *usage], sort=False)
    # A step whose calls all came back without usage, or failed, has no tokens and no cost, yet it
    # called a model: its cost is unknown, or a known $0 if the server refused them all, which the
    # table must show (with its calls), not leave out as if no model had been called.
    spent = cost[["tokens_in", "tokens_out", "cost_usd"]].notna().any(axis=1)
    if (cost["model"].notna() | spent | _uncounted(cost)).any():
        from wfkit.logs._register import register_accessor

        register_accessor()
        table = cost.wf.cost(by=None)
        # The model's time beside its cost (NaN, shown "-", where no attempt recorded one): here,
        # not in cost(), whose table repeats exactly under a seed and so replays.
        # Beside it, the time to first token of the attempts that streamed: a median, as a wait a
        # user meets once per call does not add up over attempts.
        by_step = cost.groupby(["workflow", "step"], observed=True, sort=False)
        table["model_latency_s"] = by_step["model_latency_s"].sum(min_count=1)
        table["ttft_s"] = by_step["ttft_s"].median()
        # cost() gives NaN, shown "-" (unknown, not $0 as if free), for a step with a call no price
        # table knew or whose server sent no token usage; a step that called no model costs $0. Its
        # figures, so a notebook agrees.
        parts.append("<h3>Cost</h3>")
        parts.append(
            _table(
                table,
                {
                    "calls": ("model calls", _count),
                    "tokens_in": ("tokens in", _count),
                    "tokens_out": ("tokens out", _count),
                    "cost_usd": ("cost", _money),
                    "model_latency_s": ("model time", _duration),
                    "ttft_s": ("first token (median)", _duration),
                },
                index={"step": "step"},
            )
        )
        if table["cost_usd"].isna().any():  # (after the table: tests and readers find it under its heading)
            # A call whose server sent no usage had no price either, though its model may have one.
            uncounted = _uncounted(cost)
            why = (
                ", or its server sent no token usage to price"
                if (uncounted & _named(cost, NO_USAGE_MODELS)).any()
                else ""
            )
            if (uncounted & _named(cost, NO_TOKENS_IN_MODELS, NO_TOKENS_OUT_MODELS)).any():
                why += ", or its server counted only one kind of its tokens"
            if (uncounted & _named(cost, ABANDONED_STREAM_MODELS)).any():
                why += ", or it left a stream before its end, when its usage had not come"
            if (uncounted & _named(cost, UNKNOWN_OUTCOME_MODELS)).any():
                why += ", or a call failed after the server got it, which may have been billed"
            parts.append(
                f'<p class="note">A cost of "-" is unknown: a call of that step had no known price{why} (the '
                "table per model below names the models and says why).</p>"
            )
        if table[["tokens_in", "tokens_out"]].isna().any(axis=None):
            parts.append(
                '<p class="note">Tokens of "-" are unknown: a call of that step was made, but no count of that '
                "kind came back (a sum of the counted calls alone would read as the whole).</p>"
            )
        parts.append(_cost_per_model(cost))
    parts.append("</section>")
    return "".join(parts)


# The model of attempts that recorded tokens or a cost but named no model (``ctx.record`` without
# ``model=``): a row of their own, so the models' rows add up to the steps'.
_NO_MODEL = "(no model named)"


def _cost_per_model(cost: pd.DataFrame) -> str:
    """The cost section's table per model, for a team comparing models in one flow (a step whose
    input or variant switches its model, or steps on different models): the steps that called
    each, its calls, tokens, cost, model time and median first token, the costliest first.
    Attempts that called no model (a step of plain code) are in no row. The model is the one the
    server named, as the step log's ``model`` column holds it; an attempt that called several
    counts each one's calls, tokens, cost and time under it (``extra["by_model"]``)."""
    from wfkit.logs._analysis import split_by_model
    from wfkit.logs._tables import map_own_rows

    rows = cost[(cost["attempt"] > 0).to_numpy() & ~map_own_rows(cost)]  # attempts, as cost() counts them
    named = rows["model"].notna()
    spent = rows[["tokens_in", "tokens_out", "cost_usd"]].notna().any(axis=1)
    rows = rows[named | spent]
    rows = split_by_model(rows)  # before the times and steps are taken per model, as cost() does
    unnamed = rows["model"].isna()
    rows = rows.assign(model=rows["model"].astype(object).where(~unnamed, _NO_MODEL))
    table = rows.wf.cost(by="model")
    if unnamed.any():
        # cost() counts a call per attempt that names a model, as this row's name now reads: only an
        # attempt whose tokens came back called one here; a tool's cost alone (ctx.record(cost_usd=...))
        # is no model call, and the per-step table above counts none for it.
        tokens = rows["tokens_in"].notna() | rows["tokens_out"].notna()
        table.loc[_NO_MODEL, "calls"] = int((unnamed & tokens).sum())
    by_model = rows.groupby("model", sort=False)
    # cost() gives NaN, not $0, for a model no price table knows: 0 would read as free.
    table["model_latency_s"] = by_model["model_latency_s"].sum(min_count=1)
    table["ttft_s"] = by_model["ttft_s"].median()
    in_order = rows.sort_values("started_at", kind="stable").groupby("model", sort=False)["step"]
    table["steps"] = in_order.agg(lambda steps: ", ".join(dict.fromkeys(map(str, steps))))
    table = table.sort_values("cost_usd", ascending=False, na_position="last", kind="stable")
    # Why a cost is "-", each reason with what to do: a model no price table knows, a server that
    # sent no token usage (nothing to price), or both in one log.
    reasons = []
    if table["cost_usd"].isna().any():
        uncounted = _uncounted(rows)
        tokens = rows["tokens_in"].notna() | rows["tokens_out"].notna()
        if (rows["cost_usd"].isna() & (_named(rows, UNPRICED_MODELS) | (tokens & ~uncounted))).any():
            reasons.append("no price is known for the model (give one: ChatClient(..., prices=...))")
        if (uncounted & _named(rows, NO_USAGE_MODELS)).any():
            reasons.append(
                "the server sent no token usage with its replies, so there was nothing to price (use an endpoint "
                "or proxy that reports usage; a stream's server may ignore stream_options.include_usage: use "
                "one that honours it, or client.complete(...))"
            )
        if (uncounted & _named(rows, NO_TOKENS_IN_MODELS, NO_TOKENS_OUT_MODELS)).any():
            reasons.append(
                "the server's token usage held only one of its two counts (prompt_tokens, completion_tokens), so "
                'the call could not be priced, and the count it left out reads "-" (use an endpoint or proxy '
                "that reports both)"
            )
        if (uncounted & _named(rows, ABANDONED_STREAM_MODELS)).any():
            reasons.append(
                "a step left a stream before its end (a break out of `async for`, or the step's timeout), "
                "before the server's last "
                "chunk brought its token usage, so there was nothing to price (read a stream to its end, or "
                "call client.complete(...), to know what it cost)"
            )
        if (uncounted & _named(rows, UNKNOWN_OUTCOME_MODELS)).any():
            reasons.append(
                "a call failed after the server got it (a read timeout, the step's timeout while it waited, a "
                "gateway's 504, a reply cut short or unreadable), so the server may have generated and billed a "
                "reply whose token usage never came (give calls time to answer: ChatClient(..., timeout=...), the "
                "step's timeout=); a call the server refused (a 429, a 503) costs nothing"
            )
    return (
        "<h3>Cost per model</h3>"
        '<p class="note">Each model as the server named it, with the steps that called it (an attempt that '
        "called several models counts each one's share under it); steps that called no model are left out"
        + ('; a cost of "-" is unknown: ' + "; or ".join(reasons) if reasons else "")
        + ".</p>"
        + _table(
            table,
            {
                "steps": ("steps", str),
                "calls": ("model calls", _count),
                "tokens_in": ("tokens in", _count),
                "tokens_out": ("tokens out", _count),
                "cost_usd": ("cost", _money),
                "model_latency_s": ("model time", _duration),
                "ttft_s": ("first token (median)", _duration),
            },
            index={"model": "model"},
            classes={"steps": "text"},
        )
    )


def _named(rows: pd.DataFrame, *keys: str) -> pd.Series:
    """The attempts whose ``extra`` lists models under one of ``keys`` (``cost()``'s own search of it)."""
    from wfkit.logs._analysis import _marked

    return _marked(rows, keys)


def _uncounted(rows: pd.DataFrame) -> pd.Series:
    """:func:`wfkit.logs._analysis.uncounted`: the attempts with a call whose token usage, or one of
    its counts, never came (what ``df.wf.cost()`` counts unknown for it, so the two agree)."""
    from wfkit.logs._analysis import uncounted

    return uncounted(rows)


def write_report(
    workspace: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    since: dt.datetime | str | None = None,
    workflow: str | None = None,
) -> Path:
    """Write ``out/index.html`` and its PNG plots for the runs in a workspace; returns the page."""
    from wfkit.logs._summaries import StepLog, quietly

    log = StepLog(workspace, since=since, workflow=workflow)
    try:
        # The report says why its runs table is empty itself, as an error naming what there is, and
        # which runs it lacks, still executing, in its header.
        with quietly(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\d+ runs? still executing")
            return _write_report(log, workspace, out, since=since, workflow=workflow)
    finally:
        log.close()  # its DuckDB connection, on every way out: a refused window or workflow too


def _write_report(
    log: StepLog,
    workspace: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    since: dt.datetime | str | None,
    workflow: str | None,
) -> Path:
    from wfkit.logs._summaries import StepLog

    runs = log.runs()  # read (and the filters checked) before anything is written
    if runs.empty and since is not None:
        # An empty report for a window that has not begun answers no question: say which dates there are.
        from wfkit.logs._steplog import resolve_root, since_in_future
        from wfkit.logs._tables import parse_time

        future = since_in_future(resolve_root(workspace), parse_time("since", since), f"since {since}")
        if future:
            raise ValueError(future)
    if runs.empty and workflow is not None:
        everything = StepLog(workspace)
        try:
            held = everything.runs()
        finally:
            everything.close()
        names = sorted({str(w) for w in held["workflow"]}) if len(held) else []
        raise ValueError(
            f"no runs of workflow {workflow!r} in the step log"
            + (f" since {since}" if since else "")
            + "; it holds "
            + (f"runs of {', '.join(map(repr, names))}" if names else "no runs")
        )
    folder = Path(out)
    if folder.exists() and not folder.is_dir():  # mkdir's "[Errno 17] File exists" said neither what nor how
        raise FileExistsError(
            f"--out {folder} is a file: a report is a folder (index.html and its plots); give a folder's path, "
            "new or one a report was written to"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):  # a report written here before must not leave its plots
        stale.unlink()
    attempts = int(runs["attempts"].sum()) if len(runs) else 0
    window = f", since {_esc(since)}" if since else ""
    from wfkit.logs._steplog import executing_note, resolve_root

    # A run still executing has no rows yet: the page would leave it out without a word.
    executing = executing_note(resolve_root(workspace), workflow=workflow, where="this report")
    header = (
        "<header><h1>wfkit report</h1>"
        f"<p>{count_of(attempts, 'attempt')}, {count_of(len(runs), 'run')}{window}"
        + (f", workflow {_esc(workflow)}" if workflow else "")
        + f"; written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.</p>"
        + (f"<p>{_esc(executing)}.</p>" if executing else "")
        + "</header>"
    )
    parts: list[str] = []
    if runs.empty:
        # (With --since, attempts before it may be there: say which window is empty.)
        nothing = f"No step attempts since {_esc(since)}." if since else "No step attempts recorded yet."
        parts.append(f"<main><p>{nothing}</p></main>")
    else:
        names = sorted(str(w) for w in runs["workflow"].unique())
        nav = "<nav>" + "".join(f'<a href="#{_slug(n)}">{_esc(n)}</a>' for n in names) + "</nav>"
        parts.append(nav + "<main><h2>Overview</h2>")
        overview = runs.assign(workflow=runs["workflow"].astype(str))
        summary = overview.groupby("workflow").agg(
            runs=("duration_s", "size"),
            failed=("run_failed", "sum"),
            fell_back=("fell_back", "sum"),
            p50=("duration_s", lambda d: float(d.quantile(0.5))),
            p99=("duration_s", lambda d: float(d.quantile(0.99))),
            slowest=("duration_s", "max"),
            attempts=("attempts", "sum"),
            retries=("retries", "sum"),
        )
        summary["failed_rate"] = summary["failed"] / summary["runs"]
        parts.append(
            _table(
                summary,
                {
                    "runs": ("runs", _count),
                    "failed": ("failed runs", _count),
                    "failed_rate": ("failed", _rate),
                    "fell_back": ("steps that fell back", _count),
                    "p50": ("run P50", _duration),
                    "p99": ("run P99", _duration),
                    "slowest": ("slowest run", _duration),
                    "attempts": ("attempts", _count),
                    "retries": ("retries", _count),
                },
                index={"workflow": "workflow"},
            )
        )
        for name in names:
            parts.append(_workflow_section(log, runs[overview["workflow"] == name], workspace, name, folder))
        parts.append("</main>")
    page = folder / "index.html"
    page.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>wfkit report</title><style>{_STYLE}</style></head><body>{header}{''.join(parts)}</body></html>",
        encoding="utf-8",
    )
    return page
