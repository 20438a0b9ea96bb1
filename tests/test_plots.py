"""Plots of step logs: drawn through pyplot (so they show inline) or into a given ax=/fig=, returning
Axes or Facets, titled with workflow, step and unit; and shown as images by a real notebook kernel."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import wfkit as wf
from wfkit.logs._plots import _COLORS, Facets
from wfkit.logs._register import register_accessor
from wfkit.logs._steplog import steps_dir
from wfkit.logs._units import format_seconds

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RETRY = wf.RetryPolicy(max_retries=2, base_delay=0.02, jitter=0)


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    """pyplot keeps every figure it made: close them after each test."""
    yield
    plt.close("all")


def assert_png(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=60)
    assert PNG_MAGIC == path.read_bytes()[:8]


def assert_nothing_clipped(fig: Any) -> None:
    """Everything drawn (labels, titles, legends, notes) lies inside the figure."""
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    page = fig.bbox_inches
    tolerance = 0.02  # inches
    assert page.x0 - tolerance <= drawn.x0, (drawn, page)
    assert drawn.x1 <= page.x1 + tolerance, (drawn, page)
    assert page.y0 - tolerance <= drawn.y0, (drawn, page)
    assert drawn.y1 <= page.y1 + tolerance, (drawn, page)


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


def failing_flow() -> wf.Workflow:
    """fetch fails transiently on the first attempt of even inputs; check fails for good on 3."""
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
    return flow


def test_facets_say_how_many_panels_in_words(workspace: Path) -> None:
    """The facets' repr counts its panels as people write them: "1 panel", "2 panels"."""
    flow = serial_flow("panels", {"quick": 0.001, "slow": 0.002})
    for _ in range(3):
        flow.run({})
    frame = wf.steps()
    assert "<wfkit Facets: 1 panel>" == repr(frame[frame["step"] == "quick"].wf.plot_latency())
    assert "<wfkit Facets: 2 panels>" == repr(frame.wf.plot_latency())


def test_latency_plot_has_a_panel_per_workflow_and_step(workspace: Path, tmp_path: Path) -> None:
    """plot_latency: a pyplot figure with one log-x panel per (workflow, step), sharing the axis,
    P50 and P99 marked at each step's quantiles of successful attempts, titles naming both."""
    flow = serial_flow("latency", {"quick": 0.002, "slow": 0.02})
    other = serial_flow("other", {"quick": 0.004})
    for _ in range(12):
        flow.run({})
        other.run({})
    frame = wf.steps()
    facets = frame.wf.plot_latency()

    assert isinstance(facets, Facets)
    assert facets.figure.number in plt.get_fignums()  # pyplot manages it: Jupyter shows it inline
    assert [("latency", "quick"), ("latency", "slow"), ("other", "quick")] == list(facets.axes)
    for (workflow, step), ax in facets.axes.items():
        assert f"{workflow} · {step}" == ax.get_title()
        assert "log" == ax.get_xscale()
        values = frame[(frame["workflow"] == workflow) & (frame["step"] == step)]["latency_s"]
        vertical = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
        marks = {line.get_linestyle(): line.get_xdata()[0] for line in vertical}
        assert pytest.approx(np.quantile(values, 0.5)) == marks["--"]
        assert pytest.approx(np.quantile(values, 0.99)) == marks[":"]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert f"ok (n={len(values)})" == legend[0]
        assert ["P50 ", "P99 "] == [text[:4] for text in legend[1:]]  # with the value and its unit
    axes = list(facets.axes.values())
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[2])
    assert "Step latency, successful attempts" == facets.figure.get_suptitle()
    assert "fraction ≤ latency" == axes[0].get_ylabel()
    assert_nothing_clipped(facets.figure)
    assert_png(facets.figure, tmp_path / "latency.png")

    one = frame.wf.plot_latency(workflow="latency", steps=["slow"], kind="hist")
    assert [("latency", "slow")] == list(one.axes)
    assert "Step latency, successful attempts: latency" == one.figure.get_suptitle()


