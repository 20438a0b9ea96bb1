"""The summary tables in pandas: grouped quantiles equal pandas' own, on categorical and plain keys,
with missing keys and NaN values left out; quantile labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wfkit.logs._tables import (
    PARALLEL_ROWS,
    _pandas_quantiles,
    _sorted_groups,
    grouped_quantiles,
    keys_of,
    quantile_label,
    runs_table,
    select_in_place,
    workers_for,
)

QS = (0.5, 0.9, 0.99)


def frame(categorical: bool) -> pd.DataFrame:
    """5,000 rows over 2 workflows x 3 steps, some NaN latencies and a missing step name."""
    rng = np.random.default_rng(1)
    workflows = rng.choice(["w1", "w2"], 5000)
    steps = rng.choice(["a", "b", "c"], 5000).astype(object)
    steps[:7] = None
    latency = rng.lognormal(size=5000)
    latency[10:20] = np.nan
    df = pd.DataFrame({"workflow": workflows, "step": steps, "latency_s": latency})
    if categorical:
        df["workflow"] = df["workflow"].astype("category")
        df["step"] = df["step"].astype("category")
    return df


@pytest.mark.parametrize("categorical", [True, False])
def test_grouped_quantiles_equal_pandas(categorical: bool) -> None:
    """The radix-sorted path gives pandas' groupby quantiles, max, mean and count exactly."""
    df = frame(categorical)
    ours = grouped_quantiles(df, ["workflow", "step"], "latency_s", QS)
    theirs = _pandas_quantiles(df, ["workflow", "step"], "latency_s", QS)
    assert [("w1", "a"), ("w1", "b"), ("w1", "c"), ("w2", "a"), ("w2", "b"), ("w2", "c")] == list(ours.index)
    assert ["p50", "p90", "p99", "max", "mean", "count"] == list(ours.columns)
    np.testing.assert_allclose(theirs.to_numpy(dtype=float), ours.to_numpy(dtype=float), rtol=1e-12)
    assert len(df) - 7 - 10 == int(ours["count"].sum())


def test_grouped_quantiles_by_one_key_and_of_nothing() -> None:
    """One key gives a flat index; an empty frame an empty table with the same columns."""
    df = frame(False)
    one = grouped_quantiles(df, ["workflow"], "latency_s", QS)
    assert ["w1", "w2"] == list(one.index)
    empty = grouped_quantiles(df.iloc[:0], ["workflow", "step"], "latency_s", QS)
    assert 0 == len(empty)
    assert list(one.columns) == list(empty.columns)


def test_keys_and_labels() -> None:
    """Default keys are (workflow, step), or step alone without a workflow column; labels read p99.9."""
    assert ["workflow", "step"] == keys_of(frame(False), None)
    assert ["step"] == keys_of(frame(False).drop(columns="workflow"), None)
    assert ["step"] == keys_of(frame(False), "step")
    assert ["workflow", "step"] == keys_of(frame(False), ["workflow", "step"])
    with pytest.raises(ValueError, match=r"'run_id'; group by its columns"):
        keys_of(frame(False), "run_id")  # this frame has none
    assert ["p50", "p99", "p99.9", "p25"] == [quantile_label(q) for q in (0.5, 0.99, 0.999, 0.25)]


def test_a_mask_selects_the_rows_as_a_filtered_copy_would() -> None:
    """where= (a boolean array) gives exactly the table of the frame filtered by it, on both paths."""
    df = frame(True)
    where = (np.arange(len(df)) % 3 != 0) & (df["latency_s"].fillna(0).to_numpy() < 3)
    assert grouped_quantiles(df[where], ["workflow", "step"], "latency_s", QS).equals(
        grouped_quantiles(df, ["workflow", "step"], "latency_s", QS, where=where)
    )
    df["run"] = np.arange(len(df)) % 70_000  # more groups than codes span: pandas' groupby
    assert _pandas_quantiles(df[where], ["run"], "latency_s", QS).equals(
        grouped_quantiles(df, ["run"], "latency_s", QS, where=where)
    )


