"""The demo's summary is computed from real runs."""

from __future__ import annotations

import io

from wfkit.cli._demo import _quantile, run_demo


def test_quantile_of_one_value_and_of_many() -> None:
    """Quantiles handle a single sample and interpolate otherwise."""
    assert _quantile([5.0], 0.99) == 5.0
    assert _quantile([float(i) for i in range(1, 101)], 0.5) == 50.5


def test_demo_reports_retries_from_flaky_searches() -> None:
    """With flaky searches the summary shows retries, and every run still succeeds."""
    out = io.StringIO()
    assert run_demo(runs=40, seed=7, out=out) == 0
    lines = out.getvalue().splitlines()
    rows = {
        line.split()[0]: line.split() for line in lines if line.startswith(("code_search", "web_search", "data_query"))
    }
    assert sum(int(r[2]) for r in rows.values()) > 0, out.getvalue()
