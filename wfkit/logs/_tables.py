"""The summary tables of a step log in pandas, shared by the accessor, the advice and the
on-disk summaries: grouping keys, quantile labels, fast grouped quantiles, the runs table."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from wfkit.model._suggest import did_you_mean

if TYPE_CHECKING:
    import pandas as pd

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
ERROR_KINDS: tuple[str, ...] = ("transient", "permanent", "unknown")
KEYS: tuple[str, ...] = ("workflow", "step")


def keys_of(frame: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    """The grouping columns: ``by``, or (workflow, step) (just step on a frame without workflow).
    A ``by`` naming no column of the frame is refused, the closest column suggested."""
    if by is None:
        return [k for k in KEYS if k in frame.columns]
    keys = [by] if isinstance(by, str) else list(by)
    columns = [str(c) for c in frame.columns]
    unknown = [k for k in keys if k not in frame.columns]
    if unknown:
        named = ", ".join(f"{k!r}{did_you_mean(str(k), columns)}" for k in unknown)
        raise ValueError(
            f"by= names no column of this frame: {named}; group by its columns (e.g. by='run_id', "
            f"by=['workflow', 'model']), which are {', '.join(columns)}"
        )
    return keys


def map_own_rows(frame: pd.DataFrame) -> Any:
    """Which rows (a boolean array) are a map step's own row: the one with no ``map_index`` that
    says how the map as a whole ended, its latency that of all its items. It is no attempt of
    anything (its items' rows are the map step's attempts), so no attempt count or latency takes
    it. A step is a map step when any of its rows (per workflow and step) is an item's."""
    import numpy as np

    items = frame["map_index"].notna().to_numpy(dtype=bool)
    own = np.zeros(len(frame), dtype=bool)
    if not items.any():
        return own
    keys = keys_of(frame, None)
    # Map steps are few: one comparison per map step (codes, on categoricals) beats a join on millions of rows.
    for names in frame.loc[items, keys].drop_duplicates().itertuples(index=False):
        step_rows = np.ones(len(frame), dtype=bool)
        for key, name in zip(keys, names, strict=True):
            step_rows &= (frame[key] == name).to_numpy(dtype=bool)
        own |= step_rows
    return own & ~items


def quantile_label(q: float) -> str:
    """0.5 -> "p50", 0.999 -> "p99.9"."""
    pct = q * 100
    return f"p{round(pct):d}" if abs(pct - round(pct)) < 1e-9 else f"p{pct:g}"


def _dense_codes(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[Any, Any, list[Any]] | None:
    """One unsigned integer per row naming its group, as narrow as the groups allow (8 bits for up
    to 256 groups, else 16), a boolean array of the rows with a missing key (None: no such row), and
    each key's levels; None when the groups could number more than 65,536 (then pandas' groupby
    does the work)."""
    import numpy as np
    import pandas as pd

    columns = []
    space = 1
    for key in keys:
        column = frame[key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes, cats = column.cat.codes.to_numpy(), column.cat.categories
        else:
            codes, cats = pd.factorize(column, sort=True)
        space *= max(len(cats), 1)
        if space > 2**16:
            return None
        columns.append((codes, cats))
    # Narrow codes move fewer bytes, and numpy's stable sort of 8- and 16-bit integers is a radix
    # sort (one pass per byte).
    narrow = np.uint8 if space <= 2**8 else np.uint16
    combined: Any = np.zeros(len(frame), dtype=narrow)
    missing = None
    levels: list[Any] = []
    for codes, cats in columns:
        width = max(len(cats), 1)
        if len(codes) and codes.min() < 0:  # a missing key: that row belongs to no group
            missing = codes < 0 if missing is None else missing | (codes < 0)
        # A missing key's -1 wraps to some code here; the row is dropped by `missing` anyway.
        if levels:  # (the first key's width may be 256, which a uint8 cannot hold)
            combined *= width  # in place: stays `narrow`
        combined += codes.astype(narrow, copy=False)
        levels.append(cats)
    return combined, missing, levels


def _lerp(below: Any, above: Any, fraction: Any) -> Any:
    """numpy's linear interpolation between neighbouring order statistics, operation for
    operation (``numpy.lib._function_base_impl._lerp``), so the quantiles equal np.quantile's to
    the last bit: from the lower neighbour below one half, from the upper one from there on."""

    step = above - below
    result = below + step * fraction
    upper = fraction >= 0.5
    result[upper] = (above - step * (1 - fraction))[upper]
    return result


# Below this many rows one thread does the work: splitting costs more than it saves.
PARALLEL_ROWS = 1 << 20
_MOST_WORKERS = 8


def workers_for(rows: int) -> int:
    """How many threads split ``rows`` rows: the cores this process may run on (at most 8), or one
    for a small frame."""
    import os

    if rows < PARALLEL_ROWS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, _MOST_WORKERS))


