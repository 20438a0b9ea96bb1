"""Plots of step logs, drawn the way pandas and seaborn draw.

Each plot takes ``ax=`` (or ``fig=`` for small multiples) and draws into it; without one it makes
its figure through pyplot's figure manager, so the figure shows inline in Jupyter and lands as an
image in papermill's output notebook. It returns the Axes, or :class:`Facets` for small
multiples. Code that must not touch pyplot state (a report written in a thread, a server) passes
an Axes of its own ``matplotlib.figure.Figure``.

Titles and axes name the workflow, the step and the unit; durations are labelled "12 ms", "1.5 s".
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wfkit.logs._units import axis_seconds, count_of, format_seconds

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

_COLORS = {
    "ok": "#4c9a2a",
    "retry": "#e0a100",
    "timeout": "#d1495b",
    "failed": "#8b1e3f",
    "waiting_approval": "#7a7a7a",
    "approved": "#2a6f97",
    "rejected": "#5e3c99",
    "skipped": "#bbbbbb",
    "cancelled": "#9a9a9a",
}
_STOPPED = "#d9d9d9"  # a run's stretch stopped between a crash, failure or cancellation and its resume
_KIND_COLORS = {"transient": "#e0a100", "permanent": "#8b1e3f", "unknown": "#7a7a7a"}
_SIDES = ("#2a6f97", "#e0a100")
FAILED_STATUSES = ("retry", "failed", "timeout")


@dataclass(frozen=True)
class Facets:
    """Small multiples: the figure, and one Axes per (workflow, step) in ``axes``."""

    figure: Figure | SubFigure
    axes: dict[tuple[str, str], Axes]

    def __repr__(self) -> str:
        return f"<wfkit Facets: {count_of(len(self.axes), 'panel')}>"


def _axes(ax: Axes | None, width: float, height: float) -> Axes:
    """``ax``, or the Axes of a new pyplot figure (shown inline by Jupyter)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=(width, height), layout="constrained")
    return new


def _say(ax: Axes, message: str, title: str) -> Axes:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


