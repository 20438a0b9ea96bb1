"""Timeout advice from the step log: timeouts at a quantile with a margin, a run deadline, and the
Monte Carlo prediction of timeout and failure rates, checked against real runs."""

from __future__ import annotations

import asyncio
import gc
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import wfkit as wf
from wfkit.logs._units import format_seconds

STEPS = ("plan", "search", "draft", "review")
MEDIAN_S, SIGMA = 0.02, 0.6  # each attempt sleeps a lognormal latency drawn with ctx.rng
# |predicted - observed| for each rate, absolute: the sampling error of 400 calibration runs against
# 600 check runs (some 0.025 for a 20% rate; fixed by the seeds, -0.04 for `plan` here) plus the
# timing noise left after interleaving (about 0.01), plus a bias of the first step (about -0.03):
# runs whose rows share a group commit start together and their first attempts wake together, so
# a first attempt meets more event-loop lag than a retry does, while the prediction draws every
# attempt from calibration runs' first attempts.
TOLERANCE = 0.1


def lognormal_flow(name: str, timeouts: dict[str, float] | None = None, retry: wf.RetryPolicy | None = None) -> Any:
    """Four serial async steps, each attempt sleeping MEDIAN_S * exp(SIGMA * N(0, 1)) seconds."""
    flow = wf.Workflow(name)

    def make() -> Any:
        async def step(state: Any, ctx: wf.StepContext) -> None:
            await asyncio.sleep(MEDIAN_S * math.exp(SIGMA * ctx.rng.gauss(0.0, 1.0)))

        return step

    for step in STEPS:
        flow.step(make(), name=step, timeout=None if timeouts is None else timeouts[step], retry=retry)
    flow.chain(*STEPS)
    return flow


