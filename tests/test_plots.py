"""Plots of step logs: each a matplotlib Figure (object API, no pyplot) that saves to PNG."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import wfkit as wf
from wfkit.logs._analysis import register_accessor
from wfkit.logs._plots import _COLORS
from wfkit.logs._steplog import steps_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RETRY = wf.RetryPolicy(max_retries=2, base_delay=0.02, jitter=0)


def assert_png(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=60)
    assert PNG_MAGIC == path.read_bytes()[:8]


def sleeper(delay: float) -> Any:
    async def step(state: Any) -> None:
        await asyncio.sleep(delay)

    return step


def serial_flow(name: str, delays: dict[str, float]) -> wf.Workflow:
    flow = wf.Workflow(name)
    for step, delay in delays.items():
        flow.step(sleeper(delay), name=step)
    flow.chain(*delays)
    return flow


def parallel_flow() -> wf.Workflow:
    """start -> (left, right) -> merge; left fails once (transient) and is retried."""
    flow = wf.Workflow("fan")
    flow.step(sleeper(0.005), name="start")

    @flow.step(retry=RETRY)
    async def left(state: Any, ctx: wf.StepContext) -> None:
        await asyncio.sleep(0.02)
        if ctx.attempt == 1:
            raise ConnectionError("flaky upstream")

    flow.step(sleeper(0.1), name="right")
    flow.step(sleeper(0.005), name="merge")
    flow.edge("start", "left", "right")
    flow.edge("left", "merge")
    flow.edge("right", "merge")
    return flow


def rectangles(ax: Any) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def lane_of(rect: Rectangle, labels: list[str]) -> str:
    return labels[round(rect.get_y() + rect.get_height() / 2)]


def test_latency_plot_has_log_histogram_and_ecdf_with_p50_p99(workspace: Path, tmp_path: Path) -> None:
    """plot_latency: two log-x axes (histogram, ECDF) and P50/P99 lines at each step's quantiles."""
    flow = serial_flow("latency", {"quick": 0.002, "slow": 0.02})
    for _ in range(12):
        flow.run({})
    frame = wf.steps()
    fig = frame.wf.plot_latency()

    assert isinstance(fig, Figure)
    hist, ecdf = fig.axes
    assert ("log", "log") == (hist.get_xscale(), ecdf.get_xscale())
    assert ("histogram", "ECDF") == (hist.get_title(), ecdf.get_title())
    assert {"quick", "slow"} == {t.get_text() for t in ecdf.get_legend().get_texts()} - {"P50", "P99"}
    assert {"P50", "P99"} <= {t.get_text() for t in ecdf.get_legend().get_texts()}
    vertical = [line for line in ecdf.get_lines() if len(line.get_xdata()) == 2]  # not the legend's samples
    marks = {
        style: sorted(line.get_xdata()[0] for line in vertical if line.get_linestyle() == style)
        for style in ("--", ":")
    }
    for style, q in (("--", 0.5), (":", 0.99)):
        expected = sorted(np.quantile(group["latency_s"], q) for _, group in frame.groupby("step", observed=True))
        assert pytest.approx(expected) == marks[style]
    assert len(hist.patches) >= 2  # one outline per step
    assert_png(fig, tmp_path / "latency.png")

    one = frame.wf.plot_latency(step="slow")
    assert "Step latency: slow" == one.get_suptitle()


def test_latency_plot_of_no_attempts_says_so(workspace: Path) -> None:
    """An empty log gives a figure that says there is nothing to plot."""
    wf.Workspace(create=True)
    fig = wf.steps().wf.plot_latency()
    assert ["no attempts to plot"] == [t.get_text() for t in fig.axes[0].texts]