def _group_order(codes: Any, space: int) -> tuple[Any, Any]:
    """The rows' order by group, stable (row order within a group), and each group's size.

    pandas' counting sort (one pass to count, one to place) takes under half the time of numpy's
    stable argsort, a radix sort of the codes; numpy's is the fallback should pandas' private
    function ever move."""
    import numpy as np

    try:
        from pandas._libs.algos import groupsort_indexer
    except ImportError:  # pragma: no cover - pandas moved it
        return np.argsort(codes, kind="stable"), np.bincount(codes, minlength=space)
    order, counts = groupsort_indexer(codes.astype(np.intp), space)
    return order, counts[1:]  # counts[0]: rows with code -1, of which there are none


def order_positions(sizes: Any, quantiles: Any) -> tuple[Any, Any, Any]:
    """For groups of ``sizes`` values (a column) and ``quantiles`` (a row): the positions in each
    group's sorted values of the order statistics below and above each quantile, between which
    np.quantile interpolates linearly, and the fraction of the way from one to the other."""
    import numpy as np

    virtual = (sizes - 1) * quantiles
    lower = np.floor(virtual)
    last = virtual >= sizes - 1
    below = np.where(last, sizes - 1, lower).astype(np.intp)
    above = np.where(last, sizes - 1, lower + 1).astype(np.intp)
    return below, above, virtual - lower


def select_in_place(stretch: Any, positions: Sequence[int]) -> None:
    """Rearrange ``stretch`` so that each of ``positions`` (ascending, distinct) holds the value it
    would hold were the stretch sorted: a partition of what lies beyond the previous position,
    each time (a minimum when it is the very next one). Some four times faster than sorting the
    stretch for the eight or nine positions quantiles need."""
    start = 0
    for position in positions:
        rest = stretch[start:]
        if position == start:
            smallest = int(rest.argmin())
            rest[0], rest[smallest] = rest[smallest], rest[0]
        else:
            rest.partition(position - start)
        start = position + 1