def run_many(*batches: tuple[wf.Workflow, Iterable[int]], concurrency: int = 20) -> list[list[wf.Run]]:
    """Runs of each (workflow, seeds) batch into the test's workspace, ``concurrency`` at a time,
    the batches interleaved evenly, so that they share whatever load the machine is under.

    A full garbage collection stalls the event loop (some 40 ms in a pytest process), and with it
    every attempt in flight; collections are held off while runs are measured."""
    jobs = [(k / len(seeds), b, flow, seed) for b, (flow, seeds) in enumerate(batches) for k, seed in enumerate(seeds)]

    async def main() -> list[wf.Run]:
        gate = asyncio.Semaphore(concurrency)

        async def one(flow: wf.Workflow, seed: int) -> wf.Run:
            async with gate:
                return await flow.arun({}, seed=seed, raise_on_error=False)

        return list(await asyncio.gather(*(one(flow, seed) for _, _, flow, seed in sorted(jobs, key=lambda j: j[:2]))))

    gc.collect()
    gc.disable()
    try:
        done = asyncio.run(main())
    finally:
        gc.enable()
    order = [b for _, b, _, _ in sorted(jobs, key=lambda j: j[:2])]
    return [[run for run, b in zip(done, order, strict=True) if b == batch] for batch in range(len(batches))]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The log of 25 runs of the lognormal workflow, no timeouts."""
    folder = tmp_path_factory.mktemp("advice") / "ws"
    flow = lognormal_flow("small")

    async def main() -> None:
        await asyncio.gather(*(flow.arun({}, seed=i, workspace=folder) for i in range(25)))

    asyncio.run(main())
    return wf.steps(folder)


# ---- advise_timeouts ----------------------------------------------------------------------------


def test_advise_timeouts_is_the_quantile_times_the_margin(small: pd.DataFrame) -> None:
    """The default proposal per (workflow, step) is P99 x 1.5 of successful latency, rounded up to
    the millisecond and never below the slowest success, with the samples it rests on; the run
    deadline per workflow is in attrs."""
    table = small.wf.advise_timeouts()
    assert ["samples", "p50", "p99", "max", "mean", "timeout_s", "basis", "note", "timeouts", "cut_at_s"] == list(
        table.columns
    )
    assert [("small", step) for step in STEPS] == list(table.index)  # in the order a run meets them
    for step in STEPS:
        latencies = small.loc[small["step"] == step, "latency_s"]
        row = table.loc[("small", step)]
        assert pytest.approx(latencies.quantile(0.99)) == row["p99"]
        expected = max(math.ceil(max(latencies.quantile(0.99) * 1.5, latencies.max()) * 1000) / 1000, 0.1)
        assert pytest.approx(expected) == row["timeout_s"]
        assert row["timeout_s"] >= latencies.max()
        assert 25 == row["samples"]
        assert row["note"] is None
        assert (0, True) == (row["timeouts"], math.isnan(row["cut_at_s"]))
    durations = small.wf.runs()["duration_s"]
    deadline = math.ceil(max(durations.quantile(0.99) * 1.5, durations.max()) * 1000) / 1000
    assert {"small": pytest.approx(deadline)} == table.attrs["run_deadline_s"]
    assert {"small": 25} == table.attrs["run_samples"]
    assert (0.99, 1.5, 20, 0.1) == tuple(table.attrs[k] for k in ("quantile", "margin", "min_samples", "min_timeout"))


def test_advise_timeouts_at_another_quantile_and_margin(small: pd.DataFrame) -> None:
    """quantile=0.9, margin=2 gives a p90 column and timeouts of twice it (or the slowest success)."""
    table = small.wf.advise_timeouts(quantile=0.9, margin=2.0, min_timeout=0)
    assert "p90" in table.columns
    for step in STEPS:
        row = table.loc[("small", step)]
        assert pytest.approx(math.ceil(max(row["p90"] * 2.0, row["max"]) * 1000) / 1000) == row["timeout_s"]


def test_advise_timeouts_is_never_below_the_slowest_success(small: pd.DataFrame) -> None:
    """At the median with no margin the quantile would cut half the calls: the slowest success wins."""
    table = small.wf.advise_timeouts(quantile=0.5, margin=1.0, min_timeout=0)
    for step in STEPS:
        row = table.loc[("small", step)]
        assert pytest.approx(math.ceil(row["max"] * 1000) / 1000) == row["timeout_s"]
        assert "slowest success" == row["basis"]


def test_advise_timeouts_gives_no_advice_on_too_few_samples(workspace: Path) -> None:
    """Under min_samples successful attempts a step gets no timeout, and the note says why; a
    timed-out attempt only says "at least": it is not a sample, and counts as slower than every
    success (here P99 falls on it, so it is unknown; P50 does not)."""
    flow = wf.Workflow("sometimes-slow")

    @flow.step(timeout=0.05, retry=wf.RetryPolicy(max_retries=1, base_delay=0.001, jitter=0))
    async def call(state: Any, ctx: wf.StepContext) -> None:
        await asyncio.sleep(1 if ctx.attempt == 1 and state["i"] == 0 else 0.001)

    for i in range(3):
        flow.run({"i": i})
    table = wf.steps().wf.advise_timeouts()
    row = table.loc[("sometimes-slow", "call")]
    assert (3, 1) == (row["samples"], row["timeouts"])
    assert math.isnan(row["p99"])
    assert math.isnan(row["timeout_s"])
    assert row["note"].startswith("only 3 successful attempts; need 20 for advice; 1 of 4 attempts (25%) hit a timeout")
    assert {"sometimes-slow": None} == table.attrs["run_deadline_s"]
    enough = wf.steps().wf.advise_timeouts(quantile=0.5, min_samples=3)
    assert enough.loc[("sometimes-slow", "call"), "timeout_s"] >= row["max"]


def test_advice_notes_count_one_in_the_singular(workspace: Path) -> None:
    """One run whose one attempt a timeout cut off: the notes say "1 of 1 attempt" and "1 of 1
    run", never "1 of 1 attempts"."""
    flow = wf.Workflow("once-slow")

    @flow.step(timeout=0.01)
    async def call(state: Any) -> None:
        await asyncio.sleep(1)

    flow.run({}, raise_on_error=False)
    table = wf.steps().wf.advise_timeouts()
    note = table.loc[("once-slow", "call"), "note"]
    assert note.startswith("only 0 successful attempts; need 20 for advice; 1 of 1 attempt (100%) hit a timeout")
    assert table.attrs["run_deadline_note"]["once-slow"].startswith("1 of 1 run (100%) failed on a timeout")


