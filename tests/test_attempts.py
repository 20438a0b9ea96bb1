"""One activation's attempts: retries with backoff and classification, and timeouts."""

from __future__ import annotations

import asyncio
import pickle
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit import Workspace
from wfkit.testing import test_mode


class Flaky(Exception):
    """Fails with a chosen HTTP status, like an API client error."""

    def __init__(self, status_code: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = {"retry-after": retry_after} if retry_after else {}


# ---- retries -----------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_backoff_events() -> None:
    """Two 503s then success: three attempt rows, delays growing, one ok."""
    calls = []
    flow = wf.Workflow("retry")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=0.001, jitter=0))
    def call(state: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < 3:
            raise Flaky(503)
        return {"done": True}

    run = flow.run({})
    assert [(e.status, e.attempt) for e in run.events] == [("retry", 1), ("retry", 2), ("ok", 3)]
    assert [e.retry_delay_s for e in run.events] == [0.001, 0.002, None]
    assert [e.error_kind for e in run.events] == ["transient", "transient", None]


def test_permanent_error_is_not_retried_and_names_run_step_attempt() -> None:
    """A 404 fails at once; the error names run, step and attempt and chains the cause."""
    flow = wf.Workflow("perm")

    @flow.step(retry=wf.RetryPolicy(max_retries=5, base_delay=0))
    def call(state: Any) -> None:
        raise Flaky(404)

    with pytest.raises(wf.StepFailedError) as info:
        flow.run({}, run_id="run-42")
    err = info.value
    assert (err.run_id, err.step, err.attempt) == ("run-42", "call", 1)
    assert "run run-42, step 'call', attempt 1" in str(err)
    assert isinstance(err.__cause__, Flaky)
    assert [e.status for e in err.run.events] == ["failed"]  # type: ignore[attr-defined]


def test_unknown_errors_are_retried_conservatively() -> None:
    """An unclassified error gets max_unknown_retries retries, not max_retries."""
    flow = wf.Workflow("unknown")

    @flow.step(retry=wf.RetryPolicy(max_retries=5, base_delay=0, max_unknown_retries=1))
    def call(state: Any) -> None:
        raise RuntimeError("mystery")

    run = flow.run({}, raise_on_error=False)
    assert [e.status for e in run.events] == ["retry", "failed"]
    assert run.events[-1].error_kind == "unknown"


def test_retry_after_is_honoured() -> None:
    """A 429 with Retry-After waits at least that long, even above max_delay."""
    flow = wf.Workflow("ra")
    calls = []

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.001, jitter=0))
    def call(state: Any) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise Flaky(429, retry_after="0.2")

    run = flow.run({})
    assert run.events[0].retry_delay_s == 0.2
    assert calls[1] - calls[0] >= 0.19


def test_retries_stop_at_max_elapsed() -> None:
    """No retry starts once the policy's time budget would be exceeded."""
    flow = wf.Workflow("budget")

    @flow.step(retry=wf.RetryPolicy(max_retries=100, base_delay=0.05, jitter=0, max_elapsed=0.12))
    def call(state: Any) -> None:
        raise ConnectionError("down")

    t0 = time.monotonic()
    run = flow.run({}, raise_on_error=False)
    assert time.monotonic() - t0 < 1.0
    assert run.status == "failed"
    assert 2 <= len(run.events) <= 3


def test_classifier_can_be_replaced_per_step() -> None:
    """A step's own classifier decides: here every error is permanent."""
    flow = wf.Workflow("cls")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=0), classify=lambda e: wf.ErrorKind.PERMANENT)
    def call(state: Any) -> None:
        raise ConnectionError("would normally retry")

    run = flow.run({}, raise_on_error=False)
    assert [(e.status, e.error_kind) for e in run.events] == [("failed", "permanent")]


@pytest.mark.parametrize("where", ["memory", "durable"])
def test_a_classifier_may_name_the_kind_by_its_value(where: str) -> None:
    """A classifier returning "permanent" (an ErrorKind's value, as the docs and the step log
    spell kinds) is read as ErrorKind.PERMANENT: one attempt, and the step's own error."""
    flow = wf.Workflow("cls-by-name")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=0), classify=lambda e: "permanent")
    def call(state: Any) -> None:
        raise ConnectionError("quota used up")

    run = flow.run({}, workspace=None if where == "durable" else False, raise_on_error=False)
    assert [(e.status, e.error_kind) for e in run.events] == [("failed", "permanent")]
    assert isinstance(run.error, wf.StepFailedError)
    assert isinstance(run.error.__cause__, ConnectionError)


