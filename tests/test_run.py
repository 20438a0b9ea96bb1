"""The Run handle: identity, status, state and event copies, timing, path, errors, waiting."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import wfkit as wf


def _chain() -> wf.Workflow:
    flow = wf.Workflow("chain")
    flow.step(lambda s: {"x": s.get("x", 0) + 1}, name="a")
    flow.step(lambda s: {"y": s["x"] * 10}, name="b")
    flow.chain("a", "b")
    return flow


def _failing() -> wf.Workflow:
    flow = wf.Workflow("failing")

    @flow.step
    def boom(state: Any) -> None:
        raise PermissionError("no access")

    return flow


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event a step blocks on; always released at teardown so no worker thread lingers."""
    event = threading.Event()
    yield event
    event.set()


def _gated(gate: threading.Event) -> wf.Workflow:
    flow = wf.Workflow("gated")

    @flow.step
    def hold(state: Any) -> dict[str, Any]:
        gate.wait(5)
        return {"released": True}

    return flow


# ---- identity and status -------------------------------------------------------------------------


def test_run_id_is_the_given_one_or_a_fresh_hex_id() -> None:
    """run_id is the one passed to run(), else a new 24-hex-digit id per run."""
    flow = _chain()
    assert "r-1" == flow.run({}, run_id="r-1").run_id
    first, second = flow.run({}).run_id, flow.run({}).run_id
    assert 24 == len(first)
    int(first, 16)  # raises if not hexadecimal
    assert first != second


def test_a_fresh_run_id_starts_with_its_creation_time_so_runs_made_together_are_neighbours() -> None:
    """The first 12 digits are the wall clock in milliseconds when the run was made (so ids made in
    turn sort in turn, and concurrent runs' rows are neighbours in the store's indexes); the other 12
    are random, so a burst made within one millisecond still gets distinct ids."""
    flow = _chain()
    before = time.time_ns() // 1_000_000
    made = [flow.run({}).run_id]
    time.sleep(0.002)
    made.append(flow.run({}).run_id)
    after = time.time_ns() // 1_000_000
    assert all(before <= int(run_id[:12], 16) <= after for run_id in made)
    assert made == sorted(made)
    from wfkit.engine._workflow import _new_run_id

    ids = [_new_run_id() for _ in range(5000)]
    assert 5000 == len(set(ids))
    assert len({run_id[12:] for run_id in ids}) == 5000  # the random part alone tells them apart


def test_workflow_is_the_workflow_name() -> None:
    """workflow names the workflow the run belongs to."""
    assert "chain" == _chain().run({}).workflow


def test_status_of_succeeded_and_failed_runs() -> None:
    """status is 'succeeded' for a clean run and 'failed' for one whose step failed."""
    assert wf.RunStatus.SUCCEEDED == _chain().run({}).status
    assert wf.RunStatus.FAILED == _failing().run({}, raise_on_error=False).status


def test_error_is_none_on_success_and_the_run_error_on_failure() -> None:
    """error is None for a clean run; for a failed one it is the StepFailedError with its cause."""
    assert _chain().run({}).error is None
    run = _failing().run({}, raise_on_error=False)
    assert isinstance(run.error, wf.StepFailedError)
    assert isinstance(run.error.__cause__, PermissionError)


# ---- copies ------------------------------------------------------------------------------------


def test_state_is_a_copy_callers_cannot_mutate_into_the_run() -> None:
    """Changing the dict run.state returned leaves the run's state as it was."""
    run = _chain().run({"x": 1})
    snapshot = run.state
    snapshot["y"] = "tampered"
    snapshot["extra"] = 1
    del snapshot["x"]
    assert {"x": 2, "y": 20} == run.state
    assert run.state is not run.state


def test_result_is_a_copy_too() -> None:
    """Changing the dict result() returned leaves the run's state as it was."""
    run = _chain().run({"x": 1})
    result = run.result()
    result.clear()
    assert {"x": 2, "y": 20} == run.result()


def test_events_is_a_copy_callers_cannot_mutate_into_the_run() -> None:
    """Appending to or clearing the list run.events returned leaves the run's events as they were."""
    run = _chain().run({})
    events = run.events
    events.append(events[0])
    run.events.clear()
    assert ["a", "b"] == [e.step for e in run.events]
    assert run.events is not run.events


def test_late_results_is_an_empty_copy_when_nothing_overran() -> None:
    """late_results is empty for a run whose steps all finished in time, and a fresh list each time."""
    run = _chain().run({})
    run.late_results.append({"step": "fake"})
    assert [] == run.late_results


# ---- timing and done() ---------------------------------------------------------------------------


def test_started_and_ended_at_are_set_and_ordered() -> None:
    """A finished run has started_at <= ended_at, both wall-clock times taken during the run."""
    before = time.time()
    run = _chain().run({})
    after = time.time()
    assert run.started_at is not None
    assert run.ended_at is not None
    assert before <= run.started_at <= run.ended_at <= after


