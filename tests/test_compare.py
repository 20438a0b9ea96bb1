"""df.wf.compare(): latency quantiles of two sets of runs per (workflow, step), their ratio and a
bootstrap interval on the difference; clear errors for what cannot be compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_plots import compare_frames, serial_flow

import wfkit as wf


def test_compare_is_a_table_of_quantiles_ratios_and_intervals(workspace: Path) -> None:
    """compare(): per (workflow, step), P50 and P99 on both sides, their ratio and a bootstrap
    interval on the difference that holds the difference."""
    base, cand = compare_frames(workspace)
    table = base.wf.compare(cand, labels=("v1", "v2"))
    assert [("svc", "act"), ("svc", "plan")] == list(table.index)
    assert ["n_v1", "n_v2", "p50_v1", "p50_v2", "p50_ratio", "p50_diff", "p50_diff_low", "p50_diff_high"] == list(
        table.columns[:8]
    )
    for (_, step), row in table.iterrows():
        a = base[base["step"] == step]["latency_s"]
        b = cand[cand["step"] == step]["latency_s"]
        assert (10, 10) == (row["n_v1"], row["n_v2"])
        assert pytest.approx(np.quantile(a, 0.99)) == row["p99_v1"]
        assert pytest.approx(np.quantile(b, 0.5) / np.quantile(a, 0.5)) == row["p50_ratio"]
        assert row["p50_diff_low"] <= row["p50_diff"] <= row["p50_diff_high"]
        assert 0 < row["p50_diff_low"]  # ten times slower is not noise
    same = base.wf.compare(base)
    assert (same["p50_diff_low"] <= 0).all()
    assert (same["p50_diff_high"] >= 0).all()


def test_compare_of_two_workflows_matches_steps_when_asked(workspace: Path) -> None:
    """Two different workflows share no (workflow, step): compare says so, and by="step" matches steps."""
    for name in ("one", "two"):
        flow = serial_flow(name, {"plan": 0.001})
        for _ in range(3):
            flow.run({})
    one, two = wf.steps(workflow="one"), wf.steps(workflow="two")
    with pytest.raises(ValueError, match='by="step"'):
        one.wf.compare(two)
    assert ["plan"] == list(one.wf.compare(two, by="step").index)


def test_compare_refuses_settings_that_make_no_interval(workspace: Path) -> None:
    """Equal labels, a level outside (0, 1) or too few resamples are errors saying what is allowed."""
    base, cand = compare_frames(workspace)
    with pytest.raises(ValueError, match="the two labels must differ"):
        base.wf.compare(cand, labels=("x", "x"))
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        base.wf.compare(cand, level=1.5)
    with pytest.raises(ValueError, match="resamples must be >= 100"):
        base.wf.compare(cand, resamples=10)


def test_an_interval_needs_values_beyond_its_quantile() -> None:
    """A quantile's interval is reported only with 5 values a side beyond it (P50: 10, P99: 500):
    two sets of 6 and 5 calls gave P99 a confident [-47 ms, -0.2 ms] drawn as beyond noise. The
    values, ratio and difference are still there; the interval is NaN, and the table says why."""
    import pandas as pd

    rng = np.random.default_rng(7)

    def calls(n: int, scale: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "workflow": "w",
                "step": "s",
                "attempt": 1,
                "status": "ok",
                "latency_s": rng.exponential(scale, n),
                "map_index": None,
            }
        )

    few = calls(6, 0.010).wf.compare(calls(5, 0.002))
    row = few.iloc[0]
    assert {"p50": 10, "p99": 500} == few.attrs["min_samples"]
    assert row["p99_ratio"] > 0
    assert row["p50_diff"] < 0
    assert np.isnan([row["p50_diff_low"], row["p50_diff_high"], row["p99_diff_low"], row["p99_diff_high"]]).all()
    many = calls(600, 0.010).wf.compare(calls(600, 0.002), quantiles=(0.5, 0.9, 0.99))
    assert not many.filter(like="_diff_").isna().any().any()
    assert many.iloc[0]["p99_diff_high"] < 0  # five times faster, on 600 calls a side: beyond noise