@pytest.mark.parametrize("verdict", [None, "flaky", True])
def test_a_classifier_returning_no_kind_fails_the_run_saying_what_it_must_return(verdict: Any) -> None:
    """A classifier returning something that is no kind fails the run with an error naming the
    step, what it returned and for which error, and what a classifier returns."""
    flow = wf.Workflow("cls-bad")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=0), classify=lambda e: verdict)
    def call(state: Any) -> None:
        raise ConnectionError("quota used up")

    run = flow.run({}, workspace=False, raise_on_error=False)
    assert "failed" == run.status
    message = str(run.error)
    assert f"step 'call': its classify= returned {verdict!r} for ConnectionError('quota used up')" in message
    assert "wfkit.ErrorKind.TRANSIENT, PERMANENT or UNKNOWN" in message


def test_fallback_after_retries_exhausted() -> None:
    """When retries run out the step follows its fallback and the run succeeds."""
    flow = wf.Workflow("fb")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0), fallback="cached")
    def live(state: Any) -> None:
        raise TimeoutError("upstream slow")

    flow.step(lambda s, ctx: {"source": "cache", "why": ctx.failure.error_type}, name="cached")
    run = flow.run({})
    assert run.state == {"source": "cache", "why": "TimeoutError"}
    assert [(e.status, e.route_taken) for e in run.events] == [
        ("retry", None),
        ("retry", None),
        ("failed", "cached"),
        ("ok", None),
    ]


def test_fallback_to_end_finishes_branch_quietly() -> None:
    """fallback=END ends the branch; the run still succeeds."""
    flow = wf.Workflow("fb-end")
    flow.step(lambda s: 1 / 0, name="optional", fallback=wf.END)
    assert flow.run({}).status == "succeeded"


def test_test_mode_makes_backoff_instant_and_seeded() -> None:
    """Under test_mode long backoffs take no time (retry_delay_s 0) and the planned jitter repeats with the seed."""
    flow = wf.Workflow("tm")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=30, max_delay=60))
    def call(state: Any) -> None:
        raise ConnectionError("down")

    t0 = time.monotonic()
    with test_mode(seed=3):
        first = flow.run({}, raise_on_error=False)
        second = flow.run({}, raise_on_error=False)
    assert time.monotonic() - t0 < 1.0
    assert [0.0, 0.0, 0.0, None] == [e.retry_delay_s for e in first.events]
    planned = [(e.extra or {}).get("retry_delay_planned_s") for e in first.events]
    assert planned == [(e.extra or {}).get("retry_delay_planned_s") for e in second.events]
    assert 15 <= planned[0] <= 45


# ---- timeouts ----------------------------------------------------------------------------------


def test_async_step_timeout_cancels_the_step() -> None:
    """An async step over its timeout is cancelled and recorded as a timeout attempt."""
    cancelled = []
    flow = wf.Workflow("to")

    @flow.step(timeout=0.05)
    async def slow(state: Any) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    t0 = time.monotonic()
    with pytest.raises(wf.StepFailedError) as info:
        flow.run({})
    assert time.monotonic() - t0 < 1.0
    assert cancelled == [True]
    assert isinstance(info.value.__cause__, wf.StepTimeoutError)
    event = info.value.run.events[0]  # type: ignore[attr-defined]
    assert (event.status, event.error_kind) == ("timeout", "transient")