@pytest.fixture(scope="module")
def cut_off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace of 40 runs of a step with a 50 ms timeout whose every fourth call needs 300 ms:
    a quarter of the attempts are cut off."""
    folder = tmp_path_factory.mktemp("censored") / "ws"
    flow = wf.Workflow("censored")

    @flow.step(timeout=0.05)
    async def llm(state: Any) -> None:
        await asyncio.sleep((0.002, 0.005, 0.01, 0.3)[state["i"] % 4])

    flow.run_many([{"i": i} for i in range(40)], workspace=folder, progress=False, concurrency=10)
    return folder


def test_advise_timeouts_counts_attempts_a_timeout_cut_off(cut_off: Path) -> None:
    """An attempt a timeout cut off counts as slower than every success: with a quarter of them
    cut off, P99 is unknown and no timeout is advised (the note says to raise the timeout to
    measure), where leaving them out advised one shorter than the timeout that cut them; at P50
    the advice stands on the successes' quantile at the rank P50 has among all attempts. Runs a
    timeout failed count so for the run deadline. StepLog advises the same."""
    frame = wf.steps(cut_off)
    assert {"ok": 30, "timeout": 10} == frame["status"].astype(str).value_counts().to_dict()
    table = frame.wf.advise_timeouts()
    row = table.loc[("censored", "llm")]
    assert (30, 10) == (row["samples"], row["timeouts"])
    cut = frame.loc[frame["status"] == "timeout", "latency_s"]
    assert cut.max() == row["cut_at_s"] >= 0.05
    assert math.isnan(row["p99"])
    assert math.isnan(row["timeout_s"])
    assert pd.isna(row["basis"])
    assert (
        f"10 of 40 attempts (25%) hit a timeout (after up to {format_seconds(cut.max())}): their true latency "
        "is unknown, and so is the P99; raise the timeout to measure it"
    ) == row["note"]

    runs = frame.wf.runs()
    cut_runs = runs["failed_on_timeout"]
    assert 10 == cut_runs.sum()
    median_table = frame.wf.advise_timeouts(quantile=0.5, min_timeout=0)
    median = median_table.loc[("censored", "llm")]
    ok = frame.loc[frame["status"] == "ok", "latency_s"].to_numpy()
    # P50 of 40 attempts sits at rank 19.5 (0-based); the 10 cut off come last.
    assert pytest.approx(np.quantile(ok, 19.5 / 29)) == median["p50"]
    assert median["p50"] > np.quantile(ok, 0.5)
    assert pytest.approx(math.ceil(max(median["p50"] * 1.5, ok.max()) * 1000) / 1000) == median["timeout_s"]
    assert median["note"].endswith(
        "hit a timeout (after up to " + format_seconds(cut.max()) + "): counted as slower than every success"
    )

    # Runs a timeout failed count as slower than every other too: no run deadline at P99, one at P50.
    assert {"censored": None} == table.attrs["run_deadline_s"]
    longest = format_seconds(runs.loc[cut_runs, "duration_s"].max())
    assert (
        f"10 of 40 runs (25%) failed on a timeout (after up to {longest}): how long they would take is "
        "unknown, and so is the P99 run; raise the timeouts to measure it"
    ) == table.attrs["run_deadline_note"]["censored"]
    finished = runs.loc[~runs["failed_on_timeout"], "duration_s"].to_numpy()
    deadline = math.ceil(max(np.quantile(finished, 19.5 / 29) * 1.5, finished.max()) * 1000) / 1000
    assert {"censored": pytest.approx(deadline)} == median_table.attrs["run_deadline_s"]

    for quantile, floor in ((0.99, 0.1), (0.5, 0.1), (0.5, 0.0)):
        ours = wf.StepLog(cut_off).advise_timeouts(quantile=quantile, min_timeout=floor)
        theirs = frame.wf.advise_timeouts(quantile=quantile, min_timeout=floor)
        pd.testing.assert_frame_equal(theirs, ours, check_index_type=False)
        assert theirs.attrs == ours.attrs


def test_predict_timeouts_counts_attempts_a_timeout_cut_off(cut_off: Path) -> None:
    """A draw of an attempt a timeout cut off times out again at any timeout it ran to (a quarter of
    attempts here, not none); at a longer timeout whether it finishes is unknown: unknown_rate says
    how often, it counts as a timeout (the worst case), and the note says so; with no timeout at
    all it times out never, and is unknown still."""
    frame = wf.steps(cut_off)
    shorter = frame.wf.predict_timeouts({"llm": 0.04}, runs=4000).loc["llm"]
    assert pytest.approx(0.25, abs=0.03) == shorter["attempt_timeout_rate"]
    assert shorter["step_failure_rate"] == shorter["attempt_timeout_rate"]
    assert (0.0, None) == (shorter["unknown_rate"], shorter["note"])

    longer = frame.wf.predict_timeouts({"llm": 1.0}, runs=4000)
    row = longer.loc["llm"]
    assert pytest.approx(0.25, abs=0.03) == row["unknown_rate"]
    assert row["attempt_timeout_rate"] == row["unknown_rate"]
    assert longer.attrs["run_failure_rate"] == row["step_failure_rate"]
    assert (
        "before 1 s: whether they finish within it is unknown; they count as timeouts (the worst case)" in row["note"]
    )

    none = frame.wf.predict_timeouts({}, runs=4000).loc["llm"]
    assert 0.0 == none["attempt_timeout_rate"]
    assert pytest.approx(0.25, abs=0.03) == none["unknown_rate"]
    assert "with no timeout how long they take is unknown" in none["note"]


def test_advise_timeouts_never_proposes_a_timer_the_loop_cannot_keep(workspace: Path) -> None:
    """Steps of microseconds (a regex, a dict lookup) were advised timeouts of 1 ms, which a busy
    event loop (or a sync step's thread waiting for the interpreter) overruns on healthy attempts:
    the advice never goes below min_timeout (100 ms by default), says so in ``basis``, and the run
    deadline neither; min_timeout=0 gives the data's own figure, and the files' StepLog agrees."""
    flow = wf.Workflow("quick")

    @flow.step
    def classify(state: Any) -> dict[str, Any]:
        return {"kind": "refund" if "money" in state["q"] else "other"}

    @flow.step
    async def lookup(state: Any) -> dict[str, Any]:
        return {"found": True}

    flow.chain("classify", "lookup")
    for i in range(25):
        flow.run({"q": f"money back {i}"})
    frame = wf.steps()
    table = frame.wf.advise_timeouts()
    for step in ("classify", "lookup"):
        row = table.loc[("quick", step)]
        assert row["max"] < 0.05  # the data alone would advise a few milliseconds at most
        assert (0.1, "minimum (100 ms)") == (row["timeout_s"], row["basis"])
    assert {"quick": 0.1} == table.attrs["run_deadline_s"]
    raw = frame.wf.advise_timeouts(min_timeout=0)
    assert (raw["timeout_s"] < 0.05).all()
    assert not raw["basis"].str.startswith("minimum").any()
    ours = wf.StepLog(workspace).advise_timeouts()
    pd.testing.assert_frame_equal(table, ours, check_index_type=False)
    assert table.attrs == ours.attrs


@pytest.mark.parametrize("min_timeout", [-0.1, float("nan"), float("inf")])
def test_advise_timeouts_rejects_a_min_timeout_that_is_no_duration(small: pd.DataFrame, min_timeout: float) -> None:
    """min_timeout is a number of seconds, 0 or more."""
    with pytest.raises(ValueError, match="min_timeout must be a number of seconds >= 0"):
        small.wf.advise_timeouts(min_timeout=min_timeout)


def test_advise_timeouts_rejects_a_min_samples_below_1(small: pd.DataFrame) -> None:
    """min_samples must be at least 1."""
    with pytest.raises(ValueError, match="min_samples must be >= 1"):
        small.wf.advise_timeouts(min_samples=0)


@pytest.mark.parametrize("quantile", [0, 1, 1.5, -0.1])
def test_advise_timeouts_rejects_a_quantile_outside_0_1(small: pd.DataFrame, quantile: float) -> None:
    """A quantile must lie strictly between 0 and 1."""
    with pytest.raises(ValueError, match=r"quantile must be in \(0, 1\)"):
        small.wf.advise_timeouts(quantile=quantile)


def test_advise_timeouts_rejects_a_margin_below_1(small: pd.DataFrame) -> None:
    """A margin below 1 would cut calls the data says are normal."""
    with pytest.raises(ValueError, match="margin must be >= 1"):
        small.wf.advise_timeouts(margin=0.9)


# ---- predict_timeouts ---------------------------------------------------------------------------


def test_predict_rejects_an_unknown_step(small: pd.DataFrame) -> None:
    """A timeout for a step the log never saw is an error naming it and the known steps."""
    with pytest.raises(ValueError, match=r"no latency observed for step\(s\) nowhere; known: draft, plan"):
        small.wf.predict_timeouts({"nowhere": 1.0})


def test_predict_takes_the_advice_as_it_comes(small: pd.DataFrame) -> None:
    """advise_timeouts()["timeout_s"] (keyed by (workflow, step)) goes straight into predict_timeouts."""
    advice = small.wf.advise_timeouts()
    table = small.wf.predict_timeouts(advice["timeout_s"], runs=500)
    assert list(advice["timeout_s"]) == [table.loc[step, "timeout_s"] for step in STEPS]


def test_predict_refuses_a_frame_of_several_workflows(small: pd.DataFrame) -> None:
    """Runs of two workflows cannot be one simulation: the error says how to pick one."""
    two = pd.concat([small, small.assign(workflow="other")], ignore_index=True)
    with pytest.raises(ValueError, match="simulates runs of one workflow; this frame holds other, small"):
        two.wf.predict_timeouts({"plan": 1.0})
    assert 500 == two.wf.predict_timeouts({("small", "plan"): 1.0}, runs=500).attrs["runs"]


def test_predict_without_timeouts_predicts_no_timeouts(small: pd.DataFrame) -> None:
    """No timeouts: every rate is zero, and run durations are sums of observed latencies."""
    table = small.wf.predict_timeouts({}, runs=2000)
    assert set(STEPS) == set(table.index)
    assert [0.0] * 4 == list(table["attempt_timeout_rate"])
    assert [0.0] * 4 == list(table["step_failure_rate"])
    assert [2000] * 4 == list(table["attempts"])
    assert 0.0 == table.attrs["run_failure_rate"]
    assert table.attrs["run_timeout_rate"] is None
    assert 4 * MEDIAN_S < table.attrs["run_p50_s"] < table.attrs["run_p99_s"]


def test_predict_run_deadline(small: pd.DataFrame) -> None:
    """A deadline below every run's duration times out every run; one above none."""
    assert 1.0 == small.wf.predict_timeouts({}, deadline=0.001, runs=500).attrs["run_timeout_rate"]
    assert 0.0 == small.wf.predict_timeouts({}, deadline=60, runs=500).attrs["run_timeout_rate"]


def test_predict_is_reproducible_with_a_seed(small: pd.DataFrame) -> None:
    """The same seed gives the same prediction."""
    timeouts = {"plan": 0.025, "search": 0.03}
    first = small.wf.predict_timeouts(timeouts, runs=3000, seed=5)
    second = small.wf.predict_timeouts(timeouts, runs=3000, seed=5)
    pd.testing.assert_frame_equal(first, second)
    assert first.attrs == second.attrs


def test_predict_retries_lower_step_failures(small: pd.DataFrame) -> None:
    """With one retry the step failure rate is about the square of the attempt timeout rate."""
    timeout = float(small.loc[small["step"] == "plan", "latency_s"].quantile(0.7))
    plain = small.wf.predict_timeouts({"plan": timeout}, runs=20_000)
    retried = small.wf.predict_timeouts(
        {"plan": timeout}, retry=wf.RetryPolicy(max_retries=1, base_delay=0.0, jitter=0), runs=20_000
    )
    rate = plain.loc["plan", "attempt_timeout_rate"]
    assert plain.loc["plan", "step_failure_rate"] == pytest.approx(rate)
    assert retried.loc["plan", "step_failure_rate"] == pytest.approx(rate**2, abs=0.02)
    assert plain.attrs["run_failure_rate"] == pytest.approx(rate, abs=0.02)  # plan comes first


def test_predict_meets_the_errors_a_visit_met_before_its_call(workspace: Path) -> None:
    """A failed attempt is not a call: each simulated visit meets the errors an observed visit met
    (here one fast 429, retried) before its calls. Ten visits, each failing in microseconds and then
    answering in 50, 100, ... 500 ms; at a 275 ms timeout half the calls are cut. With one retry a
    visit is an error then one call: 2 attempts, a quarter of them cut, half the steps failed (drawn
    as calls, the fast failures made it 1.25 attempts, a quarter cut, 6% failed). Two retries: 2.5
    attempts, a quarter failed. No retry: the error alone fails every visit."""
    flow = wf.Workflow("fails-fast")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0, jitter=0))
    async def fetch(state: Any, ctx: wf.StepContext) -> None:
        if ctx.attempt == 1:
            raise wf.TransientError("429 Too Many Requests")
        await asyncio.sleep(0.05 * (state["i"] + 1))

    flow.run_many([{"i": i} for i in range(10)], progress=False, concurrency=10)
    frame = wf.steps()
    assert {"retry": 10, "ok": 10} == frame["status"].astype(str).value_counts().to_dict()
    runs, timeout = 20_000, {"fetch": 0.275}

    one = frame.wf.predict_timeouts(timeout, retry=wf.RetryPolicy(max_retries=1, base_delay=0, jitter=0), runs=runs)
    assert 2 * runs == one.loc["fetch", "attempts"]
    assert pytest.approx(0.25, abs=0.01) == one.loc["fetch", "attempt_timeout_rate"]
    assert pytest.approx(0.5, abs=0.02) == one.loc["fetch", "step_failure_rate"] == one.attrs["run_failure_rate"]

    two = frame.wf.predict_timeouts(timeout, retry=wf.RetryPolicy(max_retries=2, base_delay=0, jitter=0), runs=runs)
    assert pytest.approx(2.5 * runs, rel=0.02) == two.loc["fetch", "attempts"]
    assert pytest.approx(0.25, abs=0.02) == two.loc["fetch", "step_failure_rate"]

    none = frame.wf.predict_timeouts(timeout, runs=runs).loc["fetch"]
    assert (runs, 0.0, 1.0) == (none["attempts"], none["attempt_timeout_rate"], none["step_failure_rate"])

    # With no timeout a run takes its error's microseconds and then its call: the median call.
    untimed = frame.wf.predict_timeouts({}, retry=wf.RetryPolicy(max_retries=1, base_delay=0, jitter=0), runs=runs)
    assert 0.25 <= untimed.attrs["run_p50_s"] <= 0.31


