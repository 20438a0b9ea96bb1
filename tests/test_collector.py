"""The collector's youngest and oldest thresholds raised while runs execute, and put back after them."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import wfkit as wf
from wfkit.engine._collector import OLD_THRESHOLD, YOUNG_THRESHOLD


@pytest.fixture(autouse=True)
def default_thresholds(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int, int]]:
    monkeypatch.delenv("WFKIT_GC_THRESHOLD", raising=False)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield (700, 10, 10)
    gc.set_threshold(*before)


def _watching(seen: list[tuple[int, ...]], gate: asyncio.Event | None = None) -> wf.Workflow:
    flow = wf.Workflow("watched")

    @flow.step
    async def look(state: Any) -> None:
        seen.append(gc.get_threshold())
        if gate is not None:
            await gate.wait()

    return flow


def test_a_run_raises_the_youngest_and_oldest_thresholds_and_puts_them_back() -> None:
    """Inside a step the youngest generation's threshold is raised, and the oldest one's; the
    middle one is unchanged, and after the run all three are as they were."""
    seen: list[tuple[int, ...]] = []
    run = _watching(seen).run({})
    assert "succeeded" == run.status
    assert [(YOUNG_THRESHOLD, 10, OLD_THRESHOLD)] == seen
    assert (700, 10, 10) == gc.get_threshold()


def test_the_last_of_overlapping_runs_puts_it_back() -> None:
    """With two runs in flight, the first to end leaves the threshold raised for the other."""
    seen: list[tuple[int, ...]] = []

    async def main() -> tuple[int, ...]:
        gate = asyncio.Event()
        slow = asyncio.ensure_future(_watching(seen, gate).arun({}))
        await asyncio.sleep(0.01)
        await _watching(seen).arun({})
        while_slow_runs = gc.get_threshold()
        gate.set()
        await slow
        return while_slow_runs

    while_slow_runs = asyncio.run(main())
    assert (YOUNG_THRESHOLD, 10, OLD_THRESHOLD) == while_slow_runs
    assert (700, 10, 10) == gc.get_threshold()


def test_a_threshold_the_user_sets_during_a_run_is_kept() -> None:
    """A threshold set by the user while runs execute is theirs: the run's end leaves it."""
    flow = wf.Workflow("user-sets")

    @flow.step
    async def tune(state: Any) -> None:
        gc.set_threshold(2_000, 20, 20)

    assert "succeeded" == flow.run({}).status
    assert (2_000, 20, 20) == gc.get_threshold()


def test_the_environment_sets_or_switches_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """WFKIT_GC_THRESHOLD sets the raised threshold; 0 leaves the collector's thresholds alone."""
    seen: list[tuple[int, ...]] = []
    monkeypatch.setenv("WFKIT_GC_THRESHOLD", "1234")
    _watching(seen).run({})
    monkeypatch.setenv("WFKIT_GC_THRESHOLD", "0")
    _watching(seen).run({})
    assert [(1234, 10, OLD_THRESHOLD), (700, 10, 10)] == seen
    assert (700, 10, 10) == gc.get_threshold()


def test_a_bad_setting_fails_the_run_saying_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that is not a whole number >= 0 fails the run before its first step, naming the
    variable and its values; the thresholds stay as they were and the next run counts from zero."""
    seen: list[tuple[int, ...]] = []
    monkeypatch.setenv("WFKIT_GC_THRESHOLD", "lots")
    with pytest.raises(ValueError, match=r"WFKIT_GC_THRESHOLD='lots' is not a whole number >= 0: set it to"):
        _watching(seen).run({})
    assert [] == seen
    assert (700, 10, 10) == gc.get_threshold()
    monkeypatch.delenv("WFKIT_GC_THRESHOLD")
    assert "succeeded" == _watching(seen).run({}).status
    assert (700, 10, 10) == gc.get_threshold()


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_cyclic_garbage_made_during_a_run_is_still_collected() -> None:
    """A step's own garbage with cycles is collected while the run executes, without a call to
    gc.collect(): after more container allocations than the raised threshold."""
    flow = wf.Workflow("garbage")
    freed: list[bool] = []

    @flow.step
    async def churn(state: Any) -> None:
        first = _Node()
        watch = weakref.ref(first)
        del first
        keep = [[] for _ in range(YOUNG_THRESHOLD + 1_000)]  # net new containers: a pass is due
        freed.append(watch() is None)
        del keep

    assert "succeeded" == flow.run({}).status
    assert [True] == freed


def test_a_full_pass_due_when_runs_start_waits_until_they_ended() -> None:
    """Passes over the middle generation counted up before the runs executed (a burst's tasks are
    made before any of them runs) make no full pass, over the whole heap, while runs execute: it
    comes with the collector's first pass after the last run ended (as the run ends or after)."""
    full: list[str] = []
    where = ["before"]

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(where[0])

    flow = wf.Workflow("old-generation")
    kept: list[Any] = []
    # CPython makes a full pass only once the objects that reached the oldest generation since
    # the last one are more than a quarter of those that survived it: the step keeps a third.
    gc.collect()
    long_lived = len(gc.get_objects()) // 3 + 10_000

    @flow.step
    async def churn(state: Any) -> None:
        # Long-lived objects, then the middle generation's passes a full pass waits for.
        kept.append([[] for _ in range(long_lived)])
        for _ in range(11):
            gc.collect(1)
        where[0] = "during"
        burst = [[] for _ in range(YOUNG_THRESHOLD + 1_000)]  # a pass over the youngest is due
        del burst
        where[0] = "ending"  # the run ends, its thresholds are put back, the loop closes

    gc.callbacks.append(note)
    try:
        assert "succeeded" == flow.run({}).status
        where[0] = "after"
        burst = [[] for _ in range(1_000)]  # the thresholds are back: a pass is due
        del burst
    finally:
        gc.callbacks.remove(note)
        kept.clear()
    assert "during" not in full
    assert {"ending", "after"} & set(full)