def test_timeouts_are_retried_as_transient() -> None:
    """A timed-out attempt is retried; the next, faster one succeeds."""
    flow = wf.Workflow("to-retry")

    @flow.step(timeout=0.05, retry=wf.RetryPolicy(max_retries=2, base_delay=0))
    async def sometimes_slow(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            await asyncio.sleep(1)
        return {"ok": ctx.attempt}

    run = flow.run({})
    assert run.state["ok"] == 2
    assert [e.status for e in run.events] == ["timeout", "ok"]


def test_sync_step_timeout_discards_and_records_late_result() -> None:
    """A sync step over its timeout is abandoned; its late result is discarded and recorded."""
    release = threading.Event()
    flow = wf.Workflow("sync-to", merge={})

    @flow.step(timeout=0.05, fallback="after")
    def blocking(state: Any) -> dict[str, Any]:
        release.wait(5)
        return {"late": True}

    flow.step(lambda s: {"after": True}, name="after")
    run = flow.run({})
    assert "late" not in run.state
    assert run.state["after"]
    release.set()
    deadline = time.monotonic() + 5
    while not run.late_results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(run.late_results) == 1
    assert (
        run.late_results[0]["step"],
        run.late_results[0]["attempt"],
        run.late_results[0]["outcome"],
    ) == ("blocking", 1, "result discarded")


def _irreversible_sender(fail_first_late: bool) -> tuple[wf.Workflow, list[float], list[int]]:
    """An irreversible plain ``def`` step (timeout 0.2 s, two retries) whose first body takes
    0.5 s; it counts its calls and the most bodies that ever ran at once."""
    calls: list[float] = []
    running = [0, 0]  # now, most at once
    lock = threading.Lock()
    flow = wf.Workflow("irreversible-late")

    @flow.step(irreversible=True, timeout=0.2, retry=wf.RetryPolicy(max_retries=2, base_delay=0.001, jitter=0))
    def send(state: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            running[1] = max(running)
        calls.append(time.monotonic())
        try:
            if len(calls) == 1:
                time.sleep(0.5)
                if fail_first_late:
                    raise ConnectionError("connection reset")
            return {"sent": len(calls)}
        finally:
            with lock:
                running[0] -= 1

    return flow, calls, running


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "durable"])
def test_an_irreversible_sync_step_that_returns_after_its_timeout_is_not_run_again(durable: bool) -> None:
    """Its thread cannot be stopped: retries used to start beside it (three sends at once). Now the
    step waits for the body, records its whole time, and fails without a retry, saying why."""
    flow, calls, running = _irreversible_sender(fail_first_late=False)
    run = flow.run({}, raise_on_error=False, workspace=None if durable else False)
    assert (1, 1) == (len(calls), running[1])
    assert "failed" == run.status
    assert re.search(r"not retried: the step is irreversible .* returned after 0\.5\d* s", str(run.error))
    assert "`async def`" in str(run.error)
    [event] = run.events
    assert ("timeout", 1) == (event.status, event.attempt)
    assert event.latency_s >= 0.5  # the body's whole time, not the timeout
    assert [("send", 1, "result discarded")] == [(r["step"], r["attempt"], r["outcome"]) for r in run.late_results]
    if durable:
        assert ["failed"] == [i["status"] for i in Workspace().store.intents(run.run_id)]


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "durable"])
def test_an_irreversible_sync_step_that_fails_after_its_timeout_is_retried_once_it_returned(durable: bool) -> None:
    """A body that raised after its timeout did not finish its side effect: the retry comes, but
    only after that body returned, never beside it."""
    flow, calls, running = _irreversible_sender(fail_first_late=True)
    run = flow.run({}, workspace=None if durable else False)
    assert "succeeded" == run.status
    assert (2, 1) == (len(calls), running[1])
    assert calls[1] - calls[0] >= 0.5
    assert [("timeout", 1), ("ok", 2)] == [(e.status, e.attempt) for e in run.events]
    assert 2 == run.state["sent"]