def test_predict_draws_a_map_steps_calls_from_its_items(workspace: Path) -> None:
    """A map step's calls are its items' attempts, each timed alone: the map's own row (the whole
    map) is no call. Sixteen items of 10 ms, one at a time: the map takes some 160 ms, so a timeout
    between its slowest item and its fastest whole map cuts none of its calls (drawn as one, the
    map's own row was cut in a seventeenth of the draws). Sixteen, not eight: on a loaded machine one
    item of eight was once held up past the 80 ms of another run's whole map."""
    flow = wf.Workflow("mapped")

    @flow.step(writes=["items"])
    def plan(state: Any) -> dict[str, Any]:
        return {"items": list(range(16))}

    @flow.map(over="items", into="results", max_concurrency=1)
    async def work(item: int) -> int:
        await asyncio.sleep(0.01)
        return item

    flow.chain("plan", "work")
    for _ in range(5):
        flow.run({}, workspace=workspace)
    frame = wf.steps(workspace)
    mapped = frame[frame["step"] == "work"]
    slowest_item = mapped.loc[mapped["map_index"].notna(), "latency_s"].max()
    fastest_map = mapped.loc[mapped["map_index"].isna(), "latency_s"].min()
    assert slowest_item < fastest_map  # sixteen sleeps in a row outlast any one of them

    predicted = frame.wf.predict_timeouts({"work": (slowest_item + fastest_map) / 2}, runs=5_000).loc["work"]
    assert (0.0, 0.0) == (predicted["attempt_timeout_rate"], predicted["step_failure_rate"])