def test_failed_run_has_end_time_too() -> None:
    """A failed run also records when it started and ended, in order."""
    run = _failing().run({}, raise_on_error=False)
    assert run.started_at is not None
    assert run.ended_at is not None
    assert run.started_at <= run.ended_at


def test_a_started_run_is_pending_with_no_times_until_the_loop_runs_it() -> None:
    """Before its task gets a turn a started run is pending, not done, with no start or end time."""

    async def cell() -> tuple[tuple[str, bool, float | None, float | None], wf.Run]:
        run = _chain().start({})
        before = (run.status, run.done(), run.started_at, run.ended_at)
        return before, await run

    before, run = asyncio.run(cell())
    assert (wf.RunStatus.PENDING, False, None, None) == before
    assert run.done()
    assert run.started_at is not None


def test_done_is_true_for_every_finished_status() -> None:
    """done() is True once a run has ended, whether it succeeded or failed."""
    assert _chain().run({}).done()
    assert _failing().run({}, raise_on_error=False).done()


# ---- path() --------------------------------------------------------------------------------------


def test_path_lists_only_ok_steps_in_order() -> None:
    """path() skips retried and failed attempts and lists completed steps in completion order."""
    flow = wf.Workflow("mixed")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0))
    def flaky(state: Any, ctx: wf.StepContext) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("blip")

    @flow.step(fallback="rescue")
    def broken(state: Any) -> None:
        raise PermissionError("denied")

    flow.step(lambda s: None, name="rescue")
    flow.chain("flaky", "broken")
    run = flow.run({})
    assert ["retry", "ok", "failed", "ok"] == [e.status for e in run.events]
    assert ["flaky", "rescue"] == run.path()


def test_path_of_a_failed_run_stops_at_the_failure() -> None:
    """A run that failed at its second step has only the first step in its path."""
    flow = wf.Workflow("half")
    flow.step(lambda s: None, name="first")
    flow.step(lambda s: 1 / 0, name="second")
    flow.step(lambda s: None, name="third")
    flow.chain("first", "second", "third")
    assert ["first"] == flow.run({}, raise_on_error=False).path()


# ---- raise_for_status() and result() -------------------------------------------------------------


def test_raise_for_status_returns_the_run_itself_when_fine() -> None:
    """raise_for_status() on a successful run returns that same run, for chaining."""
    run = _chain().run({})
    assert run is run.raise_for_status()


def test_raise_for_status_raises_with_the_run_attached() -> None:
    """raise_for_status() on a failed run raises its error, carrying the run as `.run`."""
    run = _failing().run({}, raise_on_error=False)
    with pytest.raises(wf.StepFailedError, match=r"step 'boom', attempt 1: failed with PermissionError") as info:
        run.raise_for_status()
    assert run is info.value.run  # type: ignore[attr-defined]
    assert run.error is info.value


def test_raise_for_status_twice_raises_the_same_error() -> None:
    """Calling raise_for_status() again raises the very same error object, still carrying the run."""
    run = _failing().run({}, raise_on_error=False)
    with pytest.raises(wf.StepFailedError) as first:
        run.raise_for_status()
    with pytest.raises(wf.StepFailedError) as second:
        run.raise_for_status()
    assert first.value is second.value
    assert run is second.value.run  # type: ignore[attr-defined]


def test_run_raises_on_error_by_default_with_run_attached() -> None:
    """flow.run() raises a failed run's error at once, and the error leads back to the run's events."""
    with pytest.raises(wf.StepFailedError, match="no access") as info:
        _failing().run({})
    run = info.value.run  # type: ignore[attr-defined]
    assert isinstance(run, wf.Run)
    assert ["failed"] == [e.status for e in run.events]


def test_result_returns_final_state() -> None:
    """result() of a finished run is its final state."""
    assert {"x": 6, "y": 60} == _chain().run({"x": 5}).result()


def test_result_of_a_failed_run_raises_its_error() -> None:
    """result() of a failed run raises the run's error instead of returning partial state."""
    run = _failing().run({}, raise_on_error=False)
    with pytest.raises(wf.StepFailedError, match="no access"):
        run.result()


def test_repr_of_a_failed_run_names_the_error() -> None:
    """A failed run's repr gives its status and the type of its error."""
    run = _failing().run({}, raise_on_error=False, run_id="r-9")
    assert "<Run r-9 of 'failing': failed, 0 steps done, 1 events, error=StepFailedError>" == repr(run)


# ---- awaiting ------------------------------------------------------------------------------------