def test_a_sync_body_that_never_returns_does_not_keep_the_process_from_exiting(tmp_path: Any) -> None:
    """The run gives up such a body at its timeout; the script then ends, where the pool's
    threads, which the interpreter joined at exit, held it until the body returned (here never)."""
    script = tmp_path / "hang.py"
    script.write_text(
        "import threading\n"
        "import wfkit as wf\n"
        "flow = wf.Workflow('hang')\n"
        "@flow.step(timeout=0.2)\n"
        "def stuck(state):\n"
        "    threading.Event().wait()  # a read without a timeout\n"
        "print(flow.run({}, raise_on_error=False, workspace=False).status, flush=True)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert (0, "failed") == (done.returncode, done.stdout.strip()), done.stderr


def test_run_timeout_bounds_the_whole_run() -> None:
    """A run deadline stops a run of individually-fast steps and marks it timed out."""
    flow = wf.Workflow("deadline")

    @flow.step(max_visits=1000)
    async def tick(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        return {"n": state.get("n", 0) + 1}

    flow.route("tick", wf.when("n", "lt", 1000) >> wf.go("tick"), default=wf.go(wf.END))
    # A 1 s deadline: a 0.2 s one let a loaded machine run a single tick. The 1000 ticks would
    # take 20 s, so ending within 5 s is the deadline's doing.
    t0 = time.monotonic()
    run = flow.run({}, timeout=1.0, raise_on_error=False)
    assert time.monotonic() - t0 < 5.0
    assert run.status == "timed_out"
    assert isinstance(run.error, wf.RunTimeoutError)
    assert isinstance(run.error, TimeoutError)
    assert 2 <= run.state["n"] <= 50


@pytest.mark.parametrize("where", ["memory", "durable"])
@pytest.mark.parametrize("own", [None, 30.0])
def test_a_step_the_run_deadline_cut_off_says_so_in_its_row(where: str, own: float | None, tmp_path: Path) -> None:
    """The row of an attempt the run's deadline cut off said "step 'b' did not finish within
    0.196 s", a timeout the step never had (none, or 30 s): it says the deadline cut it, after how
    long, in the event, the step log and the pickled error; a step's own timeout still reads as before."""
    flow = wf.Workflow("deadline-row")

    @flow.step(timeout=own)
    async def b(state: Any) -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    workspace = tmp_path if where == "durable" else False
    run = flow.run({}, timeout=0.3, workspace=workspace, raise_on_error=False)
    assert ("timed_out", wf.RunTimeoutError) == (run.status, type(run.error))
    (row,) = run.events
    assert ("timeout", "StepTimeoutError") == (row.status, row.error_type)
    said = re.fullmatch(r"step 'b' was cut off after (\S+) s: the run's deadline passed", row.error_message or "")
    assert said is not None, row.error_message
    assert 0.1 < float(said[1]) <= 0.3
    if where == "durable":
        assert [row.error_message] == list(wf.steps(tmp_path)["error_message"])
    error = pickle.loads(pickle.dumps(wf.StepTimeoutError("b", 0.25, by_deadline=True)))
    assert (True, "step 'b' was cut off after 0.25 s: the run's deadline passed") == (error.by_deadline, str(error))


def test_run_timeout_cuts_backoff_short() -> None:
    """A backoff that would outlast the run's deadline ends the run instead of sleeping."""
    flow = wf.Workflow("deadline-backoff")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=10, jitter=0))
    def call(state: Any) -> None:
        raise ConnectionError("down")

    t0 = time.monotonic()
    run = flow.run({}, timeout=0.5, raise_on_error=False)
    assert time.monotonic() - t0 < 1.0
    assert run.status == "timed_out"


@pytest.mark.parametrize("where", ["memory", "durable"])
def test_a_run_ended_because_its_backoff_would_cross_the_deadline_says_so(where: str) -> None:
    """Ended early, at 0.5 s of a 5 s deadline, the run does not claim its deadline passed: it
    says the deadline would pass before the next attempt, the time left, and the last error."""
    flow = wf.Workflow("deadline-says")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=10, jitter=0))
    async def call(state: Any) -> None:
        await asyncio.sleep(0.5)
        raise ConnectionError("down")

    t0 = time.monotonic()
    run = flow.run({}, timeout=5, workspace=None if where == "durable" else False, raise_on_error=False)
    took = time.monotonic() - t0
    assert ("timed_out", wf.RunTimeoutError) == (run.status, type(run.error))
    message = str(run.error)
    said = re.search(r"deadline of 5 s would pass before the next attempt could start \((.+) s left\)", message)
    assert said is not None, message
    # The time left is the deadline less the time the step took: 4.5 s on an idle machine, less on
    # a loaded one (where the run took longer). Shown to two digits, so within 0.05 s.
    assert 5 - took - 0.05 <= float(said[1]) <= 4.5 + 0.05, (took, message)
    assert message.endswith("the last one failed with ConnectionError (transient): down")