# Ticks within a decade, densest first: on a log axis the last gaps of a decade are the narrowest
# (9 to 10 is a fifth of 1 to 2), so a denser set is only used when its labels stand apart.
_LOG_SUBS: tuple[tuple[float, ...], ...] = (
    tuple(float(d) for d in range(1, 10)),
    (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
    (1.0, 2.0, 3.0, 5.0, 7.0),
    (1.0, 2.0, 5.0),
    (1.0, 3.0),
    (1.0,),
)


def _log_subs(low: float, high: float, inches: float, label_in: Callable[[float], float], across: bool) -> Any:
    """The densest of ``_LOG_SUBS`` that puts at least two ticks between ``low`` and ``high`` with
    no two labels touching, on an axis ``inches`` long; ``label_in(tick)`` is a label's extent
    along the axis (its width ``across`` an x axis, its height on a y axis). If every set that
    puts two ticks there crowds them, the sparsest such; None when none puts two ticks there (a
    range narrower than a decade's gaps)."""
    decades = math.log10(high / low)
    sparsest = None
    for subs in _LOG_SUBS:
        ticks = sorted(
            sub * 10.0**exponent
            for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
            for sub in subs
            if low <= sub * 10.0**exponent <= high
        )
        if len(ticks) < 2:
            continue
        sparsest = subs
        pad = 0.12 if across else 0.04
        if all(
            inches * math.log10(b / a) / decades >= (label_in(a) + label_in(b)) / 2 + pad
            for a, b in itertools.pairwise(ticks)
        ):
            return subs
    return sparsest


def _label_size(across: bool) -> float:
    """The font size of tick labels, in inches: across an x axis, or along a y axis."""
    import matplotlib
    from matplotlib.font_manager import FontProperties

    size = matplotlib.rcParams["xtick.labelsize"] if across else matplotlib.rcParams["ytick.labelsize"]
    return float(FontProperties(size=size).get_size_in_points()) / 72


@functools.cache
def _seconds_log_locator() -> Any:
    """The class of the major locator of a log seconds axis (made once, when matplotlib is there)."""
    from matplotlib.axis import Axis, XAxis
    from matplotlib.ticker import LogLocator, MaxNLocator

    class SecondsLogLocator(LogLocator):
        """Ticks at the densest of every digit, 1-2-3-5-7, 1-2-5, 1-3 or 1 of each decade whose
        labels stand apart at the axis' length as drawn (after the layout, and after any
        set_xlim); where none puts two ticks in view, ticks at round values, as many as fit."""

        def tick_values(self, vmin: float, vmax: float) -> Any:
            low, high = min(vmin, vmax), max(vmin, vmax)
            axis = self.axis
            if not isinstance(axis, Axis) or axis.axes is None or not 0 < low < high:
                return super().tick_values(vmin, vmax)
            across = isinstance(axis, XAxis)
            box = axis.axes.bbox
            inches = (box.width if across else box.height) / axis.axes.figure.dpi
            size = _label_size(across)
            pad = 0.12 if across else 0.04

            def label_in(tick: float) -> float:  # about 0.6 em a character across, a line's height on y
                return len(axis_seconds(tick)) * 0.6 * size if across else 1.2 * size

            subs = _log_subs(low, high, inches, label_in, across)
            if subs is None:  # a range too narrow for a decade's ticks: round values, spaced to fit
                longest = max(len(format_seconds(v, digits=4)) for v in (low, high))
                widest = (longest * 0.6 * size if across else 1.2 * size) + pad
                rounded = MaxNLocator(nbins=max(2, int(inches / (1.5 * widest))), steps=[1, 2, 2.5, 5, 10])
                return rounded.tick_values(low, high)
            self.set_params(subs=subs)
            return super().tick_values(vmin, vmax)

    return SecondsLogLocator


def _seconds_axis(ax: Axes, axis: str = "x") -> None:
    """Label a seconds axis "10 ms", "1 s", each label true to its tick. On a log axis the ticks
    are chosen when the axis is drawn, so that labels stand apart at its length then (few ticks per
    decade on a small multiple; see ``_seconds_log_locator``), small ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    if (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log":
        target.set_major_locator(_seconds_log_locator()(base=10, subs=(1.0, 2.0, 5.0)))
        target.set_minor_locator(LogLocator(base=10, subs=tuple(float(d) for d in range(1, 10))))
        target.set_minor_formatter(NullFormatter())
    target.set_major_formatter(FuncFormatter(axis_seconds))


def _group_label(key: tuple[str, ...]) -> str:
    return " · ".join(str(k) for k in key)


# A character's width in DejaVu Sans (matplotlib's default), as a fraction of the font size: wide
# enough for lowercase names with underscores, which is what a workflow or step is called.
_CHAR_EM = 0.62


def fit_text(text: str, inches: float, points: float) -> str:
    """``text`` broken into lines no wider than ``inches`` at ``points``: after a space, ``_``,
    ``-``, ``·`` or ``/`` where it can (a name's own words), else inside a word too long for a line.
    A long workflow or step name, as one title, ran into the next panel's title or past the
    figure's edge, where the report cut it off ("p latency, ... : customer-support-escalation-tr")."""
    import re

    width = max(8, int(inches * 72 / (points * _CHAR_EM)))
    if len(text) <= width:
        return text
    lines: list[str] = []
    line = ""
    for piece in re.findall(r"[^ _\-·/]+[ _\-·/]*|[ _\-·/]+", text):
        while len(piece) > width:  # a word longer than a line: cut it
            if line:
                lines.append(line.rstrip())
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece.rstrip()) > width and line:
            lines.append(line.rstrip())
            line = ""
        line += piece
    if line.strip():
        lines.append(line.rstrip())
    return "\n".join(lines)


# ---- latency --------------------------------------------------------------------------------------


def plot_latency(
    attempts: pd.DataFrame,
    *,
    workflow: str | None = None,
    steps: Sequence[str] | None = None,
    failures: bool = False,
    kind: str = "ecdf",
    fig: Figure | SubFigure | None = None,
    col_wrap: int = 3,
) -> Facets:
    """One panel per (workflow, step), sharing a log latency axis: the ECDF (or a log-binned
    histogram) of successful attempts with P50 and P99 marked; failed attempts in red on request.
    Each workflow's panels come in the order a run meets its steps (by when each first started)."""
    import numpy as np
    import pandas as pd

    from wfkit.logs._tables import in_run_order, keys_of

    if kind not in ("ecdf", "hist"):
        raise ValueError(f"kind must be 'ecdf' or 'hist', got {kind!r}")
    if col_wrap < 1:
        raise ValueError(f"col_wrap must be >= 1, got {col_wrap!r}")
    rows = attempts
    if workflow is not None:
        rows = rows[rows["workflow"] == workflow]
    if steps is not None:
        rows = rows[rows["step"].isin(list(steps))]
    keys = keys_of(rows, None)
    shown = rows[rows["status"].isin(["ok", *FAILED_STATUSES])] if failures else rows[rows["status"] == "ok"]
    groups = {
        (k if isinstance(k, tuple) else (k,)): g for k, g in shown.groupby(keys, observed=True, sort=True) if len(g)
    }
    if groups:  # each workflow's panels in the order a run meets its steps, as df.wf.latency() lists them
        met = in_run_order(pd.DataFrame(index=pd.MultiIndex.from_tuples(list(groups), names=keys)), rows)
        groups = {tuple(k): groups[tuple(k)] for k in met.index}
    what = "successful and failed attempts" if failures else "successful attempts"
    title = f"Step latency, {what}" + (f": {workflow}" if workflow else "")
    n = max(len(groups), 1)
    ncols = min(col_wrap, n)
    nrows = math.ceil(n / ncols)
    size = (max(4.2 * ncols, 6.4), 2.6 * nrows + 0.8)
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size, layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=kind == "ecdf")
    flat = list(grid.flat)
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties

    def points(size: str) -> float:
        return float(FontProperties(size=size).get_size_in_points())

    inches = float(fig.get_figwidth()) if hasattr(fig, "get_figwidth") else size[0]
    fig.suptitle(fit_text(title, inches * 0.95, points(rcParams["figure.titlesize"])))
    if not groups:
        _say(flat[0], f"no {what} to plot", "")
        return Facets(fig, {})
    positive = shown["latency_s"].to_numpy(dtype=float)
    positive = positive[positive > 0]
    low, high = (positive.min(), positive.max()) if positive.size else (1e-3, 1.0)
    bins = np.logspace(np.log10(low), np.log10(high * 1.01), 30)
    panels: dict[tuple[str, str], Axes] = {}
    for ax, (key, group) in zip(flat, groups.items(), strict=False):
        ok = np.sort(group.loc[group["status"] == "ok", "latency_s"].to_numpy(dtype=float))
        bad = np.sort(group.loc[group["status"].isin(FAILED_STATUSES), "latency_s"].to_numpy(dtype=float))
        series = [("ok", ok, _COLORS["ok"])] + ([("failed", bad, _COLORS["timeout"])] if failures else [])
        for label, values, color in series:
            values = np.clip(values, low, None)  # a 0 s attempt sits at the axis' left edge
            if not values.size:
                continue
            legend = f"{label} (n={values.size:,})"
            if kind == "ecdf":
                # From 0 at the fastest attempt, as an ECDF climbs: without that first rise a curve of
                # one attempt (or of equal ones) is a single point, drawn as nothing.
                heights = np.arange(values.size + 1) / values.size
                ax.step(np.r_[values[0], values], heights, where="post", color=color, label=legend)
            else:
                ax.hist(values, bins=list(bins), histtype="step", linewidth=1.5, color=color, label=legend)
        if ok.size:  # in the legend, not as text on the plot: close quantiles never overlap there
            for q, style in ((0.5, "--"), (0.99, ":")):
                mark = float(np.quantile(ok, q))
                label = f"P{round(q * 100)} {format_seconds(mark, digits=2)}"
                ax.axvline(mark, color="#333333", linestyle=style, linewidth=1, label=label)
        # A panel's share of the width, less its y axis' ticks and label (on the first column).
        ax.set_title(fit_text(_group_label(key), inches / ncols - 0.7, points("medium")), fontsize="medium")
        ax.legend(fontsize="x-small", loc="lower right" if kind == "ecdf" else "upper right")
        panels[(str(key[0]), str(key[-1]))] = ax
    for ax in flat[len(groups) :]:
        ax.set_visible(False)
    if high < low * 2:
        # One attempt, or equal ones: matplotlib widens a log axis of no width by a factor that,
        # at some values, still leaves it none once laid out (a division by zero, a figure drawn
        # blank); a decade around the value shows it in the middle. (Set before the log scale,
        # whose autoscaling would meet the width of zero first.)
        flat[0].set_xlim(low / 3, high * 3)
    for ax in flat:
        ax.set_xscale("log")
    for ax in flat:
        _seconds_axis(ax)
    for ax in grid[:, 0]:
        ax.set_ylabel("fraction ≤ latency" if kind == "ecdf" else "attempts")
    for ax in grid[-1, :]:
        ax.set_xlabel("latency (log scale)")
    # A panel on the last row may be hidden: the one above it needs the axis label then.
    for i in range(len(groups), nrows * ncols):
        above = flat[i - ncols] if i - ncols >= 0 else None
        if above is not None:
            above.set_xlabel("latency (log scale)")
            above.xaxis.set_tick_params(labelbottom=True)
    return Facets(fig, panels)