def test_a_run_awaited_twice_returns_the_same_run() -> None:
    """Awaiting a started run twice gives back the same handle both times."""

    async def cell() -> tuple[wf.Run, wf.Run, wf.Run]:
        run = _chain().start({"x": 1})
        first = await run
        second = await run
        return run, first, second

    run, first, second = asyncio.run(cell())
    assert run is first
    assert run is second
    assert {"x": 2, "y": 20} == second.state


def test_a_failed_run_awaited_twice_raises_the_same_error() -> None:
    """Awaiting a failed run again raises the same error object, with the run attached."""

    async def cell() -> tuple[wf.Run, BaseException, BaseException]:
        run = _failing().start({})
        errors = []
        for _ in range(2):
            with pytest.raises(wf.StepFailedError) as info:
                await run
            errors.append(info.value)
        return run, errors[0], errors[1]

    run, first, second = asyncio.run(cell())
    assert first is second
    assert run is first.run  # type: ignore[attr-defined]


def test_await_on_a_run_that_already_finished() -> None:
    """Awaiting a run that has already ended returns it at once, whether from run() or start()."""

    async def cell() -> tuple[wf.Run, wf.Run, wf.Run, wf.Run]:
        blocking = _chain().run({})
        started = _chain().start({})
        for _ in range(1000):
            if started.done():
                break
            await asyncio.sleep(0.001)
        assert started.done()
        return blocking, await blocking, started, await started

    blocking, awaited_blocking, started, awaited_started = asyncio.run(cell())
    assert blocking is awaited_blocking
    assert started is awaited_started
    assert wf.RunStatus.SUCCEEDED == awaited_started.status


def test_await_on_an_already_failed_run_raises() -> None:
    """Awaiting a failed run that already ended raises its error at once."""
    run = _failing().run({}, raise_on_error=False)

    async def cell() -> None:
        await run

    with pytest.raises(wf.StepFailedError, match="no access"):
        asyncio.run(cell())


def test_await_a_background_run_from_another_loop() -> None:
    """A run started from plain code (background loop) can be awaited from a different loop."""
    run = _chain().start({"x": 3})

    async def cell() -> wf.Run:
        return await run

    assert run is asyncio.run(cell())
    assert {"x": 4, "y": 40} == run.state


# ---- wait() --------------------------------------------------------------------------------------


def test_wait_with_timeout_on_a_background_run(gate: threading.Event) -> None:
    """wait(timeout) raises TimeoutError while a background run goes on, and returns the run once it ends."""
    run = _gated(gate).start({})
    with pytest.raises(TimeoutError):
        run.wait(timeout=0.05)
    assert not run.done()
    assert wf.RunStatus.RUNNING == run.status
    with pytest.raises(RuntimeError, match=r"is still running; await it first"):
        run.result()
    gate.set()
    assert run is run.wait(timeout=2)
    assert run.done()
    assert {"released": True} == run.result()


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        ("5", TypeError, r"run\.wait\(timeout=\.\.\.\) must be seconds, as a number or a datetime\.timedelta, got '5'"),
        (True, TypeError, r"got True \(bool\): a bool is no duration"),
        (math.nan, ValueError, r"must be > 0 seconds, got nan"),
        (-1, ValueError, r"must be > 0 seconds, got -1"),
        (math.inf, ValueError, r"got inf: leave the timeout unset \(None\) for no time limit"),
    ],
)
def test_wait_refuses_a_timeout_that_is_no_duration(
    gate: threading.Event, timeout: Any, error: type[Exception], message: str
) -> None:
    """`run.wait(timeout="5")` failed inside concurrent.futures comparing a str with an int; True,
    NaN and -1 returned at once as if timed out; infinity overflowed a timestamp. Each is refused
    in wait's own words, and the run goes on."""
    run = _gated(gate).start({})
    with pytest.raises(error, match=message):
        run.wait(timeout=timeout)
    gate.set()
    assert wf.RunStatus.SUCCEEDED == run.wait(timeout=dt.timedelta(seconds=5)).status


def test_a_wait_that_times_out_says_which_run_and_that_it_goes_on(gate: threading.Event) -> None:
    """concurrent.futures' TimeoutError said nothing; 0 asks without blocking."""
    run = _gated(gate).start({})
    for timeout, shown in ((0, "0"), (dt.timedelta(milliseconds=20), "0.02")):
        with pytest.raises(TimeoutError) as info:
            run.wait(timeout=timeout)
        assert (
            f"run {run.run_id} did not end within {shown} s; it goes on: wait again, or run.cancel() to stop it"
        ) == str(info.value)
    gate.set()
    run.wait(timeout=5)


def test_wait_on_a_failed_background_run_raises_with_run_attached() -> None:
    """wait() on a background run that failed raises its error, carrying the run."""
    run = _failing().start({})
    with pytest.raises(wf.StepFailedError, match="no access") as info:
        run.wait(timeout=2)
    assert run is info.value.run  # type: ignore[attr-defined]