def _runs_reference(df: pd.DataFrame) -> pd.DataFrame:
    """runs_table as it was written first: a Python function per run (slow, obviously right)."""
    frame = df.assign(_retried=df["retry_delay_s"].notna())
    frame["_failed"] = frame["status"].isin(["failed", "timeout"]) & ~frame["_retried"]
    # A map step's own row (no map_index, in a step some of whose rows are items) is no attempt.
    map_steps = {(row.workflow, row.step) for row in frame[frame["map_index"].notna()].itertuples()}
    own = [pd.isna(row.map_index) and (row.workflow, row.step) in map_steps for row in frame.itertuples()]
    frame["_attempt"] = (frame["attempt"] > 0) & ~pd.Series(own, index=frame.index)
    frame["_step_ok"] = (frame["status"] == "ok") & frame["map_index"].isna()
    frame["_step_failed"] = frame["_failed"] & frame["map_index"].isna()
    table = frame.groupby("run_id", observed=True, sort=False).agg(
        start=("started_at", "min"),
        end=("ended_at", "max"),
        attempts=("_attempt", "sum"),
        # A map step is done, or gives up, once: its own row, not its items'.
        steps_ok=("_step_ok", "sum"),
        failed=("_step_failed", "sum"),
        retries=("_retried", "sum"),
        workflow=("workflow", "first"),
    )
    table["span_s"] = (table["end"] - table["start"]).dt.total_seconds()
    # Stopped: before a row that a crash cut off (after one that is not), or after a step's row
    # that gave up with no fallback, from the last moment the rows before cover to the first
    # moment the rows from there on (not cut off) cover.
    stopped = {}
    for run_id, rows in frame.sort_values("seq").groupby("run_id", observed=True, sort=False):
        rows = rows.reset_index(drop=True)
        cut = rows["ended_at"].isna() & (rows["attempt"] > 0)
        stop = rows["_failed"] & rows["map_index"].isna() & rows["route_taken"].isna()
        ends = rows["ended_at"].fillna(rows["started_at"]) + pd.to_timedelta(rows["retry_delay_s"].fillna(0), unit="s")
        starts = rows["started_at"] - pd.to_timedelta(rows["queue_s"], unit="s")
        total = 0.0
        for i in range(1, len(rows)):
            if (cut[i] and not cut[i - 1]) or stop[i - 1]:
                later = starts[i:][~cut[i:]]
                if len(later):
                    total += max(0.0, (later.min() - ends[:i].max()).total_seconds())
        stopped[run_id] = total
    table["duration_s"] = table["span_s"] - pd.Series(stopped)
    outcomes = {}
    for run_id, rows in frame.groupby("run_id", observed=True, sort=False):
        step = rows["_failed"] & rows["map_index"].isna()  # a step's row that gave up, no map item's
        # ... the last row of its step visit (a later one: the run was resumed past the failure)
        last_of_visit = pd.Series(
            [
                row.seq == rows.loc[(rows["step"] == row.step) & (rows["visit"] == row.visit)
                                    & rows["map_index"].isna(), "seq"].max()
                for row in rows.itertuples()
            ],
            index=rows.index,
        )  # fmt: skip
        fatal = step & rows["route_taken"].isna() & last_of_visit
        last = rows.loc[rows["seq"].idxmax(), "status"] == "rejected"
        # ... on a timeout: its own, or (a map step's row) one an item of its visit gave up on before it
        item_cut = pd.Series(
            [
                ((rows["step"] == row.step) & (rows["visit"] == row.visit) & rows["map_index"].notna()
                 & rows["_failed"] & (rows["status"] == "timeout") & (rows["seq"] < row.seq)).any()
                for row in rows.itertuples()
            ],
            index=rows.index,
        )  # fmt: skip
        on_timeout = bool((fatal & ((rows["status"] == "timeout") | item_cut)).any())
        outcomes[run_id] = (int((step & rows["route_taken"].notna()).sum()), bool(fatal.any()) or last, on_timeout)
    table["fell_back"] = [outcomes[run_id][0] for run_id in table.index]
    table["run_failed"] = [outcomes[run_id][1] for run_id in table.index]
    table["failed_on_timeout"] = [outcomes[run_id][2] for run_id in table.index]
    # Counts as int64 whatever the attempt column's width, as StepLog.runs() gives them.
    return table.sort_values("start").astype({"attempts": "int64"})