# ---- one run ----------------------------------------------------------------------------------


def _timeline_lanes(rows: pd.DataFrame, origin: pd.Timestamp) -> tuple[list[str], list[int]]:
    """The lanes of a run's timeline and each row's lane: one per step, and under a map step lanes
    of its items, packed so that no two items share a lane while they overlap (an item's attempts
    and backoffs stay in one lane), each labelled with the items it holds. In the step's own lane
    the items hid one another, the longest on top: a retried item was not to be seen."""
    import pandas as pd

    steps = [str(s) for s in rows["step"]]
    column: Sequence[Any] = rows["map_index"] if "map_index" in rows.columns else [None] * len(rows)
    items: list[int | None] = [None if pd.isna(v) else int(v) for v in column]
    visits = list(rows["visit"]) if "visit" in rows.columns else [1] * len(rows)
    starts = [(t - origin).total_seconds() for t in rows["started_at"]]
    ends = []
    for row, start in zip(rows.itertuples(index=False), starts, strict=True):
        width = float(row.latency_s) if row.latency_s == row.latency_s else 0.0
        delay = getattr(row, "retry_delay_s", None)
        delay = float(delay) if delay is not None and delay == delay and delay > 0 else 0.0
        ends.append(start + max(width, 0.0) + delay)
    # Each item of a map step: from its first attempt's start to its last attempt's end (backoff included).
    spans: dict[str, dict[tuple[Any, Any], list[float]]] = {}
    for i, (step, item) in enumerate(zip(steps, items, strict=True)):
        if item is None:
            continue
        span = spans.setdefault(step, {}).setdefault((visits[i], item), [starts[i], ends[i]])
        span[0], span[1] = min(span[0], starts[i]), max(span[1], ends[i])
    packed: dict[str, dict[tuple[Any, Any], int]] = {}  # step -> item -> its sub-lane
    held: dict[str, list[list[int]]] = {}  # step -> sub-lane -> the item indices it holds
    for step, of_step in spans.items():
        free_at: list[float] = []
        for key, (start, end) in sorted(of_step.items(), key=lambda kv: (kv[1][0], kv[0][1])):
            sub = next((k for k, t in enumerate(free_at) if t <= start), len(free_at))
            if sub == len(free_at):
                free_at.append(end)
                held.setdefault(step, []).append([])
            free_at[sub] = end
            packed.setdefault(step, {})[key] = sub
            held[step][sub].append(key[1])
    lanes: list[str] = []
    first: dict[str, int] = {}
    for step in dict.fromkeys(steps):
        first[step] = len(lanes)
        lanes.append(step)
        for indices in held.get(step, []):
            shown = sorted(dict.fromkeys(indices))
            text = ", ".join(str(n) for n in shown[:4]) + (f", … {len(shown)} items" if len(shown) > 4 else "")
            lanes.append(f"{step} [{text}]")
    lane_of_row = []
    for i, (step, item) in enumerate(zip(steps, items, strict=True)):
        if item is None:
            lane_of_row.append(first[step])
        else:
            lane_of_row.append(first[step] + 1 + packed[step][(visits[i], item)])
    return lanes, lane_of_row


