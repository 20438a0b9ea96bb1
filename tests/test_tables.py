"""The summary tables in pandas: grouped quantiles equal pandas' own, on categorical and plain keys,
with missing keys and NaN values left out; quantile labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wfkit.logs._tables import _pandas_quantiles, grouped_quantiles, keys_of, quantile_label

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
    assert ["run_id"] == keys_of(frame(False), "run_id")
    assert ["p50", "p99", "p99.9", "p25"] == [quantile_label(q) for q in (0.5, 0.99, 0.999, 0.25)]
