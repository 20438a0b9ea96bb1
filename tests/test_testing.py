"""The test kit: MemorySink, capture_events and test_mode."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.model import _settings
from wfkit.testing import MemorySink, capture_events, test_mode


def _named(name: str) -> wf.Workflow:
    flow = wf.Workflow(name)
    flow.step(lambda s: None, name="a")
    flow.step(lambda s: None, name="b")
    flow.chain("a", "b")
    return flow


def _drawing() -> wf.Workflow:
    """Two steps that each draw from the run's random generator."""
    flow = wf.Workflow("draws")
    flow.step(lambda s, ctx: {"first": [ctx.rng.random() for _ in range(3)]}, name="one")
    flow.step(lambda s, ctx: {"second": ctx.rng.random()}, name="two")
    flow.chain("one", "two")
    return flow


def _draws(run: wf.Run) -> list[float]:
    return [*run.state["first"], run.state["second"]]


# ---- MemorySink ----------------------------------------------------------------------------------


def test_memory_sink_starts_empty() -> None:
    """A new MemorySink holds no events."""
    sink = MemorySink()
    assert 0 == len(sink)
    assert [] == list(sink)
    assert "<MemorySink 0 events>" == repr(sink)


def test_memory_sink_collects_a_runs_events() -> None:
    """Passed as a sink, it keeps every event of the run in order; len and iter agree with events."""
    sink = MemorySink()
    run = _named("collect").run({}, sinks=[sink])
    assert run.events == sink.events
    assert 2 == len(sink)
    assert sink.events == list(sink)
    assert "<MemorySink 2 events>" == repr(sink)


def test_memory_sink_accumulates_over_runs() -> None:
    """One sink given to two runs holds both runs' events."""
    sink = MemorySink()
    flow = _named("twice")
    first = flow.run({}, sinks=[sink])
    second = flow.run({}, sinks=[sink])
    assert [*first.events, *second.events] == sink.events


def test_memory_sink_clear_empties_it_and_it_keeps_collecting() -> None:
    """clear() drops the events; events of later runs are still collected."""
    sink = MemorySink()
    flow = _named("clear")
    flow.run({}, sinks=[sink])
    sink.clear()
    assert 0 == len(sink)
    run = flow.run({}, sinks=[sink])
    assert run.events == sink.events


# ---- capture_events ------------------------------------------------------------------------------


def test_capture_events_collects_runs_inside_the_block_only() -> None:
    """Events of runs inside the block are collected; runs before or after it are not."""
    flow = _named("cap")
    flow.run({})
    with capture_events() as events:
        inside = flow.run({})
    flow.run({})
    assert inside.events == events


def test_nested_capture_blocks() -> None:
    """Runs in the inner block reach both lists; after the inner exits only the outer sees runs."""
    with capture_events() as outer:
        with capture_events() as inner:
            in_both = _named("inner").run({})
        in_outer_only = _named("outer").run({})
    _named("after").run({})
    assert in_both.events == inner
    assert [*in_both.events, *in_outer_only.events] == outer


def test_capture_events_sees_a_run_started_inside_that_ends_after_the_block() -> None:
    """A run started inside the block is captured in full even if it finishes after the block."""
    gate = threading.Event()
    flow = wf.Workflow("slow")

    @flow.step
    def hold(state: Any) -> None:
        gate.wait(5)

    try:
        with capture_events() as events:
            run = flow.start({})
        assert [] == events
    finally:
        gate.set()
    run.wait(timeout=2)
    assert run.events == events
    assert ["ok"] == [e.status for e in events]


def test_capture_events_restores_settings_even_after_an_error() -> None:
    """Leaving the block by an exception removes its sink all the same."""
    before = _settings.current()
    with pytest.raises(RuntimeError, match="cell failed"), capture_events():
        raise RuntimeError("cell failed")
    assert before is _settings.current()


def test_capture_events_inside_test_mode() -> None:
    """capture_events() nested in test_mode() captures events and keeps test mode on."""
    with test_mode(seed=1), capture_events() as events:
        run = _named("combo").run({})
        testing = _settings.current().testing
    assert testing
    assert run.events == events


def test_test_mode_inside_capture_events() -> None:
    """test_mode() nested in capture_events() keeps the capture sink while test mode is on."""
    with capture_events() as events, test_mode(seed=1):
        run = _named("combo").run({})
        testing = _settings.current().testing
    assert testing
    assert run.events == events


# ---- test_mode -----------------------------------------------------------------------------------


def test_test_mode_seeds_ctx_rng_so_runs_draw_the_same_numbers() -> None:
    """Two runs under test_mode(seed) draw identical numbers, from one stream seeded with that seed."""
    flow = _drawing()
    with test_mode(seed=7):
        first = flow.run({})
        second = flow.run({})
    expected = random.Random(7)
    assert [expected.random() for _ in range(4)] == _draws(first)
    assert _draws(first) == _draws(second)


def test_test_mode_different_seeds_draw_differently() -> None:
    """Different test_mode seeds give different draws."""
    flow = _drawing()
    with test_mode(seed=1):
        one = flow.run({})
    with test_mode(seed=2):
        two = flow.run({})
    assert _draws(one) != _draws(two)