def plot_timeline(df: pd.DataFrame, run_id: str | None = None, *, ax: Axes | None = None) -> Axes:
    """Gantt chart of one run (the latest by default): a lane per step (under a map step, lanes of
    its items, no two overlapping in one, each named with the items it holds), a bar per attempt, retry
    delays as thin bars, approval waits hatched; the stretches a resumed run lay stopped (after a
    crash, a failure or a cancellation) shaded across the lanes, and the title's time the time it
    ran (``runs()``' ``duration_s``), the stopped time beside it."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from wfkit.logs._tables import stops

    if df.empty:
        return _say(_axes(ax, 8, 2.5), "no runs to plot", "Run timeline")
    if run_id is None:
        run_id = str(df["run_id"].iloc[int(df["started_at"].to_numpy().argmax())])
    rows = df[df["run_id"] == run_id].sort_values("started_at", kind="stable")
    if rows.empty:
        return _say(_axes(ax, 8, 2.5), f"no events for run {run_id}", "Run timeline")
    origin = rows["started_at"].min()
    lanes, lane_of_row = _timeline_lanes(rows, origin)
    ax = _axes(ax, 10, 0.45 * len(lanes) + 1.6)
    ends = []
    waited: dict[str, str] = {}  # colour of the backoff bars drawn -> the status they follow
    for i, row in enumerate(rows.itertuples(index=False)):
        lane = lane_of_row[i]
        start = (row.started_at - origin).total_seconds()
        width = max(float(row.latency_s) if row.latency_s == row.latency_s else 0.0, 0.0)
        color = _COLORS.get(str(row.status), "#333333")
        if int(row.attempt) > 0:
            ax.barh(lane, width, left=start, height=0.6, color=color, edgecolor="black", linewidth=0.3)
        drawn = start + width  # where its bars end: the axis spans them
        delay = getattr(row, "retry_delay_s", None)
        if delay is not None and delay == delay and delay > 0:  # NaN-safe
            ax.barh(lane, delay, left=start + width, height=0.15, color=color, alpha=0.4)
            waited.setdefault(color, str(row.status))
            drawn += delay
        end = (row.ended_at - origin).total_seconds()
        if end == end:
            # Its end, or its bars' if they reach further: the wall clock's timestamps are kept to
            # the microsecond, so a step of 1 us could read as ending where it started (and the
            # axis fell back to an arbitrary millisecond, its bar a sliver at the left edge).
            ends.append(max(end, drawn))
        elif int(row.attempt) > 0:  # a crash cut it off: how long it ran is unknown, so no bar
            ax.plot([start], [lane], marker="x", markersize=8, color=color, linestyle="none")
    # Approval waits: from the ticket's creation to its decision.
    waits = rows[rows["status"].isin(["waiting_approval", "approved", "rejected"])]
    for step, group in waits.groupby("step", observed=True):
        opened = group[group["status"] == "waiting_approval"]["started_at"]
        decided = group[group["status"] != "waiting_approval"]["started_at"]
        if len(opened) and len(decided):
            start = (opened.min() - origin).total_seconds()
            end = (decided.max() - origin).total_seconds()
            ax.barh(
                lanes.index(str(step)),
                end - start,
                left=start,
                height=0.6,
                color=_COLORS["waiting_approval"],
                alpha=0.35,
                hatch="//",
            )
    # A run resumed after a crash, a failure or a cancellation lay stopped between: its span is not
    # the time it ran (runs()' duration_s, which the report picks the slowest run by).
    stopped = stops(rows)
    for gap in stopped.itertuples(index=False):
        ax.axvspan(gap.from_s, gap.to_s, facecolor=_STOPPED, edgecolor="#a8a8a8", alpha=0.35, hatch="..", linewidth=0)
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    total = max(ends, default=0.0)
    workflow = f"{rows['workflow'].iloc[0]} · " if "workflow" in rows.columns else ""
    length = format_seconds(total)
    if len(stopped):
        away = float(stopped["seconds"].sum())
        resumes = f"{len(stopped)} resume{'s' if len(stopped) > 1 else ''}"
        length = f"ran {format_seconds(max(total - away, 0.0))}; {format_seconds(away)} stopped before {resumes}"
    ax.set_title(f"{workflow}run {run_id} ({length})", fontsize="medium")
    ax.set_xlabel("time since the run started")
    ax.set_ylabel("step")
    _seconds_axis(ax)
    # The axis spans the run, however short (a run of plain functions takes microseconds); only a
    # run with no end to show (a crash cut it off at once) gets an arbitrary millisecond.
    ax.set_xlim(0, (total if total > 0 else 1e-3) * 1.02)
    seen = {str(s) for s in rows["status"]}
    handles: list[Any] = [Patch(color=c, label=s) for s, c in _COLORS.items() if s in seen]
    if len(stopped):
        handles.append(
            Patch(facecolor=_STOPPED, edgecolor="#a8a8a8", alpha=0.35, hatch="..", label="stopped (then resumed)")
        )
    # The thin bar after a retried attempt is the wait before the next one, not the attempt: in the
    # attempt's colour alone, a 1 s Retry-After wait read as a retry that ran for 1 s.
    handles += [
        Line2D(
            [], [], color=c, alpha=0.4, linewidth=3, label=f"wait after {status}" if len(waited) > 1 else "backoff wait"
        )
        for c, status in waited.items()
    ]
    if handles:
        ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


# ---- failures -----------------------------------------------------------------------------------


def plot_failures(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Failed attempts per (workflow, step), stacked by error kind, the failure rate beside."""
    ax = _axes(ax, 9, 0.42 * max(len(table), 1) + 1.6)
    if table.empty:
        return _say(ax, "no attempts", "Failures by step and error kind")
    labels = [_group_label(k if isinstance(k, tuple) else (k,)) for k in table.index]
    y = list(range(len(labels)))
    left = None
    for kind, color in _KIND_COLORS.items():
        values = table[kind].to_numpy()
        ax.barh(y, values, left=left, color=color, label=kind, height=0.6)
        left = values if left is None else left + values
    top = float(table["failed"].max()) or 1.0
    for i, (failed, rate, attempts) in enumerate(
        zip(table["failed"], table["failure_rate"], table["attempts"], strict=True)
    ):
        ax.text(float(failed) + top * 0.01, i, f"{rate:.1%} of {attempts:,}", va="center", fontsize="small")
    ax.set_yticks(y, labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.3)
    ax.set(xlabel="failed attempts", title="Failures by step and error kind")
    ax.legend(fontsize="small", loc="lower right", title="error kind", title_fontsize="small")
    return ax