def _sorted_groups(
    codes: Any,
    values: Any,
    space: int,
    keep: Any = None,
    *,
    workers: int = 1,
    positions: Callable[[int], Sequence[int]] | None = None,
) -> tuple[Any, Any, Any]:
    """Each group's values brought together (groups in code order, rows in row order within a
    group), each stretch then sorted in place; with the groups' sizes and their means (taken
    before the sort, so that the sum runs in row order, as pandas' does). Only the rows where
    ``keep`` is true, if given. With ``positions`` (a group's size -> the positions it needs), a
    stretch is not sorted but only those positions are made to hold their order statistics
    (``select_in_place``), unless selecting them would cost more than a sort.

    With ``workers`` > 1 the rows are cut into that many consecutive parts, each part's rows are
    kept, grouped and gathered on a thread of its own, and each group's stretch is then put
    together from the parts (in part order: row order still) and sorted, the groups shared out
    among the threads, largest first. numpy and pandas' counting sort let go of the GIL in all of
    these, so on an idle machine two cores take a little over half the time of one; the
    stretches, and so every figure, are the very ones one thread produces."""
    import numpy as np

    def gather(part: tuple[int, int]) -> tuple[Any, Any]:
        part_codes, part_values = codes[part[0] : part[1]], values[part[0] : part[1]]
        if keep is not None:
            part_keep = keep[part[0] : part[1]]
            part_codes, part_values = part_codes[part_keep], part_values[part_keep]
        order, part_counts = _group_order(part_codes, space)
        return part_counts, np.take(part_values, order)

    def arrange(stretch: Any) -> None:
        needed = None if positions is None else positions(len(stretch))
        # Each partition passes over what lies beyond the previous position; a sort is some four
        # passes' worth.
        if needed is None or sum(len(stretch) - p for p in needed) > 4 * len(stretch):
            stretch.sort()
        else:
            select_in_place(stretch, needed)

    bounds = np.linspace(0, len(codes), workers + 1).astype(np.intp).tolist()
    parts = list(itertools.pairwise(bounds))
    pool = None
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(workers, thread_name_prefix="wfkit-quantiles")
    try:
        pieces = [gather(parts[0])] if pool is None else list(pool.map(gather, parts))
        counts = np.sum([piece_counts for piece_counts, _ in pieces], axis=0)
        ends = np.cumsum(counts)
        starts = ends - counts
        means = np.zeros(space)
        # One piece is the whole ordered array (our own copy, sorted in place below); several are
        # copied into one, stretch by stretch, by the thread that then sorts that stretch.
        ordered = pieces[0][1] if len(pieces) == 1 else np.empty(int(ends[-1]))
        piece_starts = [np.cumsum(piece_counts) - piece_counts for piece_counts, _ in pieces]

        def finish(group: int) -> None:
            if len(pieces) > 1:
                at = int(starts[group])
                for (piece_counts, gathered), first in zip(pieces, piece_starts, strict=True):
                    size = int(piece_counts[group])
                    ordered[at : at + size] = gathered[first[group] : first[group] + size]
                    at += size
            stretch = ordered[starts[group] : ends[group]]
            means[group] = stretch.mean()
            arrange(stretch)

        present = np.flatnonzero(counts)
        if pool is None:
            for group in present.tolist():
                finish(group)
        else:  # the largest groups first, so that no thread is left with a big one at the end
            list(pool.map(finish, present[np.argsort(-counts[present], kind="stable")].tolist()))
    finally:
        if pool is not None:
            pool.shutdown()
    return ordered, counts, means


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
    order; only the rows where the boolean array ``where`` is true, if given.

    Fast on millions of rows, equal to np.quantile per group to the last bit: the frame is never
    copied (only its key codes and the one column, masked once), no pandas groupby; one counting
    sort of the group codes brings each group's values together, in each group's stretch only the
    eight or nine order statistics the figures need are put in place (one partition after the
    other, each over what lies beyond the last: four times faster than numpy's SIMD sort of the
    stretch, and than np.partition given them all at once), and every quantile of every group is
    read from those stretches and interpolated in one vectorised step. On a million rows or more
    the grouping and the selections are shared among threads (one per core), with the same result
    to the bit."""
    import numpy as np
    import pandas as pd

    qs = np.asarray(quantiles, dtype=float)
    if qs.ndim != 1 or ((qs < 0) | (qs > 1) | np.isnan(qs)).any():
        raise ValueError(f"quantiles must be numbers in [0, 1], got {list(quantiles)}")
    labels = [quantile_label(q) for q in quantiles]
    dense = _dense_codes(frame, keys) if keys else None
    if dense is None:
        return _pandas_quantiles(frame if where is None else frame[where], keys, column, quantiles)
    codes, missing, levels = dense
    values = frame[column].to_numpy(dtype=float)
    drop = np.isnan(values)
    if missing is not None:
        drop |= missing
    keep = ~drop if where is None else np.asarray(where, dtype=bool) & ~drop
    space = int(np.prod([max(len(c), 1) for c in levels]))

    def needed(size: int) -> list[int]:  # the order statistics a group's figures are read from
        below, above, _ = order_positions(np.array([[float(size)]]), qs[None, :])
        return sorted({*below.ravel().tolist(), *above.ravel().tolist(), size - 1})

    # One compress per array (in each thread's part), whatever the reasons a row is left out.
    ordered, counts, means = _sorted_groups(
        codes, values, space, None if keep.all() else keep, workers=workers_for(len(codes)), positions=needed
    )
    ends = np.cumsum(counts)
    starts = ends - counts
    present = np.flatnonzero(counts)
    means = means[present]
    # Linear interpolation between the order statistics around (n - 1) * q, as np.quantile does.
    below, above, fraction = order_positions(counts[present].astype(float)[:, None], qs[None, :])
    first_at = starts[present][:, None]
    below_at = below + first_at
    above_at = above + first_at
    table_values = np.empty((len(present), len(qs) + 3))
    if len(present):
        table_values[:, : len(qs)] = _lerp(ordered[below_at], ordered[above_at], fraction)
        table_values[:, len(qs)] = ordered[ends[present] - 1]
    table_values[:, len(qs) + 1] = means
    table_values[:, len(qs) + 2] = counts[present]
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
    table = pd.DataFrame(table_values, index=index, columns=[*labels, "max", "mean", "count"])
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


# What runs_table needs besides a run's times to tell how the run ended.
OUTCOME_COLUMNS: tuple[str, ...] = ("retry_delay_s", "route_taken", "map_index", "seq", "step", "visit")


def runs_table(df: pd.DataFrame, *, outcomes: bool = True) -> pd.DataFrame:
    """One row per run: start, end, attempts, steps done, failures, retries, workflow, span (end
    minus start, wall clock), duration (the time it ran: the span less the time it lay stopped
    between a crash, a failure or a cancellation and its resume, see :func:`_stopped_seconds`; approval
    waits count),
    then how it ended: steps that fell back, and whether the run failed.

    ``steps_ok`` counts step visits done, ``failed`` those that gave up (their last attempt failed
    or timed out), whether a fallback then took over or not; a map step's visit is its own row,
    however many of its items succeeded or failed (``attempts`` and ``retries`` are its items').
    ``fell_back`` counts the visits that gave up a fallback took over; ``run_failed`` says
    whether the run itself failed: a step (not an item of a map step: its map step's row says what
    became of it) gave up with no fallback to take over (a step failure, a run deadline) and the run
    was not resumed past it (no later row of that step visit), or the run's last row is a rejected
    approval; ``failed_on_timeout`` whether the step that failed it
    ran out of time (its own timeout or the run's deadline: how long the run would have taken is
    unknown). ``outcomes=False`` leaves those three out (and so needs none of
    :data:`OUTCOME_COLUMNS`): the run durations alone.

    Vectorised: the per-row flags are computed once as columns, then one groupby sums them (a
    Python function per run took minutes on a million runs)."""
    import pandas as pd

    # An attempt followed by another (a retry, or a timeout that is retried) has a delay.
    retried = df["retry_delay_s"].notna() if "retry_delay_s" in df else pd.Series(False, index=df.index)
    gave_up = df["status"].isin(["failed", "timeout"]) & ~retried
    # A step's own row, not a map item's: a map step is done, or gives up, once, however many items.
    step_row = df["map_index"].isna() if "map_index" in df else pd.Series(True, index=df.index)
    step_gave_up = gave_up & step_row
    columns: dict[str, Any] = {
        "run_id": df["run_id"],
        "start": df["started_at"],
        "end": df["ended_at"],
        # (A map step's own row is none: its items' rows are its attempts.)
        "attempts": (df["attempt"] > 0) & ~map_own_rows(df) if "map_index" in df else df["attempt"] > 0,
        "steps_ok": (df["status"] == "ok") & step_row,
        "failed": step_gave_up,
        "retries": retried,
    }
    counted = ["attempts", "steps_ok", "failed", "retries"]
    if outcomes:
        # A step's row that gave up names the step its fallback went on to. One with no fallback
        # failed the run, unless a later row of the same step visit follows it: the run was resumed
        # from that failure, and its outcome is what came after.
        fallback = df["route_taken"].notna()
        visit_keys = [df["run_id"], df["step"], df["visit"], df["map_index"]]
        last_of_visit = df["seq"] == df["seq"].groupby(visit_keys, observed=True, dropna=False).transform("max")
        columns["fell_back"] = step_gave_up & fallback
        columns["fatal"] = step_gave_up & ~fallback & last_of_visit
        timed_out = df["status"] == "timeout"
        columns["fatal_timeout"] = columns["fatal"] & (timed_out | _failed_by_an_item_timeout(df, gave_up, timed_out))
        columns["seq"] = df["seq"]
        columns["rejected"] = df["status"] == "rejected"
        counted.append("fell_back")
    if "workflow" in df.columns:
        columns["workflow"] = df["workflow"]
    frame = pd.DataFrame(columns).reset_index(drop=True)  # labels that are positions, for idxmax below
    agg: dict[str, Any] = {
        "start": ("start", "min"),
        "end": ("end", "max"),
        **{name: (name, "sum") for name in counted},
    }
    if outcomes:
        agg["fatal"] = ("fatal", "any")
        agg["fatal_timeout"] = ("fatal_timeout", "any")
    if "workflow" in frame.columns:
        agg["workflow"] = ("workflow", "first")
    grouped = frame.groupby("run_id", observed=True, sort=False)
    table = grouped.agg(**agg)
    for name in counted:
        table[name] = table[name].astype("int64")
    table["span_s"] = (table["end"] - table["start"]).dt.total_seconds()
    table["duration_s"] = table["span_s"] - _stopped_seconds(df).reindex(table.index, fill_value=0.0)
    if outcomes:
        # A rejection the run went on from (to the gate's on_reject step) is not its last row.
        last = frame.loc[grouped["seq"].idxmax().to_numpy(), ["run_id", "rejected"]].set_index("run_id")["rejected"]
        rejected_last = last.reindex(table.index, fill_value=False).astype(bool)
        table["run_failed"] = table.pop("fatal").astype(bool) | rejected_last
        table["failed_on_timeout"] = table.pop("fatal_timeout").astype(bool)
        outcome = ["fell_back", "run_failed", "failed_on_timeout"]
        table = table[[c for c in table.columns if c not in outcome] + outcome]
    return table.sort_values("start")


def _stopped_seconds(df: pd.DataFrame) -> pd.Series:
    """Per run, the seconds it lay stopped between a crash, a failure or a cancellation and a
    resume: the sum of its :func:`stops` (summed as StepLog's query sums them)."""
    import pandas as pd

    found = _gaps(df)
    if found is None:
        return pd.Series(dtype="float64")
    run, _, _, gap = found
    return (gap.clip(lower=0.0).fillna(0.0) / 1e6).groupby(run, observed=True).sum()


def stops(df: pd.DataFrame) -> pd.DataFrame:
    """The stretches runs lay stopped between a crash, a failure or a cancellation and a resume, a
    row each: ``run_id``, ``from_s`` and ``to_s`` (seconds from the run's first start) and
    ``seconds``; not time the run ran (its deadline does not count it either). A resume shows in the log
    (rows in ``seq`` order) as an attempt a crash cut off (no end; journaled by the resume) after a
    row that is none, or as a row after a step that gave up with no fallback or was cancelled. The
    stop there is from the last moment the rows before it cover (an end, or a start of an attempt
    cut off, and the backoff after it) to the first moment the rows from it on cover (a start, less
    its ``queue_s``): the time from that last moment to the crash is unknown, and not counted. A
    crash between two steps leaves no row to tell it by. Approval waits are no stop: they count."""
    import pandas as pd

    found = _gaps(df)
    if found is None:
        return pd.DataFrame({"run_id": [], "from_s": [], "to_s": [], "seconds": []})
    run, before, after, gap = found
    kept = (gap > 0).to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "run_id": run[kept].astype(object).to_numpy(),
            "from_s": (before[kept] / 1e6).to_numpy(dtype="float64"),
            "to_s": (after[kept] / 1e6).to_numpy(dtype="float64"),
            "seconds": (gap[kept] / 1e6).to_numpy(dtype="float64"),
        }
    )


