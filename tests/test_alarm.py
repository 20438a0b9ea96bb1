"""A run's alarm: the timeouts of the lone steps its scheduler awaits, on one timer per run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import wfkit as wf
from wfkit.engine._alarm import Alarm


def _alarm_timers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays (from now) of the timers alarms schedule, as they schedule them."""
    scheduled: list[float] = []
    call_at = asyncio.BaseEventLoop.call_at

    def noted(self: asyncio.BaseEventLoop, when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(callback, "__self__", None).__class__ is Alarm:
            scheduled.append(when - self.time())
        return call_at(self, when, callback, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "call_at", noted)
    return scheduled


def _chain(*steps: tuple[str, float, float], context: bool = False) -> wf.Workflow:
    """Steps (name, timeout, seconds it sleeps) in a chain, each writing its name. ``context``: the
    steps take one (the attempt runner runs them, on the run's alarm all the same)."""
    flow = wf.Workflow("alarmed")
    for name, timeout, nap in steps:

        async def step(state: Any, nap: float = nap, name: str = name) -> dict[str, Any]:
            await asyncio.sleep(nap)
            return {name: True}

        async def step_with_context(state: Any, ctx: wf.StepContext, step: Any = step) -> dict[str, Any]:
            return dict(await step(state))

        body = step_with_context if context else step
        flow.step(body, name=name, timeout=timeout, retry=wf.RetryPolicy(max_retries=0))
    flow.chain(*(name for name, _, _ in steps))
    return flow


@pytest.mark.parametrize("context", [False, True], ids=["inline", "runner"])
def test_a_chain_whose_steps_end_in_time_schedules_one_timer_per_run(
    context: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten steps with a timeout each, all ending well inside it: one timer for the run, and none
    left set once the run ended; steps the attempt runner runs (taking a context) too."""
    timers = _alarm_timers(monkeypatch)
    flow = _chain(*((f"s{i}", 5.0, 0.0) for i in range(10)), context=context)

    async def cell() -> tuple[wf.Run, list[asyncio.TimerHandle]]:
        run = await flow.arun({}, workspace=False)
        loop = asyncio.get_running_loop()
        left = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        return run, left

    run, left = asyncio.run(cell())
    assert ("succeeded", 10) == (run.status, len(run.state))
    assert 1 == len(timers)
    assert 4.9 < timers[0] <= 5.0
    assert [] == left


@pytest.mark.parametrize("context", [False, True], ids=["inline", "runner"])
def test_a_step_with_a_shorter_timeout_than_the_alarm_is_set_for_times_out_at_its_own(context: bool) -> None:
    """The alarm set for a long timeout is set again, earlier, for a later step whose deadline
    comes first: that step times out after its own 0.1 s, not the first step's 30 s."""
    flow = _chain(("long", 30.0, 0.0), ("short", 0.1, 5.0), context=context)
    t0 = time.perf_counter()
    run = flow.run({}, workspace=False, raise_on_error=False)
    assert time.perf_counter() - t0 < 4.0  # the sleep it was cut short in lasts 5 s
    assert [("long", "ok", None), ("short", "timeout", "StepTimeoutError")] == [
        (e.step, e.status, e.error_type) for e in run.events
    ]
    assert 0.1 <= run.events[-1].latency_s < 4.0
    assert "failed" == run.status


def test_the_alarm_ringing_for_an_ended_step_is_set_again_for_the_one_running() -> None:
    """The alarm rings at the first step's deadline while a later step runs, inside its own longer
    deadline: that step goes on, and succeeds if it ends in time, or times out at its own deadline."""
    inside = _chain(("quick", 0.1, 0.0), ("inside", 0.5, 0.25)).run({}, workspace=False)
    assert [("quick", "ok"), ("inside", "ok")] == [(e.step, e.status) for e in inside.events]
    over = _chain(("quick", 0.1, 0.0), ("over", 0.3, 5.0)).run({}, workspace=False, raise_on_error=False)
    assert [("quick", "ok"), ("over", "timeout")] == [(e.step, e.status) for e in over.events]
    assert 0.3 <= over.events[-1].latency_s < 4.0


def test_a_step_that_swallows_its_timeout_keeps_its_result_and_the_run_goes_on() -> None:
    """A body that catches the cancellation its timeout makes and returns: its result stands (as
    under asyncio.timeout), and the run's task is no longer being cancelled: the next step's
    sleep and timeout work as ever."""
    flow = wf.Workflow("swallows")

    @flow.step(timeout=0.05)
    async def stubborn(state: Any) -> dict[str, Any]:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return {"stubborn": "kept"}
        return {"stubborn": "slept"}

    @flow.step(timeout=1.0)
    async def after(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"after": asyncio.current_task().cancelling()}  # type: ignore[union-attr]

    flow.chain("stubborn", "after")
    run = flow.run({}, workspace=False)
    assert ("succeeded", {"stubborn": "kept", "after": 0}) == (run.status, run.state)


def test_a_timeout_error_the_step_raises_itself_is_its_own() -> None:
    """A TimeoutError the body raises inside its timeout is the body's failure, not a timeout."""
    flow = wf.Workflow("own-timeout")

    @flow.step(timeout=5.0, retry=wf.RetryPolicy(max_retries=0))
    async def raises(state: Any) -> None:
        raise TimeoutError("the upstream gave up")

    run = flow.run({}, workspace=False, raise_on_error=False)
    assert [("failed", "TimeoutError")] == [(e.status, e.error_type) for e in run.events]


def test_a_run_s_deadline_on_the_alarm_ends_it_as_timed_out() -> None:
    """A run deadline (the attempt runner's timeout for the step left running) rings on the run's
    alarm too: the run fails with RunTimeoutError after its 0.2 s, not the step's 30 s."""
    flow = _chain(("first", 30.0, 0.0), ("slow", 30.0, 5.0))
    t0 = time.perf_counter()
    run = flow.run({}, workspace=False, timeout=0.2, raise_on_error=False)
    assert time.perf_counter() - t0 < 4.0  # the sleep it was cut short in lasts 5 s
    assert ("timed_out", "RunTimeoutError") == (run.status, type(run.error).__name__)
    assert [("first", "ok"), ("slow", "timeout")] == [(e.step, e.status) for e in run.events]


def test_a_durable_run_s_steps_time_out_under_the_alarm(workspace: Any) -> None:
    """In a durable run too: the timed-out attempt is journaled as a timeout, the step before it
    checkpointed."""
    flow = _chain(("first", 5.0, 0.0), ("slow", 0.1, 5.0))
    run = flow.run({}, raise_on_error=False)
    stored = wf.Workspace().events(run.run_id)
    assert [("first", "ok"), ("slow", "timeout")] == [(e.step, e.status) for e in stored]
    assert "failed" == wf.Workspace().run_info(run.run_id)["status"]