def assert_tick_labels_apart(ax: Axes) -> None:
    """No two labelled ticks of the x axis touch."""
    renderer = ax.figure.canvas.get_renderer()
    boxes = sorted(
        (label.get_window_extent(renderer) for label in ax.get_xticklabels() if label.get_text()),
        key=lambda box: box.x0,
    )
    assert len(boxes) >= 2
    for left, right in itertools.pairwise(boxes):
        assert left.x1 < right.x0, [label.get_text() for label in ax.get_xticklabels()]


def test_latency_panels_side_by_side_keep_their_tick_labels_apart(workspace: Path) -> None:
    """Three panels of latencies from 10 ms to 3 s (notebook 06's spread) at the default size: the
    shared log axis labels fewer ticks per decade rather than letting "50 ms" run into "100 ms"."""
    flow = serial_flow("spread", {"draft": 0.0, "critique": 0.0, "revise": 0.0})
    for _ in range(20):
        flow.run({})
    frame = wf.steps()
    frame["latency_s"] = np.geomspace(0.01, 3.0, len(frame))  # the long tail of a hosted model
    facets = frame.wf.plot_latency()
    facets.figure.canvas.draw()
    assert 3 == len(facets.axes)
    for ax in facets.axes.values():
        assert_tick_labels_apart(ax)
    assert_nothing_clipped(facets.figure)