def _gaps(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series] | None:
    """Per row of ``df`` in (run, seq) order: its run, and where a resume follows a stop, the last
    moment covered before it, the first after it and the gap between (microseconds from the run's
    first start; NaN elsewhere). None for a frame without ``seq``."""
    import numpy as np
    import pandas as pd

    if "seq" not in df.columns:
        return None

    def seconds(name: str) -> pd.Series:
        return rows[name].astype("float64").fillna(0.0) if name in rows.columns else pd.Series(0.0, index=rows.index)

    def micros(column: pd.Series) -> pd.Series:
        return pd.to_datetime(column, utc=True).dt.as_unit("us").astype("int64")

    rows = df.sort_values(["run_id", "seq"], kind="stable")
    run = rows["run_id"]
    # In microseconds from the run's first start, as floats: StepLog's query computes the very
    # same numbers, so both give equal durations.
    start = micros(rows["started_at"])
    origin = start.groupby(run, observed=True).transform("min")
    cut = (rows["ended_at"].isna() & (rows["attempt"] > 0)).to_numpy(dtype=bool)
    hi = (micros(rows["ended_at"].fillna(rows["started_at"])) - origin).astype("float64")
    hi = hi + seconds("retry_delay_s") * 1e6
    lo = ((start - origin).astype("float64") - seconds("queue_s") * 1e6).where(~cut, np.inf)
    # A step that gave up, or the attempt a cancellation stopped: the run may be resumed after it.
    stop = rows["status"].isin(["failed", "timeout", "cancelled"]).to_numpy(dtype=bool, copy=True)
    for name in ("retry_delay_s", "map_index", "route_taken"):
        if name in rows.columns:
            stop &= rows[name].isna().to_numpy(dtype=bool)
    before = hi.groupby(run, observed=True).cummax().groupby(run, observed=True).shift()
    after = lo.iloc[::-1].groupby(run.iloc[::-1], observed=True).cummin().iloc[::-1]
    prev_cut = pd.Series(cut, index=rows.index).groupby(run, observed=True).shift(fill_value=False)
    prev_stop = pd.Series(stop, index=rows.index).groupby(run, observed=True).shift(fill_value=False)
    resumed = (cut & ~prev_cut.to_numpy(dtype=bool)) | prev_stop.to_numpy(dtype=bool)
    gap = (after - before).where(resumed & np.isfinite(after.to_numpy()) & before.notna().to_numpy())
    return run, before, after, gap