def test_wait_on_a_finished_blocking_run_returns_it() -> None:
    """wait() on a run that run() already finished returns it without needing a loop."""
    run = _chain().run({})
    assert run is run.wait()


def test_wait_on_a_finished_failed_blocking_run_raises() -> None:
    """wait() on a failed run that run() already finished raises its error."""
    run = _failing().run({}, raise_on_error=False)
    with pytest.raises(wf.StepFailedError, match="no access"):
        run.wait()


# ---- cancel() of a background run ----------------------------------------------------------------


def _slow_to_cancel() -> tuple[wf.Workflow, threading.Event]:
    """A step that takes 0.2 s to clean up when cancelled, as a step closing a connection would."""
    started = threading.Event()
    flow = wf.Workflow("slow-cancel")

    @flow.step
    async def work(state: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.2)

    return flow, started


def test_wait_after_cancel_of_a_background_run_waits_for_the_end() -> None:
    """cancel() then wait() on a background run blocks until it has ended as cancelled, then raises."""
    flow, started = _slow_to_cancel()
    run = flow.start({})
    assert started.wait(2)
    run.cancel()
    try:
        with pytest.raises(wf.RunError, match="cancelled"):
            run.wait(timeout=2)
        assert wf.RunStatus.CANCELLED == run.status
    finally:
        deadline = time.monotonic() + 2
        while not run.done() and time.monotonic() < deadline:
            time.sleep(0.01)


def test_await_after_cancel_of_a_background_run_waits_for_the_end() -> None:
    """cancel() then `await run` on a background run waits until it has ended as cancelled, then raises."""
    flow, started = _slow_to_cancel()
    run = flow.start({})
    assert started.wait(2)
    run.cancel()

    async def cell() -> None:
        await run

    try:
        with pytest.raises(wf.RunError, match="cancelled"):
            asyncio.run(cell())
        assert wf.RunStatus.CANCELLED == run.status
    finally:
        deadline = time.monotonic() + 2
        while not run.done() and time.monotonic() < deadline:
            time.sleep(0.01)


def test_a_misspelt_run_option_is_refused_with_a_suggestion() -> None:
    """run/arun/start/resume share one checked set of options: a typo names the closest option."""
    flow = wf.Workflow("options-typo")

    @flow.step
    def only(state):
        return {"done": True}

    with pytest.raises(TypeError, match=r"'timout' \(did you mean 'timeout'\?\)"):
        flow.run({}, workspace=False, timout=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"resume\(\) got unexpected keyword argument\(s\) 'seed'"):
        flow.resume("no-such-run", seed=1)  # type: ignore[call-arg]


def test_run_options_reach_the_run() -> None:
    """Options given once are what the run uses: its id, its seed and its workspace choice."""
    flow = wf.Workflow("options-reach")

    @flow.step
    def only(state, ctx):
        return {"roll": ctx.rng.random()}

    first = flow.run({}, workspace=False, run_id="fixed-id", seed=7)
    second = flow.run({}, workspace=False, seed=7)
    assert "fixed-id" == first.run_id
    assert first.state["roll"] == second.state["roll"]


# ---- history, streaming, fork ------------------------------------------------------------------


def _router() -> wf.Workflow:
    flow = wf.Workflow("fork-router", merge={"trail": wf.append})

    @flow.step
    def classify(state: Any) -> dict[str, Any]:
        return {"kind": "refund" if "money" in state["query"] else "other", "trail": "classify"}

    @flow.step
    def refund(state: Any) -> dict[str, Any]:
        return {"answer": "refunded", "trail": "refund"}

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        return {"answer": f"about {state['kind']}", "trail": "answer"}

    flow.route("classify", wf.when("kind", "eq", "refund") >> wf.go("refund"), default=wf.go("answer"))
    return flow


@pytest.mark.parametrize("workspace", [False, None], ids=["memory", "durable"])
def test_history_lists_the_state_after_each_step_and_what_it_wrote(workspace: Any) -> None:
    """One row per step: what it wrote, where it went, and the whole state after it (merges applied)."""
    run = _router().run({"query": "money back"}, workspace=workspace)
    history = run.history()
    assert ["classify", "refund"] == list(history["step"])
    assert [["kind", "trail"], ["answer", "trail"]] == list(history["wrote"])
    assert ["refund", None] == [None if pd_isna(r) else r for r in history["route"]]
    assert {"query": "money back", "kind": "refund", "trail": ["classify"]} == history["state"][0]
    assert run.state == history["state"].iloc[-1]


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_history_of_a_resumed_durable_run_includes_the_steps_before_the_halt() -> None:
    """A run halted at a gate and resumed lists the steps of both sessions."""
    flow = wf.Workflow("history-gate")
    flow.step(lambda s: {"a": 1}, name="a")
    flow.step(lambda s: {"b": s["a"] + 1}, name="b", approval="check")
    flow.chain("a", "b")
    run = flow.run({}, policy="halt")
    assert "waiting_approval" == run.status
    run.approve(by="me", resume=False)
    resumed = flow.resume(run.run_id)
    assert ["a", "b"] == list(resumed.history()["step"])
    assert {"a": 1, "b": 2} == resumed.history()["state"].iloc[-1]