def test_predict_serves_cache_hits_without_a_call(workspace: Path) -> None:
    """A visit served from the step cache makes no call: it cannot time out, and is no attempt.
    Four inputs called once (10, 20, 40, 80 ms), then each served from the cache: at a timeout
    between the second and third call half the calls are cut, and half the visits call. So half
    the attempts time out (drawn as calls, the hits made it a quarter), there are half as many
    attempts as visits, and a quarter of the visits fail, as in the runs observed. A step served
    from the cache on every visit has no call to time: a timeout for it is refused."""
    flow = wf.Workflow("cached")

    @flow.step(cache=wf.Cache())
    async def fetch(state: Any) -> None:
        await asyncio.sleep(0.01 * 2 ** state["i"])

    for _ in range(2):
        for i in range(4):
            flow.run({"i": i})
    frame = wf.steps()
    assert {"ok": 4, "cached": 4} == frame["status"].astype(str).value_counts().to_dict()
    calls = np.sort(frame.loc[frame["status"] == "ok", "latency_s"].to_numpy())
    runs, timeout = 20_000, {"fetch": float(calls[1] + calls[2]) / 2}

    predicted = frame.wf.predict_timeouts(timeout, runs=runs)
    row = predicted.loc["fetch"]
    assert pytest.approx(runs / 2, rel=0.03) == row["attempts"]
    assert pytest.approx(0.5, abs=0.02) == row["attempt_timeout_rate"]
    assert pytest.approx(0.25, abs=0.02) == row["step_failure_rate"] == predicted.attrs["run_failure_rate"]
    assert 4 == frame.wf.advise_timeouts(min_samples=1).loc[("cached", "fetch"), "samples"]  # calls alone

    with pytest.raises(ValueError, match=r"step\(s\) fetch were served from the cache on every visit"):
        frame[frame["status"] == "cached"].wf.predict_timeouts(timeout)