def _failed_by_an_item_timeout(df: pd.DataFrame, gave_up: pd.Series, timed_out: pd.Series) -> Any:
    """Which rows (a boolean array) are a map step's own row that failed because an item ran out of
    time: an item of its visit gave up on a timeout before it. (The map's row says only that it
    failed, with a MapItemError, unless the run's deadline passed.) Asked of the few rows that gave
    up, not of every row."""
    import numpy as np

    found = np.zeros(len(df), dtype=bool)
    items = gave_up & df["map_index"].notna()
    cut = df.loc[items & timed_out, ["run_id", "step", "visit", "seq"]]
    if cut.empty:
        return found
    maps = df.loc[gave_up & ~items & ~timed_out, ["run_id", "step", "visit", "seq"]]
    maps = maps.assign(_row=np.flatnonzero((gave_up & ~items & ~timed_out).to_numpy(dtype=bool)))
    pairs = maps.merge(cut, on=["run_id", "step", "visit"], suffixes=("", "_item"))
    found[pairs.loc[pairs["seq_item"] < pairs["seq"], "_row"].to_numpy()] = True
    return found


def parse_time(name: str, value: dt.datetime | str) -> dt.datetime:
    """A ``since``/``until`` filter as an aware datetime (UTC when it names no zone); text that is
    no ISO 8601 date or time is refused saying what would be."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{name}={value!r} is not a date or time: give an ISO 8601 one, e.g. 2026-12-01 or "
                f"2026-12-01T09:30 (UTC unless it names a zone, as in 2026-12-01T09:30+01:00)"
            ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def check_window(since: dt.datetime | str | None, until: dt.datetime | str | None) -> None:
    """Refuse ``since``/``until`` filters no row can meet (``until`` at or before ``since``): the
    read came back empty, which reads as "nothing happened then". ``until`` excludes its own
    moment, so ``since="2026-12-01", until="2026-12-01"`` (one day meant) is such a window."""
    if since is None or until is None:
        return
    start, end = parse_time("since", since), parse_time("until", until)
    if end > start:
        return
    if end < start:
        hint = f"; swap them: since={until!r}, until={since!r}"
    elif start.time() == dt.time(0):  # one day meant
        hint = (
            f"; until excludes its own time, so for the whole day of {start:%Y-%m-%d} write "
            f"until='{start + dt.timedelta(days=1):%Y-%m-%d}'"
        )
    else:
        hint = "; until excludes its own time: give a later one"
    raise ValueError(
        f"until={until!r} is not after since={since!r}: no attempt starts at or after since and before until{hint}"
    )


def in_run_order(table: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``table`` (indexed by workflow and step, or by ``by=`` keys holding ``step``) with each
    workflow's steps in the order a run meets them: by when each first started in ``frame`` (the
    earliest ``started_at`` per workflow and step), not alphabetically (critique, draft, revise). The
    levels before ``step`` keep their order, a step that never started goes last, and a tie keeps
    the table's order; a frame without ``started_at`` leaves the table as it is."""
    import numpy as np
    import pandas as pd

    names = list(table.index.names)
    if "step" not in names or "step" not in frame.columns or "started_at" not in frame.columns or not len(table):
        return table
    by = [k for k in KEYS if k in names and k in frame.columns]
    first = frame.groupby(by, observed=True)["started_at"].min()
    first.index = first.index.map(lambda k: tuple(map(str, k)) if isinstance(k, tuple) else str(k))
    index = table.index.to_frame(index=False).astype(str)
    met = [tuple(row) if len(by) > 1 else row[0] for row in index[by].itertuples(index=False)]
    when = pd.Series(first.reindex(met).to_numpy()).rank(method="min", na_option="bottom").to_numpy()
    outer = names[: names.index("step")]
    groups = pd.factorize(pd.MultiIndex.from_frame(index[outer]))[0] if outer else np.zeros(len(table), dtype=int)
    return table.iloc[np.lexsort((np.arange(len(table)), when, groups))]