def test_history_shows_map_items_only_when_asked() -> None:
    """A map step is one row; items=True adds a row per item with its index and result."""
    flow = wf.Workflow("history-map", inputs=["xs"])
    flow.map(lambda x: x + 1, over="xs", into="ys", name="inc")
    run = flow.run({"xs": [1, 2]}, workspace=False)
    assert ["ok"] == list(run.history()["outcome"])
    items = run.history(items=True)
    assert [("item", 0), ("item", 1), ("ok", None)] == [
        (o, None if pd_isna(i) else int(i)) for o, i in zip(items["outcome"], items["map_index"], strict=True)
    ]


@pytest.mark.parametrize("workspace", [False, None])
def test_history_shows_a_step_that_fell_back(workspace: Any) -> None:
    """A step that failed and went to its fallback is a row of the history (outcome ``fallback``,
    the route to the fallback), as the docstring says; it showed only with items=True."""
    flow = wf.Workflow("history-fallback")

    @flow.step(fallback="apologise")
    def lookup(state: Any) -> dict[str, Any]:
        raise ValueError("no such order")

    flow.step(lambda s: {"answer": "sorry"}, name="apologise")
    run = flow.run({}, workspace=workspace)
    rows = run.history()
    assert [("lookup", "fallback", "apologise"), ("apologise", "ok", None)] == [
        (s, o, None if r is None or r != r else r)
        for s, o, r in zip(rows["step"], rows["outcome"], rows["route"], strict=True)
    ]


def _history_rows(run: wf.Run) -> list[tuple[str, int, str, str | None]]:
    rows = run.history()
    return [
        (s, int(v), o, None if pd_isna(r) else r)
        for s, v, o, r in zip(rows["step"], rows["visit"], rows["outcome"], rows["route"], strict=True)
    ]


def _revised_on_rejection() -> wf.Workflow:
    """draft -> publish (gated; a rejection routes to revise) and revise -> publish."""
    flow = wf.Workflow("history-reject")
    flow.step(lambda s: {"version": 1}, name="draft")
    flow.step(lambda s: {"version": s["version"] + 1}, name="revise", max_visits=3)
    flow.step(
        lambda s: {"published": s["version"]}, name="publish", approval=wf.Approval("Publish?", on_reject="revise")
    )
    flow.chain("draft", "publish")
    flow.route("revise", default=wf.go("publish"))
    return flow


def test_history_shows_a_rejected_gate_where_the_run_went_on_reject() -> None:
    """A rejected gate is a row of the history (outcome ``rejected``, the route to its on_reject
    step), in the session that applied the rejection and in a later one that replays it; it was
    missing, then shown as a ``fallback``."""
    from wfkit.store._workspace import Workspace

    flow = _revised_on_rejection()
    run = flow.run({})
    ws = Workspace()
    ws.reject(run.tickets()[0].ticket_id, by="ed", comment="too long", resume=False)
    again = flow.resume(run.run_id)
    assert "waiting_approval" == again.status
    rejected_then_revised = [
        ("draft", 1, "ok", None),
        ("publish", 1, "rejected", "revise"),
        ("revise", 1, "ok", "publish"),
    ]
    assert rejected_then_revised == _history_rows(again)
    assert {"version": 1} == again.history()["state"][1]  # the gate's step never ran: nothing written
    ws.approve(again.tickets()[0].ticket_id, by="ed", resume=False)
    done = flow.resume(run.run_id)
    assert [*rejected_then_revised, ("publish", 2, "ok", None)] == _history_rows(done)


def test_history_shows_the_rejection_that_failed_the_run() -> None:
    """A gate with no on_reject step: its rejection, the run's last row, says why the run failed."""
    flow = wf.Workflow("history-reject-fail")
    flow.step(lambda s: {"a": 1}, name="a")
    flow.step(lambda s: {"b": 2}, name="b", approval="check")
    flow.chain("a", "b")
    run = flow.run({}, policy="reject", raise_on_error=False)
    assert "failed" == run.status
    assert [("a", 1, "ok", None), ("b", 1, "rejected", None)] == _history_rows(run)