def test_runs_table_equals_one_computed_run_by_run() -> None:
    """The vectorised runs table equals the run-by-run one: attempts, successes, failures not
    retried, retries, workflow, span, duration (less the time it lay stopped between a failure or
    a crash and a resume), step failures a fallback took over, whether the run failed
    (a failure with no later row of its step visit) and whether on a timeout."""
    rng = np.random.default_rng(3)
    n = 2_000
    start = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**9, n), unit="us")
    df = pd.DataFrame(
        {
            "run_id": pd.Series(rng.choice([f"r{i}" for i in range(150)], n), dtype="str"),
            "workflow": pd.Categorical(rng.choice(["w1", "w2"], n)),
            "attempt": rng.integers(0, 4, n).astype("int32"),
            "status": pd.Categorical(rng.choice(["ok", "retry", "failed", "timeout", "approved", "rejected"], n)),
            "retry_delay_s": np.where(rng.random(n) < 0.2, 0.5, np.nan),
            "started_at": start,
            "ended_at": (start + pd.to_timedelta(rng.integers(0, 10**6, n), unit="us")).where(rng.random(n) > 0.05),
            "queue_s": rng.random(n) * 0.01,
            "route_taken": pd.Series(np.where(rng.random(n) < 0.3, "fallback", None), dtype="str"),
            "map_index": pd.array(np.where(rng.random(n) < 0.2, rng.integers(0, 5, n), -1), dtype="Int32"),
            "step": pd.Categorical(rng.choice(["a", "b", "c"], n)),
            "visit": rng.integers(1, 3, n).astype("int32"),
        }
    )
    df["map_index"] = df["map_index"].mask(df["map_index"] < 0)
    df["seq"] = (df.groupby("run_id").cumcount() + 1).astype("int64")
    expected = _runs_reference(df)
    actual = runs_table(df)
    assert list(expected.columns) == list(actual.columns)
    pd.testing.assert_frame_equal(expected, actual, check_exact=False, rtol=1e-9)
    assert (actual["duration_s"] < actual["span_s"]).any()  # runs resumed after a failure or a crash