def test_timeline_has_a_lane_per_step_with_parallel_bars_and_retries(workspace: Path, tmp_path: Path) -> None:
    """plot_timeline: one lane per step; the parallel branches overlap in time; the retried
    attempt and its backoff are drawn in the retry colour."""
    run = parallel_flow().run({})
    frame = wf.steps()
    fig = frame.wf.plot_timeline(run.run_id)

    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ["start", "left", "right", "merge"] == [
        labels[0],
        *sorted(labels[1:3], key=["left", "right"].index),
        labels[3],
    ]
    assert f"run {run.run_id}" == ax.get_title()
    bars = rectangles(ax)
    attempts = [r for r in bars if r.get_height() == pytest.approx(0.6)]
    assert 5 == len(attempts)  # left ran twice
    spans = {
        lane: (min(r.get_x() for r in rs), max(r.get_x() + r.get_width() for r in rs))
        for lane in labels
        for rs in [[r for r in attempts if lane_of(r, labels) == lane]]
    }
    (l0, l1), (r0, r1) = spans["left"], spans["right"]
    assert max(l0, r0) < min(l1, r1)  # the branches ran at the same time
    assert spans["start"][1] <= min(l0, r0) + 1e-3
    retry = to_rgba(_COLORS["retry"])
    retried = [r for r in bars if r.get_facecolor()[:3] == retry[:3]]
    assert {"left"} == {lane_of(r, labels) for r in retried}
    backoff = [r for r in retried if r.get_height() == pytest.approx(0.15)]
    assert [pytest.approx(0.02)] == [r.get_width() for r in backoff]  # the wait before the retry
    assert {"ok", "retry"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    assert_png(fig, tmp_path / "timeline.png")

    latest = frame.wf.plot_timeline()
    assert f"run {run.run_id}" == latest.axes[0].get_title()


def test_timeline_shows_the_approval_wait(workspace: Path, tmp_path: Path) -> None:
    """A gate decided by policy="approve" after the run waited: a hatched bar spans the wait."""
    flow = wf.Workflow("gated")
    flow.step(sleeper(0.005), name="draft")
    flow.step(sleeper(0.005), name="send", approval="a human signs off")
    flow.chain("draft", "send")
    run = flow.run({}, raise_on_error=False)
    assert "waiting_approval" == run.status
    time.sleep(0.3)
    flow.resume(run.run_id, policy="approve")
    frame = wf.steps()
    assert ["ok", "waiting_approval", "approved", "ok"] == list(frame["status"].astype(str))
    fig = frame.wf.plot_timeline(run.run_id)

    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ["draft", "send"] == labels
    waits = [r for r in rectangles(ax) if r.get_hatch() == "//"]
    assert ["send"] == [lane_of(r, labels) for r in waits]
    assert 0.3 <= waits[0].get_width() < 5
    assert {"waiting_approval", "approved"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    assert_png(fig, tmp_path / "approval.png")


def test_timeline_of_an_empty_log_says_so(workspace: Path) -> None:
    """No runs: the timeline figure says so."""
    wf.Workspace(create=True)
    fig = wf.steps().wf.plot_timeline()
    assert ["no runs to plot"] == [t.get_text() for t in fig.axes[0].texts]


def test_failure_breakdown_has_bars_per_kind_and_rates(workspace: Path, tmp_path: Path) -> None:
    """plot_failures: a bar per step stacked by error kind, the failure rate written beside it
    (on the log read by pandas directly: see test_analysis for the categorical frame)."""
    flow = wf.Workflow("failing")

    @flow.step(retry=RETRY)
    def fetch(state: Any, ctx: wf.StepContext) -> None:
        if ctx.attempt == 1 and state["i"] % 2 == 0:
            raise ConnectionError("reset")

    @flow.step
    def check(state: Any) -> None:
        if state["i"] == 3:
            raise PermissionError("denied")

    flow.chain("fetch", "check")
    for i in range(4):
        flow.run({"i": i}, raise_on_error=False)
    wf.steps()
    register_accessor()
    frame = pd.read_parquet(steps_dir(workspace))
    fig = frame.wf.plot_failures()

    (ax,) = fig.axes
    assert "Failures by step and error kind" == ax.get_title()
    assert {"transient", "permanent", "unknown"} == {t.get_text() for t in ax.get_legend().get_texts()}
    assert ["check", "fetch"] == [t.get_text() for t in ax.get_yticklabels()]
    widths = {(lane_of(r, ["check", "fetch"]), tuple(r.get_facecolor())): r.get_width() for r in rectangles(ax)}
    assert 2 == widths[("fetch", to_rgba("#e0a100"))]  # transient
    assert 1 == widths[("check", to_rgba("#8b1e3f"))]  # permanent
    assert ["  25.0%", "  33.3%"] == [t.get_text() for t in ax.texts]
    assert_png(fig, tmp_path / "failures.png")


def test_compare_shows_two_panels_with_the_shift(workspace: Path, tmp_path: Path) -> None:
    """compare: P50 and P99 panels, log-scaled, each step's shift of the candidate annotated."""
    baseline = serial_flow("baseline", {"plan": 0.002, "act": 0.004})
    candidate = serial_flow("candidate", {"plan": 0.02, "act": 0.04})
    for _ in range(6):
        baseline.run({})
        candidate.run({})
    base, cand = wf.steps(workflow="baseline"), wf.steps(workflow="candidate")
    fig = base.wf.compare(cand, labels=("v1", "v2"))

    p50, p99 = fig.axes
    assert ("P50", "P99") == (p50.get_title(), p99.get_title())
    assert ("log", "log") == (p50.get_xscale(), p99.get_xscale())
    assert "v2 vs v1" == fig.get_suptitle()
    for ax, col in ((p50, "p50"), (p99, "p99")):
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert {"plan", "act"} == set(labels)
        expected = [
            f"  {(cand.wf.latency().loc[s, col] - base.wf.latency().loc[s, col]) / base.wf.latency().loc[s, col]:+.0%}"
            for s in labels
        ]
        assert expected == [t.get_text() for t in ax.texts]
        assert all(t.get_text().startswith("  +") for t in ax.texts)
        assert 4 == len(rectangles(ax))  # two bars per step
    assert ["v1", "v2"] == [t.get_text() for t in p50.get_legend().get_texts()]
    assert_png(fig, tmp_path / "compare.png")