# ---- comparing ----------------------------------------------------------------------------------


def plot_compare(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """A dumbbell chart of a ``df.wf.compare()`` table: per (workflow, step) and quantile, a dot for
    each side joined by a line, on one log axis; the change and its interval written beside."""
    labels = table.attrs.get("labels", ("baseline", "candidate"))
    quantiles = table.attrs.get("quantiles", (0.5, 0.99))
    level = table.attrs.get("level", 0.95)
    from wfkit.logs._tables import quantile_label

    rows = [(key, quantile_label(q)) for key in table.index for q in quantiles]
    ax = _axes(ax, 9.5, 0.38 * max(len(rows), 1) + 1.8)
    if table.empty:
        return _say(ax, "no (workflow, step) in both frames", f"{labels[1]} vs {labels[0]}")
    names = []
    xs: list[float] = []
    for i, (key, q) in enumerate(rows):
        row = table.loc[key]
        a, b = float(row[f"{q}_{labels[0]}"]), float(row[f"{q}_{labels[1]}"])
        xs += [a, b]
        ax.plot([a, b], [i, i], color="#999999", linewidth=2, zorder=1)
        ax.scatter([a], [i], color=_SIDES[0], zorder=2, label=labels[0] if i == 0 else None)
        ax.scatter([b], [i], color=_SIDES[1], zorder=2, label=labels[1] if i == 0 else None)
        low, high = float(row[f"{q}_diff_low"]), float(row[f"{q}_diff_high"])
        sure = low > 0 or high < 0
        interval = (
            f"[{format_seconds(low, digits=2)}, {format_seconds(high, digits=2)}]"
            if low == low
            else f"(no interval: n < {table.attrs.get('min_samples', {}).get(q, '?')})"
        )
        note = f"{float(row[f'{q}_ratio']):.2f}x  {format_seconds(b - a, digits=2)} {interval}"
        ax.annotate(
            note,
            (1.0, i),
            xycoords=("axes fraction", "data"),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize="x-small",
            color="#000000" if sure else "#777777",
        )
        key_t = key if isinstance(key, tuple) else (key,)
        names.append(f"{_group_label(key_t)}  {q.upper()}")
    ax.set_yticks(range(len(rows)), names)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xscale("log")
    positive = [x for x in xs if x > 0]
    if positive:
        ax.set_xlim(min(positive) / 1.5, max(positive) * 1.5)
    _seconds_axis(ax)
    ax.set_xlabel("latency of successful attempts (log scale)")
    ax.set_title(
        f"{labels[1]} vs {labels[0]}: ratio, change [{level:.0%} bootstrap interval]; grey = within noise",
        fontsize="medium",
    )
    ax.legend(fontsize="small", loc="lower left", bbox_to_anchor=(0.0, 1.06), ncols=2, frameon=False)
    ax.grid(axis="x", which="major", color="#eeeeee")
    return ax