def _per_group_reference(df: pd.DataFrame, keys: list[str], quantiles: list[float], where: np.ndarray) -> pd.DataFrame:
    """The table computed the obvious way: each group's values in row order, np.quantile on them."""
    rows, index = [], []
    usable = where & df["latency_s"].notna().to_numpy() & df[keys].notna().all(axis=1).to_numpy()
    for key in sorted({tuple(k) for k in df.loc[usable, keys].itertuples(index=False)}):
        chosen = usable & (df[keys] == pd.Series(key, index=keys)).all(axis=1).to_numpy()
        values = df.loc[chosen, "latency_s"].to_numpy(dtype=float)
        rows.append([*np.quantile(values, quantiles), values.max(), values.mean(), len(values)])
        index.append(key)
    labels = [quantile_label(q) for q in quantiles]
    table = pd.DataFrame(
        np.array(rows, dtype=float).reshape(len(rows), len(labels) + 3),
        index=pd.MultiIndex.from_tuples(index, names=keys)
        if index
        else pd.MultiIndex.from_arrays([[], []], names=keys),
        columns=[*labels, "max", "mean", "count"],
    )
    table["count"] = table["count"].astype("int64")
    return table


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["w1", "w2", None]),
            st.sampled_from(["a", "b", "c", "d"]),
            st.one_of(
                st.floats(min_value=0, max_value=1e6, allow_nan=False),
                st.sampled_from([0.0, 0.25, 1.0, 1.0, 3.5, float("nan")]),  # ties and missing values
            ),
            st.booleans(),
        ),
        max_size=80,
    ),
    quantiles=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=6),
    categorical=st.booleans(),
)
def test_grouped_quantiles_equal_np_quantile_per_group_to_the_bit(
    rows: list[tuple[str | None, str, float, bool]], quantiles: list[float], categorical: bool
) -> None:
    """Any rows, keys, masks and quantiles: each group's quantiles, max, mean and count are exactly
    np.quantile's (linear), max, mean and size over that group's values taken in row order."""
    df = pd.DataFrame(
        {
            "workflow": pd.Series([r[0] for r in rows], dtype=object),
            "step": pd.Series([r[1] for r in rows], dtype=object),
            "latency_s": pd.Series([r[2] for r in rows], dtype=float),
        }
    )
    if categorical:
        df = df.astype({"workflow": "category", "step": "category"})
    where = np.array([r[3] for r in rows], dtype=bool)
    expected = _per_group_reference(df, ["workflow", "step"], quantiles, where)
    actual = grouped_quantiles(df, ["workflow", "step"], "latency_s", quantiles, where=where)
    assert list(expected.index) == list(actual.index)
    assert list(expected.columns) == list(actual.columns)
    np.testing.assert_array_equal(expected.to_numpy(dtype=float), actual.to_numpy(dtype=float))


def test_grouped_quantiles_of_large_groups_equal_np_quantile() -> None:
    """200,000 rows in 300 groups (16-bit codes), many ties: every figure equals np.quantile's per group."""
    rng = np.random.default_rng(7)
    n = 200_000
    df = pd.DataFrame(
        {
            "workflow": pd.Categorical(rng.integers(0, 3, n).astype(str)),
            "step": pd.Categorical(rng.integers(0, 100, n).astype(str)),
            "latency_s": np.round(rng.lognormal(size=n), 2),
        }
    )
    qs = [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]
    table = grouped_quantiles(df, ["workflow", "step"], "latency_s", qs)
    assert 300 == len(table)
    for (workflow, step), row in table.iloc[::37].iterrows():
        values = df.loc[(df["workflow"] == workflow) & (df["step"] == step), "latency_s"].to_numpy()
        assert [*np.quantile(values, qs), values.max(), values.mean(), len(values)] == list(row)


@pytest.mark.parametrize("quantiles", [[0.5, 1.5], [-0.1], [float("nan")]])
def test_grouped_quantiles_outside_zero_to_one_are_refused(quantiles: list[float]) -> None:
    """A quantile outside [0, 1] (or NaN) is a ValueError that names the range."""
    with pytest.raises(ValueError, match=r"quantiles must be numbers in \[0, 1\]"):
        grouped_quantiles(frame(True), ["workflow", "step"], "latency_s", quantiles)


