"""The summary tables of a step log in pandas, shared by the accessor, the advice and the
on-disk summaries: grouping keys, quantile labels, fast grouped quantiles, the runs table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
ERROR_KINDS: tuple[str, ...] = ("transient", "permanent", "unknown")
KEYS: tuple[str, ...] = ("workflow", "step")
# Above this many groups (e.g. by run_id) a per-group selection loop costs more than pandas' own.
_MANY_GROUPS = 5_000


def keys_of(frame: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    """The grouping columns: ``by``, or (workflow, step) (just step on a frame without workflow)."""
    if by is None:
        return [k for k in KEYS if k in frame.columns]
    return [by] if isinstance(by, str) else list(by)


def quantile_label(q: float) -> str:
    """0.5 -> "p50", 0.999 -> "p99.9"."""
    pct = q * 100
    return f"p{round(pct):d}" if abs(pct - round(pct)) < 1e-9 else f"p{pct:g}"


def grouped_quantiles(
    frame: pd.DataFrame, keys: Sequence[str], column: str, quantiles: Sequence[float]
) -> pd.DataFrame:
    """Quantiles (linear interpolation, as pandas and DuckDB's quantile_cont), max, mean and count
    of ``column`` per group; NaN values left out. Fast on millions of rows and few groups."""
    import numpy as np
    import pandas as pd

    labels = [quantile_label(q) for q in quantiles]
    rows = frame[frame[column].notna()] if frame[column].hasnans else frame
    grouped = rows.groupby(list(keys), observed=True, sort=True)
    stats = grouped[column].agg(["max", "mean", "count"])
    if grouped.ngroups > _MANY_GROUPS:
        table = grouped[column].quantile(list(quantiles)).unstack()
        table.columns = labels
    else:
        # One stable sort of small integer codes (a radix sort) puts each group's values together;
        # np.quantile then selects (O(n)) instead of sorting every group.
        codes = grouped.ngroup().to_numpy()
        width = np.int16 if grouped.ngroups < 2**15 else np.int32
        order = np.argsort(codes.astype(width), kind="stable")
        values = rows[column].to_numpy(dtype=float)[order]
        ends = np.cumsum(np.bincount(codes, minlength=grouped.ngroups))
        starts = ends - np.bincount(codes, minlength=grouped.ngroups)
        result = np.array(
            [np.quantile(values[a:b], quantiles) for a, b in zip(starts, ends, strict=True)]
        ).reshape(grouped.ngroups, len(quantiles))
        table = pd.DataFrame(result, index=stats.index, columns=labels)
    table = pd.concat([table, stats], axis=1)
    table["count"] = table["count"].astype("int64")
    table.columns.name = None
    return table




def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: start, end, attempts, steps done, failures, retries, workflow, duration."""
    frame = df.assign(
        # An attempt followed by another (a retry, or a timeout that is retried) has a delay.
        _retried=df["retry_delay_s"].notna() if "retry_delay_s" in df else False,
    )
    frame["_failed"] = frame["status"].isin(["failed", "timeout"]) & ~frame["_retried"]
    agg: dict[str, Any] = {
        "start": ("started_at", "min"),
        "end": ("ended_at", "max"),
        "attempts": ("attempt", lambda a: int((a > 0).sum())),
        "steps_ok": ("status", lambda s: int((s == "ok").sum())),
        "failed": ("_failed", "sum"),
        "retries": ("_retried", "sum"),
    }
    if "workflow" in frame.columns:
        agg["workflow"] = ("workflow", "first")
    table = frame.groupby("run_id", observed=True, sort=False).agg(**agg)
    table["duration_s"] = (table["end"] - table["start"]).dt.total_seconds()
    return table.sort_values("start")
