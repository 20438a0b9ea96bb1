"""Plots of step logs. Each function returns a matplotlib Figure, which shows inline in a notebook
and saves to PNG for reports. Figures are built with the object API (no pyplot state), so they work
headless and in threads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_COLORS = {
    "ok": "#4c9a2a",
    "retry": "#e0a100",
    "timeout": "#d1495b",
    "failed": "#8b1e3f",
    "waiting_approval": "#7a7a7a",
    "approved": "#2a6f97",
    "rejected": "#5e3c99",
    "skipped": "#bbbbbb",
}
_KIND_COLORS = {"transient": "#e0a100", "permanent": "#8b1e3f", "unknown": "#7a7a7a"}


def _figure(width: float = 10, height: float = 4, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _empty(fig: Figure, ax: Axes, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def plot_latency(attempts: pd.DataFrame, step: str | None = None) -> Figure:
    """Log-scaled histogram and ECDF of latency per step, with P50 and P99 marked."""
    import numpy as np

    rows = attempts if step is None else attempts[attempts["step"] == step]
    fig, (hist, ecdf) = _figure(12, 4.5, ncols=2)
    fig.suptitle("Step latency" + (f": {step}" if step else ""))
    latencies = rows["latency_s"].to_numpy(dtype=float)
    positive = latencies[latencies > 0]
    if positive.size == 0:
        return _empty(fig, hist, "no attempts to plot")
    bins = np.logspace(np.log10(positive.min()), np.log10(positive.max() * 1.01), 40)
    for name, group in rows.groupby("step", observed=True, sort=True):
        values = np.sort(group["latency_s"].to_numpy(dtype=float))
        values = values[values > 0]
        if values.size == 0:
            continue
        hist.hist(values, bins=list(bins), histtype="step", linewidth=1.5, label=str(name))
        line = ecdf.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=str(name))[0]
        for q, style in ((0.5, "--"), (0.99, ":")):
            mark = float(np.quantile(values, q))
            ecdf.axvline(mark, color=line.get_color(), linestyle=style, linewidth=1)
    for label, style in (("P50", "--"), ("P99", ":")):
        ecdf.plot([], [], color="black", linestyle=style, label=label)
    hist.set(xscale="log", xlabel="latency (s, log scale)", ylabel="attempts", title="histogram")
    ecdf.set(xscale="log", xlabel="latency (s, log scale)", ylabel="fraction of attempts ≤ x", title="ECDF")
    ecdf.axhline(0.99, color="#999999", linewidth=0.5)
    ecdf.legend(fontsize="small", loc="lower right")
    return fig


def plot_timeline(df: pd.DataFrame, run_id: str | None = None) -> Figure:
    """Gantt chart of one run (the latest by default): a lane per step, a bar per attempt."""
    if df.empty:
        fig, (ax,) = _figure()
        return _empty(fig, ax, "no runs to plot")
    if run_id is None:
        run_id = str(df.sort_values("started_at")["run_id"].iloc[-1])
    rows = df[df["run_id"] == run_id].sort_values("started_at")
    lanes = list(dict.fromkeys(rows["step"]))
    fig, (ax,) = _figure(11, 0.5 * len(lanes) + 1.8)
    if rows.empty:
        return _empty(fig, ax, f"no events for run {run_id}")
    origin = rows["started_at"].min()
    for _, row in rows.iterrows():
        lane = lanes.index(row["step"])
        start = (row["started_at"] - origin).total_seconds()
        width = max(float(row["latency_s"]), 1e-4)
        color = _COLORS.get(row["status"], "#333333")
        ax.barh(lane, width, left=start, height=0.6, color=color, edgecolor="black", linewidth=0.3)
        delay = row.get("retry_delay_s")
        if delay is not None and delay == delay and delay > 0:  # NaN-safe
            ax.barh(lane, delay, left=start + width, height=0.15, color=color, alpha=0.4)
    # Approval waits: from the ticket's creation to its decision.
    waits = rows[rows["status"].isin(["waiting_approval", "approved", "rejected"])]
    for step, group in waits.groupby("step", observed=True):
        opened = group[group["status"] == "waiting_approval"]["started_at"]
        decided = group[group["status"] != "waiting_approval"]["started_at"]
        if len(opened) and len(decided):
            start = (opened.min() - origin).total_seconds()
            end = (decided.max() - origin).total_seconds()
            ax.barh(
                lanes.index(step),
                end - start,
                left=start,
                height=0.6,
                color=_COLORS["waiting_approval"],
                alpha=0.35,
                hatch="//",
            )
    ax.set_yticks(range(len(lanes)), lanes)
    ax.invert_yaxis()
    ax.set(xlabel="seconds since the run started", title=f"run {run_id}")
    from matplotlib.patches import Patch

    seen = set(rows["status"])
    handles = [Patch(color=c, label=s) for s, c in _COLORS.items() if s in seen]
    ax.legend(handles=handles, fontsize="small", loc="upper right")
    return fig


def plot_failures(table: pd.DataFrame) -> Figure:
    """Failed attempts per step, stacked by error kind, with the failure rate annotated."""
    fig, (ax,) = _figure(10, 0.45 * len(table) + 1.8)
    if table.empty:
        return _empty(fig, ax, "no attempts")
    left = None
    labels = [str(i) for i in table.index]
    for kind, color in _KIND_COLORS.items():
        values = table[kind].to_numpy()
        ax.barh(labels, values, left=left, color=color, label=kind)
        left = values if left is None else left + values
    for i, rate in enumerate(table["failure_rate"]):
        ax.text(float(table["failed"].iloc[i]), i, f"  {rate:.1%}", va="center", fontsize="small")
    ax.invert_yaxis()
    ax.set(xlabel="failed attempts", title="Failures by step and error kind")
    ax.legend(fontsize="small")
    return fig


def plot_compare(base: pd.DataFrame, cand: pd.DataFrame, labels: tuple[str, str]) -> Figure:
    """P50 and P99 per step for two sets of runs, with the relative shift annotated."""
    import numpy as np

    steps = [s for s in base.index if s in cand.index]
    fig, axes = _figure(12, 0.45 * max(len(steps), 1) + 2, ncols=2)
    if not steps:
        return _empty(fig, axes[0], "no steps in common")
    y = np.arange(len(steps))
    for ax, col in zip(axes, ("p50", "p99"), strict=True):
        a = base.loc[steps, col].to_numpy()
        b = cand.loc[steps, col].to_numpy()
        ax.barh(y - 0.2, a, height=0.4, label=labels[0], color="#2a6f97")
        ax.barh(y + 0.2, b, height=0.4, label=labels[1], color="#e0a100")
        for i, (x0, x1) in enumerate(zip(a, b, strict=True)):
            shift = (x1 - x0) / x0 if x0 else float("nan")
            ax.text(max(x0, x1), i, f"  {shift:+.0%}", va="center", fontsize="small")
        ax.set_yticks(y, steps)
        ax.invert_yaxis()
        ax.set(xscale="log", xlabel=f"{col.upper()} latency (s, log scale)", title=col.upper())
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{labels[1]} vs {labels[0]}")
    return fig