def test_stream_yields_each_event_as_it_happens_and_ends_with_the_run() -> None:
    """flow.stream yields the events in order, a step's event while the next step is still running."""
    flow = wf.Workflow("streamed")
    seen_when_b_ran: list[int] = []
    got: list[str] = []

    @flow.step
    async def a(state: Any) -> dict[str, Any]:
        return {"a": 1}

    @flow.step
    async def b(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.1)  # the consumer gets a turn while b runs
        seen_when_b_ran.append(len(got))
        return {"b": 2}

    flow.chain("a", "b")

    async def consume() -> None:
        async for event in flow.stream({}, workspace=False):
            got.append(f"{event.step}:{event.status}")
            await asyncio.sleep(0)

    asyncio.run(consume())
    assert ["a:ok", "b:ok"] == got
    assert [1] == seen_when_b_ran


def test_stream_raises_the_error_of_a_failed_run_after_its_events() -> None:
    """The failing step's event arrives, then the run's error is raised."""
    got: list[str] = []

    async def consume() -> None:
        async for event in _failing().stream({}, workspace=False):
            got.append(event.status)

    with pytest.raises(wf.StepFailedError):
        asyncio.run(consume())
    assert ["failed"] == got


def test_run_stream_on_a_started_run_first_yields_what_happened_already() -> None:
    """Subscribing late loses nothing: earlier events come first, then the live ones, once each."""
    flow = wf.Workflow("late")
    flow.step(lambda s: {"a": 1}, name="a")
    flow.step(lambda s: {"b": 1}, name="b")
    flow.chain("a", "b")

    async def cell() -> list[str]:
        run = flow.start({}, workspace=False)
        await asyncio.sleep(0.2)
        return [e.step async for e in run.stream()]

    assert ["a", "b"] == asyncio.run(cell())


def test_stream_with_chunks_yields_llm_text_as_it_arrives_inside_its_step() -> None:
    """ctx.llm.stream's chunks reach the stream tagged with their step, before that step's event."""
    flow = wf.Workflow("tokens")

    @flow.step
    async def write(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        async with ctx.llm.stream("say four words") as stream:
            text = "".join([piece async for piece in stream])
        return {"text": text}

    model = wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=3, reply="one two three four")

    async def consume() -> list[Any]:
        llm = wf.llm.ChatClient(transport=model)
        return [item async for item in flow.stream({}, chunks=True, workspace=False, llm=llm)]

    items = asyncio.run(consume())
    chunks = [i for i in items if isinstance(i, wf.TokenChunk)]
    assert "one two three four" == "".join(c.text for c in chunks).strip()
    assert {"write"} == {c.step for c in chunks}
    assert isinstance(items[-1], wf.StepEvent)
    assert "ok" == items[-1].status


@pytest.mark.parametrize("workspace", [False, None], ids=["memory", "durable"])
def test_fork_applies_the_update_reroutes_and_leaves_the_original_alone(workspace: Any) -> None:
    """Forked at classify with kind=other, the fork answers instead of refunding; the original is unchanged."""
    flow = _router()
    original = flow.run({"query": "money back"}, workspace=workspace)
    before = original.state

    async def fork() -> wf.Run:
        return await original.fork("classify", {"kind": "other"})

    forked = asyncio.run(fork())
    assert "succeeded" == forked.status
    assert ["answer"] == forked.path()
    assert {"query": "money back", "kind": "other", "trail": ["classify", "answer"], "answer": "about other"} == (
        forked.state
    )
    assert before == original.state
    assert original.run_id != forked.run_id
    assert {"run_id": original.run_id, "at": "classify", "visit": 1, "update": {"kind": "other"}} == (
        forked.forked_from
    )
    assert ["classify", "classify", "answer"] == list(forked.history()["step"])
    assert "fork" == forked.history()["outcome"][1]


def test_a_durable_fork_is_stored_with_its_origin_and_can_itself_be_forked() -> None:
    """Workflow.fork by run id records the origin in the workspace; a fork of a fork shares both."""
    flow = _router()
    original = flow.run({"query": "money back"})
    first = flow.fork(original.run_id, at="classify", update={"kind": "other"})
    second = flow.fork(first.run_id, at="classify", update={"kind": "refund"})
    assert "refunded" == second.state["answer"]
    info = wf.Workspace().run_info(second.run_id)
    assert {"run_id": first.run_id, "at": "classify", "visit": 1} == info["forked_from"]
    assert "refunded" == wf.Workspace().run_info(original.run_id)["state"]["answer"]
    assert "about other" == wf.Workspace().run_info(first.run_id)["state"]["answer"]


def test_fork_at_a_step_the_run_never_completed_says_which_steps_it_did() -> None:
    """Forking at `refund` of a run that answered lists the completed steps."""
    run = _router().run({"query": "hello"}, workspace=False)
    with pytest.raises(ValueError, match=r"never completed step 'refund'.*steps it completed: answer, classify"):
        run.fork("refund")


def test_fork_at_an_unknown_step_suggests_the_right_name() -> None:
    """A typo in at= is refused with a suggestion before anything is created."""
    run = _router().run({"query": "hello"}, workspace=False)
    with pytest.raises(ValueError, match="no such step \\(did you mean 'classify'\\?\\)"):
        run.fork("clasify")