def test_failed_run_cancels_parallel_siblings_and_records_them() -> None:
    """When one branch fails the run, running siblings are cancelled and get an event saying so
    (`cancelled`: the failure is the branch's that failed, not theirs)."""
    flow = wf.Workflow("cancel")
    flow.step(lambda s: None, name="start")

    @flow.step
    async def slow(state: Any) -> None:
        await asyncio.sleep(5)

    @flow.step
    async def broken(state: Any) -> None:
        await asyncio.sleep(0.01)
        raise PermissionError("denied")

    flow.edge("start", "slow", "broken")
    t0 = time.monotonic()
    run = flow.run({}, raise_on_error=False)
    assert time.monotonic() - t0 < 1.0
    by_step = {e.step: e for e in run.events}
    assert by_step["broken"].status == "failed"
    assert (by_step["slow"].status, by_step["slow"].error_type) == ("cancelled", "CancelledError")


# ---- the attempt runner alone (no Execution, no store) ------------------------------------------


def _runner(flow: wf.Workflow, sleeps: list[float], *, seed: int | None = 7) -> tuple[Any, list[wf.StepEvent]]:
    """An AttemptRunner for ``flow``'s steps, its events delivered to a list, its sleeps noted."""
    from wfkit.engine._attempts import AttemptRunner
    from wfkit.engine._cache import StepCache
    from wfkit.engine._durability import Durability
    from wfkit.engine._services import Services
    from wfkit.engine._stepevents import EventMaker, Outlet
    from wfkit.engine._subflows import ChildRuns
    from wfkit.model._approvals import HALT

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)  # a clock that never waits: the test runs in no time

    make = EventMaker("r1", flow.name, "v1", None, ())
    outlet = Outlet(())
    services = Services("r1", None, None, seed)
    journal = Durability(None, "r1", make=make, emit=outlet.emit, policy=HALT)
    children = ChildRuns("r1", store=None, policy=HALT, services=services, views=outlet, seed=seed, user_sinks=())
    runner = AttemptRunner(
        "r1",
        flow.name,
        make=make,
        journal=journal,
        services=services,
        cache=StepCache(flow.name, None),
        run_child=children.run,
        seed=seed,
        encode=False,
        sleep=sleep,
        late_results=[],
    )
    return runner, outlet.events


def _activation(flow: wf.Workflow, step: str, state: dict[str, Any] | None = None) -> Any:
    from wfkit.engine._activations import Activation, snapshot

    return Activation(flow.validate().steps[step], 1, (), 0, None, snapshot(state or {}), time.perf_counter())


def test_the_runner_alone_retries_a_step_that_fails_twice_and_sleeps_its_backoffs() -> None:
    """Without a run: two 503s are journalled as retries, their backoffs slept; the third attempt's updates return."""
    flow = wf.Workflow("alone")
    calls: list[int] = []

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=0.5, jitter=0))
    async def call(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        if len(calls) < 3:
            raise Flaky(503)
        return {"n": state["n"] + 1}

    sleeps: list[float] = []
    runner, events = _runner(flow, sleeps)
    out = asyncio.run(runner.run(_activation(flow, "call", {"n": 1})))
    assert ({"n": 2}, None, 3, "ok") == (dict(out.updates or {}), out.error, out.attempt, out.status)
    assert [0.5, 1.0] == sleeps
    assert [("retry", 1, 0.5), ("retry", 2, 1.0)] == [(e.status, e.attempt, e.retry_delay_s) for e in events]


def test_the_runner_alone_gives_up_when_the_budget_is_spent() -> None:
    """A step that always fails with a 503 comes back failed after 1 + max_retries attempts, kind transient."""
    flow = wf.Workflow("alone-fail")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.1, jitter=0))
    async def call(state: Any) -> dict[str, Any]:
        raise Flaky(503)

    sleeps: list[float] = []
    runner, events = _runner(flow, sleeps)
    out = asyncio.run(runner.run(_activation(flow, "call")))
    assert (3, "failed", "transient", "Flaky") == (out.attempt, out.status, out.kind.value, type(out.error).__name__)
    assert 2 == len(events) == len(sleeps)