def test_test_mode_makes_long_backoff_instant() -> None:
    """Under test_mode a retry with a 30 s base delay completes at once; its event records the 0 s it
    waited as retry_delay_s, and the planned backoff in extra."""
    flow = wf.Workflow("patient")

    marks: list[float] = []  # when attempt 1 failed, when attempt 2 began

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=30))
    def call(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        marks.append(time.monotonic())
        if ctx.attempt == 1:
            raise ConnectionError("down")
        return {"attempts": ctx.attempt}

    with test_mode():
        run = flow.run({})
    assert {"attempts": 2} == run.state
    retry = run.events[0]
    assert ("retry", 0.0) == (retry.status, retry.retry_delay_s)
    assert retry.extra is not None
    planned = retry.extra["retry_delay_planned_s"]
    assert 15 <= planned <= 45
    # Not a speed bound: a backoff that was waited puts at least the planned delay between the attempts.
    assert marks[1] - marks[0] < planned


def test_test_mode_step_log_shows_no_backoff_wait(workspace: Path) -> None:
    """In the step log of a durable test-mode run, a retry's retry_delay_s is 0 and the planned
    backoff sits beside what the step itself put in extra."""
    flow = wf.Workflow("patient-log")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=4, jitter=0))
    def call(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        ctx.record(server="eu")
        if ctx.attempt == 1:
            raise ConnectionError("down")
        return {"ok": True}

    with test_mode():
        run = flow.run({})
    frame = wf.steps(workspace, run_id=run.run_id, sort=True)
    assert ["retry", "ok"] == frame["status"].tolist()
    assert 0.0 == frame["retry_delay_s"].iloc[0]  # it read 4.0: a wait that never happened
    assert math.isnan(frame["retry_delay_s"].iloc[1])
    assert {"server": "eu", "retry_delay_planned_s": 4.0} == wf.Workspace().events(run.run_id)[0].extra


def test_test_mode_replaces_only_the_engines_sleep() -> None:
    """Under test_mode an async step's backoff is instant, while the step's own asyncio.sleep still waits."""
    flow = wf.Workflow("async-patient")
    slept: list[float] = []

    marks: list[float] = []  # when attempt 1 failed, when attempt 2 began

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=30))
    async def call(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if ctx.attempt == 2:
            marks.append(t0)
        await asyncio.sleep(0.05)
        slept.append(loop.time() - t0)
        if ctx.attempt == 1:
            marks.append(loop.time())
            raise ConnectionError("down")
        return {"ok": True}

    with test_mode(seed=4):
        run = flow.run({})
    assert ["retry", "ok"] == [e.status for e in run.events]
    assert 2 == len(slept)
    assert all(s >= 0.04 for s in slept)  # the step's own sleep waited (a sleep never ends early)
    retry = run.events[0]
    assert retry.extra is not None
    planned = retry.extra["retry_delay_planned_s"]
    assert 15 <= planned
    # Not a speed bound: a backoff that was waited puts at least the planned delay between the attempts.
    assert marks[1] - marks[0] < planned


def test_test_mode_is_undone_on_exit_even_after_an_error() -> None:
    """Leaving test_mode, normally or by an exception, restores real sleep and unseeded runs."""
    before = _settings.current()
    with test_mode(seed=3):
        assert _settings.current().testing
    assert before is _settings.current()
    with pytest.raises(RuntimeError, match="cell failed"), test_mode(seed=3):
        raise RuntimeError("cell failed")
    assert before is _settings.current()
    assert asyncio.sleep is _settings.current().sleep


def test_test_mode_is_not_collected_as_a_test() -> None:
    """test_mode is marked so pytest does not collect it when a test module imports it."""
    assert test_mode.__test__ is False  # type: ignore[attr-defined]


# ---- seeds outside test_mode ---------------------------------------------------------------------


def test_outside_test_mode_runs_draw_different_numbers() -> None:
    """Without test_mode or seed=, each run gets its own unseeded generator."""
    flow = _drawing()
    assert _draws(flow.run({})) != _draws(flow.run({}))


def test_seed_passed_to_run_repeats_the_draws() -> None:
    """run(..., seed=) seeds the run's generator, outside test_mode too."""
    flow = _drawing()
    first = flow.run({}, seed=5)
    second = flow.run({}, seed=5)
    expected = random.Random(5)
    assert [expected.random() for _ in range(4)] == _draws(first)
    assert _draws(first) == _draws(second)


def test_seed_passed_to_run_wins_over_test_mode_seed() -> None:
    """Inside test_mode, an explicit seed= decides the run's draws."""
    flow = _drawing()
    with test_mode(seed=1):
        run = flow.run({}, seed=9)
    expected = random.Random(9)
    assert [expected.random() for _ in range(4)] == _draws(run)


def test_the_kit_offers_the_simulated_model_and_cassettes() -> None:
    """wfkit.testing hands out the simulated model and cassettes (loaded on first use)."""
    import wfkit
    import wfkit.testing as kit

    assert wfkit.llm.SimulatedModel is kit.SimulatedModel
    assert wfkit.llm.Cassette is kit.Cassette
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        kit.Nothing  # noqa: B018