def test_fork_refuses_an_update_that_is_not_a_dict() -> None:
    """update= must be a dict with string keys."""
    run = _router().run({"query": "hello"}, workspace=False)
    with pytest.raises(TypeError, match="a fork's update is a dict with string keys"):
        run.fork("classify", [("kind", "x")])  # type: ignore[arg-type]


# ---- the event loop never waits for the store ------------------------------------------------------


class _HeldLock:
    """Another connection holds the store's write lock (``BEGIN IMMEDIATE``) until ``release()``
    or ``seconds`` pass: every write of this process waits for it, as behind a slow disk or a
    long transaction of another process."""

    def __init__(self, workspace: Any, seconds: float) -> None:
        import sqlite3

        self.conn = sqlite3.connect(workspace / "wfkit.db", isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")
        self.held_from = time.perf_counter()
        self.released_at: float | None = None
        self._timer = threading.Timer(seconds, self.release)
        self._timer.start()

    def release(self) -> None:
        if self.released_at is None:
            self.released_at = time.perf_counter()
            self.conn.execute("ROLLBACK")
            self.conn.close()

    def join(self) -> None:
        self._timer.join()


async def _ticks_while_held(action: Any, workspace: Any) -> tuple[Any, list[float], _HeldLock]:
    """Run ``action()`` while the store's lock is held for 0.3 s, with a heartbeat every ms; returns
    what ``action`` returned, the heartbeat's tick times and the lock (when it was held)."""
    ticks: list[float] = []
    stop = asyncio.Event()
    # A full pass of the cyclic collector over this test process's heap (kernels, Dask, pandas by
    # this point of the suite) holds the interpreter for 0.1-0.7 s: one that fell inside the 0.3 s
    # window once left the heartbeat without a tick, which is not what this measures. So the heap
    # is collected now and frozen (kept out of the passes) until the window closes.
    gc.collect()
    gc.freeze()
    try:

        async def heartbeat() -> None:
            while not stop.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.001)

        beating = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.01)
        lock = _HeldLock(workspace, 0.3)
        try:
            result = await action()
            await asyncio.to_thread(lock.join)  # the heartbeat keeps ticking until the lock is released
        finally:
            lock.release()
            lock.join()
            stop.set()
            await beating
    finally:
        gc.unfreeze()
    return result, ticks, lock


def _during(ticks: list[float], lock: _HeldLock) -> int:
    assert lock.released_at is not None
    return sum(1 for t in ticks if lock.held_from < t < lock.released_at)


def _gated_flow(name: str) -> wf.Workflow:
    flow = wf.Workflow(name)
    flow.step(lambda s: {"a": 1}, name="a")
    flow.step(lambda s: {"b": s["a"] + 1}, name="b", approval="check")
    flow.edge("a", "b")
    return flow


def test_start_on_a_running_loop_does_not_wait_for_the_store(tmp_path: Any) -> None:
    """flow.start() in a loop returns while the store's lock is held; the loop keeps ticking, and the run
    (its row written by its own task) succeeds once the lock is free."""
    flow = wf.Workflow("start-held")
    flow.step(lambda s: {"x": 1}, name="one")
    ws = tmp_path / "ws"
    flow.run({}, workspace=ws)  # the store exists

    async def main() -> tuple[wf.Run, int]:
        async def start() -> wf.Run:
            return flow.start({}, workspace=ws)

        run, ticks, lock = await _ticks_while_held(start, ws)
        await run
        return run, _during(ticks, lock)

    run, ticked = asyncio.run(main())
    assert "succeeded" == run.status
    assert ticked > 0  # a loop stuck on the lock would not have ticked until it was released


def test_a_duplicate_run_id_started_on_a_loop_fails_when_awaited(tmp_path: Any) -> None:
    """On a running loop, start() with a run id that exists returns, awaiting the run raises why, and
    drain() has nothing of it to wait for."""
    flow = wf.Workflow("start-dup")
    flow.step(lambda s: {"x": 1}, name="one")
    ws = tmp_path / "ws"
    flow.run({}, workspace=ws, run_id="same")

    async def main() -> list[wf.Run]:
        run = flow.start({}, workspace=ws, run_id="same")
        with pytest.raises(ValueError, match="a run with id 'same' already exists"):
            await run
        return await wf.drain()

    assert [] == asyncio.run(main())