def test_predict_refuses_a_step_that_never_answered(workspace: Path) -> None:
    """A step whose every attempt failed with an error gives no call latency to draw: the error names it."""
    flow = wf.Workflow("never-answers")

    @flow.step
    def lookup(state: Any) -> None:
        raise wf.PermanentError("no such table")

    for _ in range(3):
        flow.run({}, raise_on_error=False)
    with pytest.raises(ValueError, match=r"step\(s\) lookup never answered in this frame \(every attempt failed"):
        wf.steps().wf.predict_timeouts({})


# ---- the validation ----------------------------------------------------------------------------


def observed_rates(frame: pd.DataFrame) -> tuple[dict[str, float], dict[str, float], float]:
    """Attempt timeout rate and step failure rate per step, and the run failure rate, from a log."""
    attempts = frame[frame["attempt"] > 0].assign(step=lambda f: f["step"].astype(str))
    last = attempts.sort_values("attempt").groupby(["run_id", "step", "visit"]).tail(1)
    attempt_rate = attempts.groupby("step")["status"].apply(lambda s: float((s == "timeout").mean())).to_dict()
    step_rate = last.groupby("step")["status"].apply(lambda s: float((s != "ok").mean())).to_dict()
    run_rate = float(last.groupby("run_id")["status"].apply(lambda s: bool((s != "ok").any())).mean())
    return attempt_rate, step_rate, run_rate