def test_grouped_quantiles_with_256_and_65536_groups() -> None:
    """A key with exactly 256 (8-bit codes) or 65,536 (16-bit codes) levels groups every row right."""
    for groups in (256, 65_536):
        n = groups * 2
        df = pd.DataFrame({"step": pd.Categorical(np.arange(n) % groups), "latency_s": np.arange(n, dtype=float)})
        table = grouped_quantiles(df, ["step"], "latency_s", [0.5])
        assert list(range(groups)) == list(table.index)
        assert [2] * groups == list(table["count"])
        assert list(np.arange(groups) + groups / 2) == list(table["p50"])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=5),
            st.sampled_from([0.0, 0.25, 1.0, 3.5, -2.0, 1e300]),
            st.booleans(),
        ),
        max_size=60,
    ),
    workers=st.integers(min_value=2, max_value=5),
    masked=st.booleans(),
)
def test_sorted_groups_on_threads_equal_one_thread(
    rows: list[tuple[int, float, bool]], workers: int, masked: bool
) -> None:
    """Any codes, values and mask, cut into parts for 2-5 threads (parts may be empty, groups may
    be missing from a part): the ordered stretches, sizes and means are one thread's, to the bit."""
    codes = np.array([r[0] for r in rows], dtype=np.uint8)
    values = np.array([r[1] for r in rows], dtype=float)
    keep = np.array([r[2] for r in rows], dtype=bool) if masked else None
    expected = _sorted_groups(codes, values, 6, keep, workers=1)
    actual = _sorted_groups(codes, values, 6, keep, workers=workers)
    for one, many in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(one, many)
    assert (int(keep.sum()) if masked else len(rows)) == int(actual[1].sum())


def test_large_frames_are_shared_among_threads_with_the_same_table() -> None:
    """A frame of PARALLEL_ROWS rows or more is split among the cores (one thread below that), and
    its table equals the one computed on one thread to the bit."""
    import os

    cores = len(os.sched_getaffinity(0))
    assert 1 == workers_for(PARALLEL_ROWS - 1)
    assert min(cores, 8) == workers_for(PARALLEL_ROWS)
    rng = np.random.default_rng(3)
    n = PARALLEL_ROWS + 12_345
    codes = rng.integers(0, 30, n).astype(np.uint8)
    values = np.round(rng.lognormal(size=n), 3)
    keep = rng.random(n) > 0.1
    expected = _sorted_groups(codes, values, 30, keep, workers=1)
    actual = _sorted_groups(codes, values, 30, keep, workers=3)
    for one, many in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(one, many)
    df = pd.DataFrame({"step": pd.Categorical(codes), "latency_s": values})
    table = grouped_quantiles(df, ["step"], "latency_s", QS, where=keep)
    for code in (0, 17, 29):
        chosen = values[(codes == code) & keep]
        assert list(np.quantile(chosen, QS)) == list(table.loc[code, ["p50", "p90", "p99"]])
        assert chosen.mean() == table.loc[code, "mean"]


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, -3.0, 1e300, -1e-300]) | st.floats(-1e6, 1e6), max_size=40),
    picks=st.sets(st.integers(min_value=0, max_value=39)),
)
def test_selection_puts_each_position_s_order_statistic_in_place(values: list[float], picks: set[int]) -> None:
    """Any values (ties too) and any positions: after the selection each position holds the value
    a sort puts there, and the stretch still holds the same values."""
    stretch = np.array(values, dtype=float)
    positions = sorted(p for p in picks if p < len(values))
    select_in_place(stretch, positions)
    expected = np.sort(np.array(values, dtype=float))
    assert list(expected[positions]) == list(stretch[positions])
    assert list(expected) == sorted(stretch)


def test_sorted_groups_with_positions_on_threads_equal_one_thread() -> None:
    """With positions to select, the stretches two or three threads leave equal one thread's, and
    each position holds its group's order statistic."""
    rng = np.random.default_rng(11)
    n = 50_000
    codes = rng.integers(0, 7, n).astype(np.uint8)
    values = np.round(rng.lognormal(size=n), 2)

    def positions(size: int) -> list[int]:
        return sorted({0, size // 2, size // 2 + 1, size - 1} & set(range(size)))

    expected = _sorted_groups(codes, values, 7, workers=1, positions=positions)
    for workers in (2, 3):
        actual = _sorted_groups(codes, values, 7, workers=workers, positions=positions)
        for one, many in zip(expected, actual, strict=True):
            np.testing.assert_array_equal(one, many)
    ordered, counts, _ = expected
    start = 0
    for group, size in enumerate(counts.tolist()):
        chosen = positions(size)
        assert list(np.sort(values[codes == group])[chosen]) == list(ordered[start : start + size][chosen])
        start += size