def test_the_runner_alone_stops_at_the_deadline_it_is_given() -> None:
    """A deadline already passed: the runner does not start the attempt and reports the run timed out."""
    flow = wf.Workflow("alone-deadline")
    ran: list[bool] = []

    @flow.step
    async def call(state: Any) -> None:
        ran.append(True)

    runner, _events = _runner(flow, [])
    runner.deadline = time.monotonic() - 1.0
    out = asyncio.run(runner.run(_activation(flow, "call")))
    assert ([], True, "timeout") == (ran, out.run_timeout, out.status)


def test_an_activations_backoff_jitter_depends_only_on_the_seed_step_visit_and_item() -> None:
    """Two runners with one seed draw the same jitter for an item whichever items retried before it."""
    flow = wf.Workflow("alone-jitter")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=1.0, jitter=0.5))
    async def call(state: Any) -> None:
        raise Flaky(503)

    def delays(order: list[int]) -> dict[int, float]:
        sleeps: list[float] = []
        runner, _events = _runner(flow, sleeps, seed=11)
        found = {}
        for index in order:
            act = _activation(flow, "call")
            act.index = index
            asyncio.run(runner.run(act))
            found[index] = sleeps[-1]
        return found

    forwards, backwards = delays([0, 1, 2]), delays([2, 1, 0])
    assert forwards == backwards
    assert 3 == len(set(forwards.values()))  # each item its own draw


def test_a_sync_steps_latency_is_its_body_not_the_busy_loops_hops(tmp_path: Any) -> None:
    """A regex step finishes while the event loop is held by another coroutine: its latency_s is
    its body's own time (at least what the body measured itself), never the 0.3 s the loop was
    held after the body returned."""
    import re

    body_done = threading.Event()
    spans: list[float] = []
    held: list[float] = []
    flow = wf.Workflow("sync-timing")

    @flow.step
    def classify(state: Any) -> dict[str, Any]:
        entered = time.perf_counter()
        kind = "refund" if re.search(r"\brefund\b", state["query"]) else "other"
        spans.append(time.perf_counter() - entered)
        body_done.set()
        return {"kind": kind}

    async def hog() -> None:
        # A real busy loop: once the step's body has run, this coroutine holds the loop's thread.
        await asyncio.to_thread(body_done.wait)
        t0 = time.perf_counter()
        time.sleep(0.3)  # noqa: ASYNC251 - the point: a coroutine holding the loop's thread
        held.append(time.perf_counter() - t0)

    async def main() -> wf.Run:
        hogging = asyncio.create_task(hog())
        run = await flow.arun({"query": "I want a refund"}, workspace=tmp_path)
        await hogging
        return run

    run = asyncio.run(main())
    (event,) = run.events
    assert "refund" == run.state["kind"]
    assert event.latency_s >= spans[0]
    assert event.latency_s < held[0]  # the loop was held this long after the body returned


def test_a_sync_steps_row_is_when_its_body_ran_though_it_waited_for_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain-function step waits for a thread of the step pool, all busy: its row starts when its
    body started and ends when it ended, the wait counted as queueing; ended_at never comes before
    the body's end (a resume waits out a backoff from ended_at)."""
    import concurrent.futures

    import wfkit.engine._attempts as attempts
    from wfkit.engine._stepthreads import StepThreads

    handed_over = threading.Event()

    class OneThread(StepThreads):
        """A step pool whose only thread is held until a step is handed to it, and 0.2 s more."""

        def __init__(self) -> None:
            super().__init__(1, "wfkit-step")
            super().submit(self._hold)

        def _hold(self) -> None:
            handed_over.wait(30)
            time.sleep(0.2)

        def submit(self, fn: Any, /, *args: Any) -> concurrent.futures.Future[Any]:
            handed_over.set()
            return super().submit(fn, *args)

    pool = OneThread()
    monkeypatch.setattr(attempts, "_threads", pool)
    body: list[float] = []
    flow = wf.Workflow("waits-for-a-thread")

    @flow.step
    def work(state: Any) -> dict[str, Any]:
        body.append(time.time())
        return {}

    run = flow.run({}, workspace=False)  # the pool's thread, a daemon, waits idle until the tests end
    (event,) = run.events
    clocks = 1e-3  # started_at is wall-clock time, the wait and the body's time are perf_counter's
    assert event.started_at <= body[0] + clocks
    assert body[0] <= event.ended_at + clocks
    assert event.queue_s >= 0.2