@pytest.mark.slow  # 1,100 runs whose steps sleep: about 13 s
def test_predicted_timeout_rates_match_observed_runs(workspace: Path) -> None:
    """Timeouts at P80, one retry: the Monte Carlo predictions from calibration runs of the attempt
    timeout rate and step failure rate per step, and of the run failure rate, lie within 0.08
    (absolute) of the rates observed in 600 runs with those timeouts.

    Four serial steps, each attempt sleeping a lognormal latency (median 20 ms, sigma 0.6) drawn
    with the run's seeded generator. 100 pilot runs propose the timeouts (P80 of each step); then
    400 calibration runs (no timeouts) and the 600 check runs go interleaved, 20 at a time, so the
    calibration sees the very timing noise (event-loop and machine load) the check runs meet. The
    seeds are fixed: the latency draws are the same every time, only the timing noise varies."""
    (_pilot,) = run_many((lognormal_flow("pilot"), range(-100, 0)))
    # P80 on purpose (advise_timeouts never goes below the slowest success): a fifth of attempts time out.
    proposal = wf.steps(workflow="pilot").wf.latency(quantiles=(0.8,)).loc["pilot"]
    timeouts = {step: round(float(proposal.loc[step, "p80"]), 3) for step in STEPS}
    retry = wf.RetryPolicy(max_retries=1, base_delay=0.001, jitter=0)

    _, runs = run_many(
        (lognormal_flow("calibrate"), range(400)),
        (lognormal_flow("check", timeouts, retry), range(10_000, 10_600)),
    )
    calibration = wf.steps(workflow="calibrate")
    assert 1600 == len(calibration)
    predicted = calibration.wf.predict_timeouts(timeouts, retry=retry, runs=20_000, seed=0)
    attempt_rate, step_rate, run_rate = observed_rates(wf.steps(workflow="check"))
    assert sum(r.status != "succeeded" for r in runs) / len(runs) == pytest.approx(run_rate)

    rows = [
        (f"{step} attempt timeout", predicted.loc[step, "attempt_timeout_rate"], attempt_rate[step]) for step in STEPS
    ]
    rows += [(f"{step} step failure", predicted.loc[step, "step_failure_rate"], step_rate[step]) for step in STEPS]
    rows.append(("run failure", predicted.attrs["run_failure_rate"], run_rate))
    print("\n" + "\n".join(f"{name:24} predicted {p:.3f} observed {o:.3f} diff {o - p:+.3f}" for name, p, o in rows))
    assert 0.1 < np.mean([p for name, p, _ in rows if "attempt" in name]) < 0.3  # about a fifth time out
    assert [] == [(name, round(p, 3), round(o, 3)) for name, p, o in rows if abs(p - o) > TOLERANCE]


def test_seeded_predictions_with_a_jittered_policy_are_reproducible(small: pd.DataFrame) -> None:
    """predict_timeouts(seed=1) gives the same figures twice with jittered backoff (no global random)."""
    import random

    policy = wf.RetryPolicy(max_retries=2, base_delay=0.05, jitter=0.5)
    timeouts = dict.fromkeys(STEPS, 0.8 * MEDIAN_S)
    first = small.wf.predict_timeouts(timeouts, retry=policy, seed=1, runs=500)
    random.seed(12345)  # another caller's use of the global generator must change nothing
    random.random()
    second = small.wf.predict_timeouts(timeouts, retry=policy, seed=1, runs=500)
    pd.testing.assert_frame_equal(first, second)
    assert first.attrs == second.attrs
