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


def keys_of(frame: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    """The grouping columns: ``by``, or (workflow, step) (just step on a frame without workflow)."""
    if by is None:
        return [k for k in KEYS if k in frame.columns]
    return [by] if isinstance(by, str) else list(by)


def quantile_label(q: float) -> str:
    """0.5 -> "p50", 0.999 -> "p99.9"."""
    pct = q * 100
    return f"p{round(pct):d}" if abs(pct - round(pct)) < 1e-9 else f"p{pct:g}"


def _dense_codes(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[Any, list[Any]] | None:
    """One integer per row naming its group (-1: a key is missing), and each key's levels; None
    when the groups could number more than 65,536 (then pandas' groupby does the work)."""
    import numpy as np
    import pandas as pd

    combined = None
    missing = None
    levels = []
    space = 1
    for key in keys:
        column = frame[key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes, cats = column.cat.codes.to_numpy(), column.cat.categories
        else:
            codes, cats = pd.factorize(column, sort=True)
        width = max(len(cats), 1)
        space *= width
        if space > 2**16:
            return None
        if len(codes) and codes.min() < 0:  # a missing key: that row belongs to no group
            missing = codes < 0 if missing is None else missing | (codes < 0)
            codes = np.maximum(codes, 0)
        # 32-bit arithmetic: the code space is at most 2**16, and half the bytes move.
        codes = codes.astype(np.int32, copy=False)
        combined = codes if combined is None else combined * np.int32(width) + codes
        levels.append(cats)
    if combined is None:
        combined = np.zeros(len(frame), dtype=np.int32)
    if missing is not None:
        combined = combined.copy()
        combined[missing] = -1
    return combined, levels


def grouped_quantiles(
    frame: pd.DataFrame,
    keys: Sequence[str],
    column: str,
    quantiles: Sequence[float],
    *,
    where: Any = None,
) -> pd.DataFrame:
    """Quantiles (linear interpolation, as pandas and DuckDB's quantile_cont), max, mean and count
    of ``column`` per group, NaN values and rows with a missing key left out, groups in sorted
    order; only the rows where the boolean array ``where`` is true, if given. Fast on millions of
    rows: the frame is never copied (only its key codes and the one column, masked), no pandas
    groupby, one radix sort of the group codes, then one selection (np.quantile partitions, O(n))
    per group."""
    import numpy as np
    import pandas as pd

    labels = [quantile_label(q) for q in quantiles]
    dense = _dense_codes(frame, keys) if keys else None
    if dense is None:
        return _pandas_quantiles(frame if where is None else frame[where], keys, column, quantiles)
    codes, levels = dense
    values = frame[column].to_numpy(dtype=float)
    if where is not None:
        codes, values = codes[where], values[where]
    nan = np.isnan(values)
    if nan.any() or (len(codes) and codes.min() < 0):
        keep = (codes >= 0) & ~nan
        codes, values = codes[keep], values[keep]
    space = int(np.prod([max(len(c), 1) for c in levels]))
    counts = np.bincount(codes, minlength=space)
    # Codes as narrow as they fit: numpy's stable sort of 8- and 16-bit integers is a radix sort,
    # one pass per byte.
    narrow = np.uint8 if space <= 2**8 else np.uint16
    order = np.argsort(codes.astype(narrow), kind="stable")
    ordered = values[order]
    ends = np.cumsum(counts)
    present = np.flatnonzero(counts)
    rows = []
    for group in present:
        part = ordered[ends[group] - counts[group] : ends[group]]
        rows.append([*np.quantile(part, quantiles), part.max(), part.mean(), len(part)])
    # Decode each present group's code back into its key values.
    names = []
    rest = present.copy()
    for cats in reversed(levels):
        width = max(len(cats), 1)
        names.append(np.asarray(cats, dtype=object)[rest % width] if len(cats) else np.array([], dtype=object))
        rest //= width
    names.reverse()
    if len(keys) == 1:
        index: pd.Index = pd.Index(names[0], name=keys[0], dtype=object)
    else:
        index = pd.MultiIndex.from_arrays(names, names=list(keys))
    table = pd.DataFrame(rows, index=index, columns=[*labels, "max", "mean", "count"], dtype=float)
    table["count"] = table["count"].astype("int64")
    return table


def _pandas_quantiles(
    frame: pd.DataFrame, keys: Sequence[str], column: str, quantiles: Sequence[float]
) -> pd.DataFrame:
    """grouped_quantiles for many groups (by run, say): pandas' own groupby."""
    import pandas as pd

    rows = frame[frame[column].notna()]
    grouped = rows.groupby(list(keys), observed=True, sort=True)[column]
    table = grouped.quantile(list(quantiles)).unstack()
    table = table.reindex(columns=list(quantiles))
    table.columns = [quantile_label(q) for q in quantiles]
    table = pd.concat([table, grouped.agg(["max", "mean", "count"])], axis=1)
    table["count"] = table["count"].astype("int64")
    table.columns.name = None
    return table


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: start, end, attempts, steps done, failures, retries, workflow, duration.

    Vectorised: the per-row flags are computed once as columns, then one groupby sums them (a
    Python function per run took minutes on a million runs)."""
    import pandas as pd

    # An attempt followed by another (a retry, or a timeout that is retried) has a delay.
    retried = df["retry_delay_s"].notna() if "retry_delay_s" in df else pd.Series(False, index=df.index)
    columns: dict[str, Any] = {
        "run_id": df["run_id"],
        "start": df["started_at"],
        "end": df["ended_at"],
        "attempts": df["attempt"] > 0,
        "steps_ok": df["status"] == "ok",
        "failed": df["status"].isin(["failed", "timeout"]) & ~retried,
        "retries": retried,
    }
    if "workflow" in df.columns:
        columns["workflow"] = df["workflow"]
    frame = pd.DataFrame(columns)
    agg: dict[str, Any] = {
        "start": ("start", "min"),
        "end": ("end", "max"),
        **{name: (name, "sum") for name in ("attempts", "steps_ok", "failed", "retries")},
    }
    if "workflow" in frame.columns:
        agg["workflow"] = ("workflow", "first")
    table = frame.groupby("run_id", observed=True, sort=False).agg(**agg)
    for name in ("attempts", "steps_ok", "failed", "retries"):
        table[name] = table[name].astype("int64")
    table["duration_s"] = (table["end"] - table["start"]).dt.total_seconds()
    return table.sort_values("start")