def test_aresume_takes_the_lease_without_blocking_the_loop(tmp_path: Any) -> None:
    """flow.aresume() waits for the held lock without stopping the loop: the heartbeat ticks meanwhile
    (the gate is still open, so the resumed run halts there again)."""
    flow = _gated_flow("aresume-held")
    ws = tmp_path / "ws"
    halted = flow.run({}, workspace=ws)
    assert "waiting_approval" == halted.status

    async def main() -> tuple[wf.Run, int]:
        async def resume() -> wf.Run:
            return await flow.aresume(halted.run_id, workspace=ws)

        run, ticks, lock = await _ticks_while_held(resume, ws)
        return run, _during(ticks, lock)

    run, ticked = asyncio.run(main())
    assert "waiting_approval" == run.status
    assert ticked > 0


def test_approve_on_a_running_loop_does_not_wait_for_the_store(tmp_path: Any) -> None:
    """run.approve() in a loop returns while the lock is held; the decision and the resume happen in
    the run's task, and `await run` sees the run succeed."""
    flow = _gated_flow("approve-held")
    ws = tmp_path / "ws"

    async def main() -> tuple[wf.Run, int]:
        run = await flow.arun({}, workspace=ws)
        assert "waiting_approval" == run.status

        async def approve() -> wf.Run:
            return run.approve(by="ann")

        _, ticks, lock = await _ticks_while_held(approve, ws)
        await run
        return run, _during(ticks, lock)

    run, ticked = asyncio.run(main())
    assert "succeeded" == run.status
    assert ticked > 0
    assert [("approved", "ann")] == [(t.status, t.decided_by) for t in run.tickets(status=None)]


def test_deciding_a_decided_ticket_on_a_loop_answers_at_once(tmp_path: Any) -> None:
    """On a running loop, the same decision again is a no-op that says so and the other one is
    refused, with no write."""
    flow = _gated_flow("decided-twice")
    ws = tmp_path / "ws"

    async def main() -> wf.Run:
        run = await flow.arun({}, workspace=ws)
        run.approve(by="ann")
        await run
        with pytest.warns(wf.AlreadyDecidedWarning, match="was already approved by ann at .*: nothing changed"):
            assert run is run.approve(by="ann")
        with pytest.raises(wf.TicketError, match="was already approved by ann"):
            run.reject(by="bob")
        return run

    assert "succeeded" == asyncio.run(main()).status


def test_fork_on_a_running_loop_does_not_wait_for_the_store(tmp_path: Any) -> None:
    """run.fork() in a loop returns while the store's lock is held; the heartbeat ticks, and the fork,
    written and rebuilt by its own task, succeeds with its origin stored once the lock is free."""
    flow = _router()
    ws = tmp_path / "ws"
    original = flow.run({"query": "money back"}, workspace=ws)

    async def main() -> tuple[wf.Run, int]:
        async def fork() -> wf.Run:
            return original.fork("classify", {"kind": "other"})

        forked, ticks, lock = await _ticks_while_held(fork, ws)
        await forked
        return forked, _during(ticks, lock)

    forked, ticked = asyncio.run(main())
    assert ("succeeded", "about other") == (forked.status, forked.state["answer"])
    assert ticked > 0
    info = wf.Workspace(ws).run_info(forked.run_id)
    assert ({"run_id": original.run_id, "at": "classify", "visit": 1}, "succeeded") == (
        info["forked_from"],
        info["status"],
    )


def test_a_fork_on_a_loop_with_a_run_id_that_exists_fails_when_awaited(tmp_path: Any) -> None:
    """On a running loop, fork(run_id=...) naming a stored run returns, and awaiting the fork raises why."""
    flow = _router()
    ws = tmp_path / "ws"
    original = flow.run({"query": "money back"}, workspace=ws)
    flow.run({"query": "hello"}, workspace=ws, run_id="taken")

    async def main() -> None:
        await original.fork("classify", {"kind": "other"}, run_id="taken")

    with pytest.raises(ValueError, match="a run with id 'taken' already exists"):
        asyncio.run(main())
    assert "hello" == wf.Workspace(ws).run_info("taken")["inputs"]["query"]  # untouched


@pytest.mark.parametrize(
    ("name", "meant"),
    [("id", "run_id"), ("staus", "status"), ("events_", "events"), ("approved", "approve")],
)
def test_a_misspelt_run_attribute_names_the_closest_public_one(name: str, meant: str) -> None:
    """`run.id` raises an AttributeError naming `run_id` (the closest public attribute), not Python's bare one."""
    run = _chain().run({})
    with pytest.raises(AttributeError) as info:
        getattr(run, name)
    assert f"'Run' object has no attribute {name!r} (did you mean {meant!r}?)" == str(info.value)


def test_a_run_attribute_miss_far_from_any_name_lists_none_and_private_misses_stay_plain() -> None:
    """A name close to no attribute gets Python's message; hasattr and private probes are unaffected."""
    run = _chain().run({})
    with pytest.raises(AttributeError) as info:
        run.zzzz  # noqa: B018
    assert "'Run' object has no attribute 'zzzz'" == str(info.value)
    assert not hasattr(run, "_repr_latex_")