# ---- why no retry was made, in a long message ----------------------------------------------------

NO_RETRY_REASON = "; not retried: the policy's max_retries=0 allows no retry (raise it to retry)"


def test_a_long_errors_step_log_row_is_cut_in_its_body_and_keeps_why_it_was_not_retried(tmp_path: Any) -> None:
    """A transient error with a 5,000-character message under max_retries=0: its step-log row
    (journal and parquet) was cut at 2,000 characters, reason and all. Now the body is cut and the
    reason ends the row; the fallback's ctx.failure keeps the whole message."""
    flow = wf.Workflow("long")
    seen: list[str] = []

    @flow.step(retry=wf.RetryPolicy(max_retries=0), fallback="give_up")
    def call(state: Any) -> dict[str, Any]:
        raise wf.TransientError("upstream said: " + "x" * 5000)

    @flow.step
    def give_up(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        assert ctx.failure is not None
        seen.append(ctx.failure.error_message)
        return {}

    flow.run({}, workspace=tmp_path)
    (message,) = wf.steps(tmp_path, step="call")["error_message"]
    assert message.startswith("upstream said: xxx"), message[:40]
    whole = "upstream said: " + "x" * 5000 + NO_RETRY_REASON
    assert whole[:2000] + f"... [truncated: {len(whole)} chars]" + NO_RETRY_REASON == message
    assert [whole] == seen


def test_a_map_step_failed_by_a_long_item_error_keeps_why_the_item_was_not_retried(tmp_path: Any) -> None:
    """A map item failing with a long message: the map step's row (MapItemError's message, read
    back from the step log) ends with why the item was not retried, its body cut."""
    flow = wf.Workflow("long-map", inputs=["docs"])

    @flow.map(over="docs", into="sizes", retry=wf.RetryPolicy(max_retries=0))
    def size(doc: str) -> int:
        raise wf.TransientError("upstream said: " + "x" * 5000)

    run = flow.run({"docs": ["a"]}, workspace=tmp_path, raise_on_error=False)
    assert "failed" == run.status
    rows = wf.steps(tmp_path, step="size")
    messages = list(rows["error_message"].dropna())
    assert messages, rows.to_string()
    for message in messages:
        assert message.endswith(NO_RETRY_REASON), message[-200:]
        assert "... [truncated: " in message, message[-200:]


# ---- a step that writes to its read-only state -------------------------------------------------


def _assigns(state: Any) -> None:
    state["summary"] = "done"


def _updates(state: Any) -> None:
    state.update(summary="done")


async def _deletes(state: Any) -> None:
    del state["topic"]


@pytest.mark.parametrize("body", [_assigns, _updates, _deletes], ids=["assign", "update", "delete"])
@pytest.mark.parametrize("durable", [False, True], ids=["memory", "durable"])
def test_a_step_changing_its_state_in_place_fails_at_once_saying_to_return_the_update(body: Any, durable: bool) -> None:
    """`state[k] = v` (or `state.update(...)`, `del state[k]`) is the first thing a newcomer tries;
    it failed with Python's "'mappingproxy' object does not support item assignment" (or "has no
    attribute 'update'", an unknown error that was retried), which says nothing of what to do."""
    flow = wf.Workflow("in-place")
    flow.step(name="write", retry=wf.RetryPolicy(max_retries=3, base_delay=0))(body)

    run = flow.run({"topic": "bees"}, workspace=None if durable else False, raise_on_error=False)

    assert "failed" == run.status
    assert [("failed", 1, "permanent", "StateValueError")] == [
        (e.status, e.attempt, e.error_kind, e.error_type) for e in run.events
    ]
    message = run.events[0].error_message
    assert "step 'write' changed its state in place" in message
    assert "read-only: return the fields it changes instead, e.g. return {'field': value}" in message
    assert isinstance(run.error.__cause__, wf.StateValueError)
    assert isinstance(run.error.__cause__.__cause__, (TypeError, AttributeError))  # Python's own, kept as the cause


def test_a_map_item_changing_its_state_in_place_is_told_to_return_its_result() -> None:
    """A map item writing to ``ctx.state`` learns where its result goes instead."""
    flow = wf.Workflow("in-place-map", inputs=["docs"])

    @flow.map(over="docs", into="summaries")
    def summarise(doc: str, ctx: wf.StepContext) -> None:
        ctx.state["summaries"] = [doc]

    run = flow.run({"docs": ["a"]}, raise_on_error=False)

    assert "failed" == run.status
    assert isinstance(run.error.__cause__, wf.MapItemError)
    assert isinstance(run.error.__cause__.__cause__, wf.StateValueError)
    assert (
        "item 0 of map step 'summarise' changed its state in place (TypeError: 'mappingproxy' object does not "
        "support item assignment): a step's state is read-only: return the item's result, which the map "
        "puts in its list"
    ) in str(run.error)


def test_a_step_returning_a_call_it_forgot_to_await_is_told_to_await_it() -> None:
    """``return fetch()`` in a ``def`` step returns a coroutine: the run fails saying which call was
    not awaited and what to write, and the coroutine is closed (no "never awaited" warning later)."""
    import gc
    import warnings

    async def fetch() -> dict[str, int]:
        return {"x": 1}

    flow = wf.Workflow("forgot-await")

    @flow.step
    def a(state: Any) -> Any:
        return fetch()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run({}, workspace=False, raise_on_error=False)
        gc.collect()
    assert "failed" == run.status
    assert (
        "step 'a' returned a coroutine of fetch(), a call it did not await: write the step as `async def` "
        "and return `await fetch(...)`, or return its result"
    ) in str(run.error)
    assert [] == [str(w.message) for w in caught if "never awaited" in str(w.message)]


def test_an_attempt_the_user_stopped_is_recorded_as_cancelled_not_as_a_failure(workspace: Any) -> None:
    """A step stopped by `run.cancel()` (the stop button, Ctrl-C) records its attempt as
    `cancelled` (error type CancelledError, no error kind), so `failures()` over the step log, in
    pandas and over the parquet files alike, counts no failure of the step (it counted one, of kind
    unknown); resuming the run runs the step again with its whole retry budget (the stop spent one
    of its retries)."""
    calls: list[int] = []
    running = asyncio.Event()
    flow = wf.Workflow("stopped")
    flow.step(lambda s: {"amount": 1}, name="quote")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    async def pay(state: Any) -> dict[str, Any]:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            running.set()
            await asyncio.sleep(60)  # stopped here by the user
        if len(calls) == 2:
            raise ConnectionError("flaky")  # the one retry the policy allows
        return {"paid": True}

    flow.chain("quote", "pay")

    async def stopped() -> wf.Run:
        run = flow.start({})
        await running.wait()
        run.cancel()
        with pytest.raises(wf.RunError):
            await run
        return run

    run = asyncio.run(stopped())
    assert "cancelled" == run.status
    [row] = [(e.attempt, e.status, e.error_kind, e.error_type) for e in run.events if e.step == "pay"]
    assert (1, "cancelled", None, "CancelledError") == row
    for failures in (wf.steps(workspace).wf.failures(), wf.StepLog(workspace).failures()):
        assert (1, 0, 0.0) == tuple(failures.loc[("stopped", "pay"), ["attempts", "failed", "failure_rate"]])
    for runs in (wf.steps(workspace).wf.runs(), wf.StepLog(workspace).runs()):
        assert (0, False) == tuple(runs.loc[run.run_id, ["failed", "run_failed"]])

    time.sleep(1.0)  # the run lies stopped before it is resumed: no time it ran
    resumed = flow.resume(run.run_id)
    assert ("succeeded", True) == (resumed.status, resumed.state["paid"])
    assert [(1, "cancelled"), (2, "retry"), (3, "ok")] == [
        (e.attempt, e.status) for e in resumed.events if e.step == "pay"
    ]
    for runs in (wf.steps(workspace).wf.runs(), wf.StepLog(workspace).runs()):
        row = runs.loc[run.run_id]
        assert (0, False) == (row["failed"], row["run_failed"])
        assert row["duration_s"] <= row["span_s"] - 1.0  # the stop is not counted as running time