def seconds_of(label: str) -> float:
    """A tick label ("125 ms", "1.25 s", "500 µs", "1 min 30 s", "0 s") as seconds."""
    units = {"µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    words = label.split()
    return sum(float(number) * units[unit] for number, unit in zip(words[::2], words[1::2], strict=True))


def assert_tick_labels_true(ax: Axes) -> list[str]:
    """Each labelled major tick of the x axis in view reads its own position; the labels."""
    low, high = sorted(ax.get_xlim())
    ticks = [t for t in ax.xaxis.get_major_ticks() if low <= t.get_loc() <= high and t.label1.get_text()]
    assert [] == [
        (t.get_loc(), t.label1.get_text())
        for t in ticks
        if not np.isclose(seconds_of(t.label1.get_text()), t.get_loc(), rtol=1e-9, atol=1e-12)
    ]
    return [t.label1.get_text() for t in ticks]


def test_latency_panels_of_a_narrow_range_keep_their_tick_labels_apart(workspace: Path) -> None:
    """Latencies from 4.5 to 14 ms in two panels: fewer ticks per decade where the last of a decade
    would touch ("9 ms10 ms"); and latencies within 0.15 ms of each other, where no decade's ticks
    fall, get round ticks, each label true to its position."""
    flow = serial_flow("narrow", {"a": 0.0, "b": 0.0})
    for _ in range(20):
        flow.run({})
    frame = wf.steps()
    frame["latency_s"] = np.geomspace(0.0045, 0.014, len(frame))
    facets = frame.wf.plot_latency()
    facets.figure.canvas.draw()
    for ax in facets.axes.values():
        assert_tick_labels_apart(ax)
        assert_tick_labels_true(ax)

    frame["latency_s"] = np.linspace(0.05025, 0.0504, len(frame))
    facets = frame.wf.plot_latency(steps=["a"])
    facets.figure.canvas.draw()
    (ax,) = facets.axes.values()
    assert_tick_labels_apart(ax)
    labels = assert_tick_labels_true(ax)
    assert len(set(labels)) == len(labels) >= 3


def test_timeline_tick_labels_are_true_to_their_positions(workspace: Path) -> None:
    """A timeline of a 220 ms run: ticks every 25 ms read "125 ms" and "175 ms", not "120 ms" and
    "180 ms", also after the caller sets other limits."""
    flow = serial_flow("ticks", {"one": 0.1, "two": 0.11})
    run = flow.run({})
    ax = wf.steps().wf.plot_timeline(run.run_id)
    ax.set_xlim(0, 0.22)
    ax.figure.canvas.draw()
    labels = assert_tick_labels_true(ax)
    assert {"125 ms", "175 ms"} <= set(labels)
    ax.set_xlim(0, 1.3)
    ax.figure.canvas.draw()
    assert len(assert_tick_labels_true(ax)) >= 3


def test_latency_plot_shows_failures_only_when_asked(workspace: Path) -> None:
    """Failed attempts stay out of the latency plot unless failures=True, then labelled apart."""
    flow = failing_flow()
    for i in range(4):
        flow.run({"i": i}, raise_on_error=False)
    frame = wf.steps()
    default = frame.wf.plot_latency()
    legend = [t.get_text() for t in default.axes[("failing", "fetch")].get_legend().get_texts()]
    assert ["ok (n=4)"] == legend[:1]
    assert not any(text.startswith("failed") for text in legend)
    both = frame.wf.plot_latency(failures=True)
    legend = [t.get_text() for t in both.axes[("failing", "fetch")].get_legend().get_texts()]
    assert ["ok (n=4)", "failed (n=2)"] == legend[:2]
    assert "Step latency, successful and failed attempts" == both.figure.get_suptitle()


def test_latency_ecdf_climbs_from_zero_so_a_single_attempt_shows(workspace: Path) -> None:
    """Each ECDF starts at 0 below its fastest attempt and ends at 1: a curve of one attempt (the
    one failure of a step) is a rise from 0 to 1, not a single point that draws nothing while the
    legend counts it."""
    flow = failing_flow()
    for i in range(4):
        flow.run({"i": i}, raise_on_error=False)
    facets = wf.steps().wf.plot_latency(failures=True)
    ax = facets.axes[("failing", "check")]
    curves = {line.get_label().split(" ")[0]: line for line in ax.get_lines() if line.get_label()[:2] in ("ok", "fa")}
    assert {"ok", "failed"} == set(curves)
    failed = wf.steps(step="check", status="failed")["latency_s"].to_numpy()
    assert 1 == len(failed)
    xs, ys = curves["failed"].get_xdata(), curves["failed"].get_ydata()
    assert [0.0, 1.0] == [ys[0], ys[-1]]
    assert pytest.approx([failed[0], failed[0]]) == [xs[0], xs[-1]]  # a vertical rise at that latency
    ok_ys = curves["ok"].get_ydata()
    assert [0.0, 1.0] == [ok_ys[0], ok_ys[-1]]
    assert 3 + 1 == len(ok_ys)  # three successes, and the start at 0


@pytest.mark.parametrize("latency", [1e-7, 1e-6, 0.0472264676880295, 0.172023972479360, 0.285851417968447])
def test_latency_plot_of_one_attempt_lays_out_around_it(latency: float) -> None:
    """A step with one attempt (`wfkit report` of one run): the panel's axis spans a decade around
    its latency, and the figure is laid out and drawn without a warning. At these values matplotlib
    widened the axis of no width to one it still could not lay out (a division by zero: the report
    of a single run failed where warnings are errors), or warned that it had to widen it."""
    import io

    frame = pd.DataFrame(
        {"workflow": ["single"], "step": ["only"], "attempt": [1], "status": ["ok"], "latency_s": [latency]}
    ).assign(map_index=pd.array([None], dtype="Int64"))
    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = frame.wf.plot_latency(fig=fig).axes[("single", "only")]
    fig.savefig(io.BytesIO(), format="png")
    low, high = ax.get_xlim()
    assert low < latency < high
    assert high / low == pytest.approx(9)


def test_latency_plot_of_long_names_keeps_its_titles_inside_and_apart() -> None:
    """A workflow and steps with long names (as the report draws them, a figure of the object API):
    the suptitle ran past the figure's edges (the report's image showed "p latency, ... with-very-long-name")
    and each panel's "workflow · step" title ran into its neighbour's. They are broken into lines that
    stay inside the figure and apart; short titles are kept whole, on one line."""
    workflow = "customer-support-escalation-triage-with-very-long-name-v2"
    steps = [
        "classify_incoming_customer_message_with_large_language_model",
        "summarise",
        "route_to_a_human_agent_queue",
    ]
    frame = pd.DataFrame(
        {
            "workflow": workflow,
            "step": [s for s in steps for _ in range(3)],
            "attempt": 1,
            "status": "ok",
            "latency_s": [0.01, 0.02, 0.03] * len(steps),
        }
    ).assign(map_index=pd.array([None] * 3 * len(steps), dtype="Int64"))
    fig = Figure(figsize=(4.2 * 3, 2.6 + 0.8), layout="constrained")
    FigureCanvasAgg(fig)  # as savefig gives the report's figure one
    facets = frame.wf.plot_latency(workflow=workflow, fig=fig)
    assert_nothing_clipped(fig)
    renderer = fig.canvas.get_renderer()
    titles = [facets.axes[(workflow, step)].title for step in steps]
    boxes = sorted((title.get_window_extent(renderer) for title in titles), key=lambda box: box.x0)
    for left, right in itertools.pairwise(boxes):
        assert left.x1 <= right.x0, (left, right)
    assert all(steps[i] in title.get_text().replace("\n", "") for i, title in enumerate(titles))
    short = pd.DataFrame(
        {"workflow": "qs", "step": ["plan"], "attempt": [1], "status": ["ok"], "latency_s": [0.01]}
    ).assign(map_index=pd.array([None], dtype="Int64"))
    small = Figure(figsize=(6.4, 3.4), layout="constrained")
    assert "qs · plan" == short.wf.plot_latency(fig=small).axes[("qs", "plan")].get_title()


def test_latency_plot_draws_into_a_given_figure(workspace: Path) -> None:
    """fig= (a Figure of the object API) is drawn into, and pyplot makes no figure of its own."""
    serial_flow("into", {"a": 0.001, "b": 0.001}).run({})
    before = plt.get_fignums()
    fig = Figure()
    facets = wf.steps().wf.plot_latency(fig=fig, col_wrap=1)
    assert facets.figure is fig
    assert before == plt.get_fignums()
    assert 2 == len([ax for ax in fig.axes if ax.get_visible()])


def test_latency_plot_rejects_an_unknown_kind(workspace: Path) -> None:
    """kind= other than ecdf/hist is an error naming both."""
    serial_flow("kinds", {"a": 0.001}).run({})
    with pytest.raises(ValueError, match="kind must be 'ecdf' or 'hist'"):
        wf.steps().wf.plot_latency(kind="box")


def test_latency_plot_of_no_attempts_says_so(workspace: Path) -> None:
    """An empty log gives a figure that says there is nothing to plot."""
    wf.Workspace(create=True)
    facets = wf.steps().wf.plot_latency()
    assert {} == facets.axes
    assert ["no successful attempts to plot"] == [t.get_text() for t in facets.figure.axes[0].texts]


def test_timeline_has_a_lane_per_step_with_parallel_bars_and_retries(workspace: Path, tmp_path: Path) -> None:
    """plot_timeline: one lane per step; the parallel branches overlap in time; the retried
    attempt and its backoff are drawn in the retry colour, the backoff named in the legend; the
    title names workflow and run."""
    run = parallel_flow().run({})
    frame = wf.steps()
    ax = frame.wf.plot_timeline(run.run_id)

    assert isinstance(ax, Axes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ["start", "left", "right", "merge"] == [
        labels[0],
        *sorted(labels[1:3], key=["left", "right"].index),
        labels[3],
    ]
    assert ax.get_title().startswith(f"fan · run {run.run_id} (")
    assert ax.get_title().endswith(" ms)")
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
    # The thin bar is labelled as the wait it is: in the attempt's colour alone it read as the attempt.
    assert ["ok", "retry", "backoff wait"] == [t.get_text() for t in ax.get_legend().get_texts()]
    assert "time since the run started" == ax.get_xlabel()
    assert_nothing_clipped(ax.figure)
    assert_png(ax.figure, tmp_path / "timeline.png")

    latest = frame.wf.plot_timeline()
    assert latest.get_title().startswith(f"fan · run {run.run_id}")


def test_timeline_of_a_run_of_microseconds_spans_the_axis(workspace: Path) -> None:
    """A run of a plain function takes microseconds: the axis spans the run, so its bar is seen
    (it spanned at least 1 ms, and a 4 µs bar was a sliver at the left edge), its ticks in µs."""
    flow = wf.Workflow("instant")
    flow.step(lambda state: {"y": 1}, name="only")
    run = flow.run({})
    frame = wf.steps()
    total = (frame["ended_at"].max() - frame["started_at"].min()).total_seconds()
    assert total < 1e-4  # the premise: a run far shorter than a millisecond
    ax = frame.wf.plot_timeline(run.run_id)
    (bar,) = [r for r in rectangles(ax) if r.get_height() == pytest.approx(0.6)]
    low, high = ax.get_xlim()
    assert 0 == low
    assert bar.get_width() / high > 0.5
    ax.figure.canvas.draw()
    assert all(t.get_text().endswith(("µs", "0 s")) for t in ax.get_xticklabels() if t.get_text())


def test_timeline_spans_a_bar_whose_timestamps_read_no_time(workspace: Path) -> None:
    """Timestamps are kept to the microsecond, so a step of 1 us can read as ending where it started:
    the axis then fell back to an arbitrary millisecond and the bar was a sliver at its left edge (a
    flaky failure of the test above). The axis spans the bars drawn as well as the ends recorded."""
    flow = wf.Workflow("instant")
    flow.step(lambda state: {"y": 1}, name="only")
    run = flow.run({})
    frame = wf.steps()
    frame["ended_at"] = frame["started_at"]
    frame["latency_s"] = 1e-6
    ax = frame.wf.plot_timeline(run.run_id)
    (bar,) = [r for r in rectangles(ax) if r.get_height() == pytest.approx(0.6)]
    assert bar.get_width() / ax.get_xlim()[1] > 0.5


def test_timeline_draws_into_a_given_axes(workspace: Path) -> None:
    """ax= is drawn into and returned; pyplot makes no figure."""
    run = serial_flow("given", {"a": 0.001}).run({})
    ax = Figure().subplots()
    before = plt.get_fignums()
    assert ax is wf.steps().wf.plot_timeline(run.run_id, ax=ax)
    assert before == plt.get_fignums()


def test_timeline_shows_the_approval_wait(workspace: Path, tmp_path: Path) -> None:
    """A gate decided by policy="approve" after the run waited: a hatched bar spans the wait."""
    flow = wf.Workflow("gated")
    flow.step(sleeper(0.005), name="draft")
    flow.step(sleeper(0.005), name="send", approval="a human signs off")
    flow.chain("draft", "send")
    began = time.time()
    run = flow.run({}, raise_on_error=False)
    assert "waiting_approval" == run.status
    time.sleep(0.3)
    flow.resume(run.run_id, policy="approve")
    decided = time.time()
    frame = wf.steps()
    assert ["ok", "waiting_approval", "approved", "ok"] == list(frame["status"].astype(str))
    ax = frame.wf.plot_timeline(run.run_id)

    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ["draft", "send"] == labels
    waits = [r for r in rectangles(ax) if r.get_hatch() == "//"]
    assert ["send"] == [lane_of(r, labels) for r in waits]
    assert 0.3 <= waits[0].get_width() <= decided - began  # the wait, within the run and its resume
    assert {"waiting_approval", "approved"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    assert_png(ax.figure, tmp_path / "approval.png")


def test_timeline_of_a_resumed_run_says_the_time_it_ran(workspace: Path, tmp_path: Path) -> None:
    """A run that failed, lay stopped 0.6 s and was resumed: the timeline's title gave its span
    ("(0.6 s)") as its length, where runs() says it ran a few ms (duration_s; the report picks the
    slowest run by it). The title now says the time it ran and the time stopped, and the stopped
    stretch is shaded across the lanes."""
    broken = {"yes": True}
    flow = wf.Workflow("resumed")

    @flow.step
    def fetch(state: Any) -> dict[str, Any]:
        time.sleep(0.005)
        return {"doc": 1}

    @flow.step
    def parse(state: Any) -> dict[str, Any]:
        if broken["yes"]:
            raise RuntimeError("parser down")
        time.sleep(0.005)
        return {"parsed": True}

    flow.chain("fetch", "parse")
    run = flow.run({}, raise_on_error=False)
    assert "failed" == run.status
    time.sleep(0.6)
    broken["yes"] = False
    assert "succeeded" == flow.resume(run.run_id).status
    frame = wf.steps()
    ((ran, span),) = wf.StepLog().runs()[["duration_s", "span_s"]].itertuples(index=False)
    away = span - ran
    assert 0.55 <= away < span
    ax = frame.wf.plot_timeline(run.run_id)
    assert 0.6 < ax.get_xlim()[1]  # the axis is still wall-clock time since the run started
    said = f"resumed · run {run.run_id} (ran {format_seconds(ran)}; {format_seconds(away)} stopped before 1 resume)"
    assert said == ax.get_title()
    (shade,) = [p for p in ax.patches if p.get_hatch() == ".."]
    assert shade.get_x() >= 0.005  # after fetch and parse's failed attempt
    assert shade.get_width() == pytest.approx(away, abs=1e-6)
    assert "stopped (then resumed)" in {t.get_text() for t in ax.get_legend().get_texts()}
    assert_png(ax.figure, tmp_path / "resumed.png")
    plain = serial_flow("straight", {"a": 0.001}).run({})
    assert "stopped" not in wf.steps(workflow="straight").wf.plot_timeline(plain.run_id).get_title()


def test_timeline_of_an_empty_log_says_so(workspace: Path) -> None:
    """No runs: the timeline says so."""
    wf.Workspace(create=True)
    ax = wf.steps().wf.plot_timeline()
    assert ["no runs to plot"] == [t.get_text() for t in ax.texts]


def test_failure_breakdown_has_bars_per_kind_and_rates(workspace: Path, tmp_path: Path) -> None:
    """plot_failures: a bar per (workflow, step) stacked by error kind, the failure rate of how many
    attempts written beside it (on the log read by pandas directly)."""
    flow = failing_flow()
    for i in range(4):
        flow.run({"i": i}, raise_on_error=False)
    wf.steps()
    register_accessor()
    frame = pd.read_parquet(steps_dir(workspace))
    ax = frame.wf.plot_failures()

    assert "Failures by step and error kind" == ax.get_title()
    assert {"transient", "permanent", "unknown"} == {t.get_text() for t in ax.get_legend().get_texts()}
    names = ["failing · fetch", "failing · check"]  # in the order a run meets them
    assert names == [t.get_text() for t in ax.get_yticklabels()]
    widths = {(lane_of(r, names), tuple(r.get_facecolor())): r.get_width() for r in rectangles(ax)}
    assert 2 == widths[("failing · fetch", to_rgba("#e0a100"))]  # transient
    assert 1 == widths[("failing · check", to_rgba("#8b1e3f"))]  # permanent
    assert ["33.3% of 6", "25.0% of 4"] == [t.get_text() for t in ax.texts]
    assert_nothing_clipped(ax.figure)
    assert_png(ax.figure, tmp_path / "failures.png")


def compare_frames(workspace: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two periods of one workflow: the second ten times slower (10 runs each: enough values for a
    P50's interval, too few for a P99's)."""
    fast = serial_flow("svc", {"plan": 0.002, "act": 0.004})
    for _ in range(10):
        fast.run({})
    cut = pd.Timestamp.now(tz="UTC")
    slow = serial_flow("svc", {"plan": 0.02, "act": 0.04})
    for _ in range(10):
        slow.run({})
    return wf.steps(until=cut.to_pydatetime()), wf.steps(since=cut.to_pydatetime())


def test_plot_compare_is_a_dumbbell_on_one_log_axis(workspace: Path, tmp_path: Path) -> None:
    """plot_compare: one Axes, a row per (workflow, step) and quantile, two dots joined by a line,
    log-scaled, the ratio and interval written beside; takes ax=."""
    base, cand = compare_frames(workspace)
    ax = base.wf.plot_compare(cand, labels=("v1", "v2"))
    assert isinstance(ax, Axes)
    assert "log" == ax.get_xscale()
    assert ["svc · act  P50", "svc · act  P99", "svc · plan  P50", "svc · plan  P99"] == [
        t.get_text() for t in ax.get_yticklabels()
    ]
    assert ["v1", "v2"] == [t.get_text() for t in ax.get_legend().get_texts()]
    table = base.wf.compare(cand, labels=("v1", "v2"))
    notes = [t.get_text() for t in ax.texts]
    assert 4 == len(notes)
    assert notes[0].startswith(f"{table.loc[('svc', 'act'), 'p50_ratio']:.2f}x")
    assert "[" in notes[0]  # P50 of 10 values a side: an interval
    assert notes[1].endswith("(no interval: n < 500)")  # P99 of 10: none
    assert ax.get_title().startswith("v2 vs v1")
    assert_nothing_clipped(ax.figure)
    assert_tick_labels_apart(ax)  # at the width the notes beside leave it, not the width it had first
    assert_tick_labels_true(ax)
    assert_png(ax.figure, tmp_path / "compare.png")
    given = Figure().subplots()
    assert given is base.wf.plot_compare(cand, ax=given)


def test_every_plot_shows_as_an_image_in_an_executed_notebook(workspace: Path, tmp_path: Path) -> None:
    """Executed by a real kernel (nbclient, as papermill does), each plot cell has an image/png output."""
    from nbclient import NotebookClient

    flow = failing_flow()
    for i in range(6):
        flow.run({"i": i}, raise_on_error=False)
    wf.steps()
    plots = [
        "df.wf.plot_latency()",
        "df.wf.plot_latency(failures=True, kind='hist')",
        "df.wf.plot_timeline()",
        "df.wf.plot_failures()",
        "df.wf.plot_compare(df)",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import wfkit as wf\ndf = wf.steps({str(workspace)!r})")]
    nb.cells += [nbformat.v4.new_code_cell(code) for code in plots]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [sum("image/png" in out.get("data", {}) for out in cell.outputs) for cell in nb.cells[1:]]
    assert [1] * len(plots) == images


def test_timeline_gives_map_items_lanes_of_their_own(workspace: Path) -> None:
    """A map of 4 items, the third failing once: in the step's one lane the items hid one another
    (the longest on top) and the retried attempt was not to be seen. Each item gets a lane under the
    map's own (packed: items that never overlap would share one), the retry in the retry colour."""
    flow = wf.Workflow("mapped")
    tried: dict[int, int] = {}

    @flow.step(writes=["items"])
    def load(state: Any) -> dict[str, Any]:
        return {"items": [10, 20, 30, 40]}

    @flow.map(over="items", into="out", retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, jitter=0))
    async def work(item: int, ctx: Any) -> int:
        tried[item] = tried.get(item, 0) + 1
        await asyncio.sleep(item / 1000)
        if item == 30 and tried[item] == 1:
            raise TimeoutError("once")
        return item

    flow.edge("load", "work")
    run = flow.run({})
    ax = wf.steps().wf.plot_timeline(run.run_id)

    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ["load", "work", "work [0]", "work [1]", "work [2]", "work [3]"] == labels
    attempts = [r for r in rectangles(ax) if r.get_height() == pytest.approx(0.6)]
    retry = to_rgba(_COLORS["retry"])
    retried = [r for r in attempts if r.get_facecolor()[:3] == retry[:3]]
    assert ["work [2]"] == [lane_of(r, labels) for r in retried]
    # No two bars of an item lane overlap: each is seen whole.
    for lane in labels[2:]:
        bars = sorted((r.get_x(), r.get_x() + r.get_width()) for r in attempts if lane_of(r, labels) == lane)
        assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(bars)), (lane, bars)
    assert 2 == sum(lane_of(r, labels) == "work [2]" for r in attempts)
