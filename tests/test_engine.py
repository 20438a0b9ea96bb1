"""Running workflows: fan-out and joins, loops, routes, retries, timeouts, conflicts, events."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import wfkit as wf
from wfkit.testing import MemorySink, capture_events, test_mode


class Flaky(Exception):
    """Fails with a chosen HTTP status, like an API client error."""

    def __init__(self, status_code: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = {"retry-after": retry_after} if retry_after else {}


# ---- DAG ---------------------------------------------------------------------------------------


def test_fan_out_runs_branches_concurrently_and_join_waits_for_all() -> None:
    """Three 50 ms branches overlap, and the join runs once after all of them."""
    flow = wf.Workflow("fan", merge={"seen": wf.append})
    spans: dict[str, tuple[float, float]] = {}

    @flow.step
    def start(state: Any) -> None:
        return None

    async def branch(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        t0 = time.perf_counter()
        await asyncio.sleep(0.05)
        spans[ctx.step] = (t0, time.perf_counter())
        return {"seen": ctx.step}

    for name in ("b1", "b2", "b3"):
        flow.step(branch, name=name)
        flow.edge(name, "join")

    @flow.step
    def join(state: Any) -> dict[str, Any]:
        return {"total": len(state["seen"])}

    flow.edge("start", "b1", "b2", "b3")
    run = flow.run({})
    assert run.state["total"] == 3
    assert sorted(run.state["seen"]) == ["b1", "b2", "b3"]
    assert run.path().count("join") == 1
    latest_start = max(s for s, _ in spans.values())
    earliest_end = min(e for _, e in spans.values())
    assert latest_start < earliest_end, "branches did not overlap"


def test_join_waits_for_longer_branch() -> None:
    """A join after branches of different lengths runs once, after the longest."""
    flow = wf.Workflow("uneven", merge={"log": wf.append})
    for name in ("a", "b1", "b2", "c", "join"):
        flow.step(lambda state, ctx: {"log": ctx.step}, name=name)
    flow.edge("a", "b1", "c")
    flow.chain("b1", "b2", "join")
    flow.edge("c", "join")
    run = flow.run({})
    assert run.state["log"][-1] == "join"
    assert run.state["log"].count("join") == 1
    assert {"a", "b1", "b2", "c", "join"} == set(run.state["log"])


def test_join_does_not_wait_for_branch_a_route_skipped() -> None:
    """Branches converging after exclusive routes do not block the join (dead-path elimination)."""
    flow = wf.Workflow("exclusive")
    for name in ("pick", "left", "right", "merge"):
        flow.step(lambda state, ctx: {"last": ctx.step}, name=name)
    flow.route("pick", wf.when("side", "eq", "left") >> wf.go("left"), default=wf.go("right"))
    flow.edge("left", "merge")
    flow.edge("right", "merge")
    assert flow.run({"side": "left"}).path() == ["pick", "left", "merge"]
    assert flow.run({"side": "right"}).path() == ["pick", "right", "merge"]


def test_join_after_branch_that_fell_back_elsewhere() -> None:
    """A branch that leaves through its fallback no longer holds up the join."""
    flow = wf.Workflow("partial")

    @flow.step
    def start(state: Any) -> None:
        return None

    @flow.step(fallback="note_failure")
    def broken(state: Any) -> None:
        raise PermissionError("no access")

    @flow.step
    def fine(state: Any) -> dict[str, Any]:
        return {"fine": True}

    @flow.step
    def join(state: Any) -> dict[str, Any]:
        return {"joined": True}

    @flow.step
    def note_failure(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        assert ctx.failure is not None
        return {"failure": (ctx.failure.step, ctx.failure.error_kind, ctx.failure.error_type)}

    flow.edge("start", "broken", "fine")
    flow.edge("broken", "join")
    flow.edge("fine", "join")
    run = flow.run({})
    assert run.state["joined"]
    assert run.state["failure"] == ("broken", "permanent", "PermissionError")


# ---- state -------------------------------------------------------------------------------------


def test_parallel_writes_to_same_field_conflict() -> None:
    """Two parallel steps writing one field fail the run, naming both steps."""
    flow = wf.Workflow("conflict")
    flow.step(lambda s: None, name="start")
    flow.step(lambda s: {"answer": 1}, name="left")
    flow.step(lambda s: {"answer": 2}, name="right")
    flow.edge("start", "left", "right")
    with pytest.raises(wf.StateConflictError) as info:
        flow.run({})
    assert {"left", "right"} == {info.value.first, info.value.second}
    assert info.value.field == "answer"
    assert "merge={'answer': wfkit.append}" in str(info.value)


def test_parallel_writes_merge_with_declared_rule() -> None:
    """A field with a merge rule takes writes from parallel steps."""
    flow = wf.Workflow("merged", merge={"cost": wf.add, "notes": wf.append})
    flow.step(lambda s: {"cost": 1.0}, name="start")
    flow.step(lambda s: {"cost": 2.0, "notes": "left"}, name="left")
    flow.step(lambda s: {"cost": 3.0, "notes": "right"}, name="right")
    flow.edge("start", "left", "right")
    run = flow.run({})
    assert run.state["cost"] == 6.0
    assert sorted(run.state["notes"]) == ["left", "right"]


def test_sequential_overwrite_is_not_a_conflict() -> None:
    """A later step in a chain may overwrite a field an earlier one wrote."""
    flow = wf.Workflow("seq")
    flow.step(lambda s: {"x": 1}, name="a")
    flow.step(lambda s: {"x": s["x"] + 1}, name="b")
    flow.chain("a", "b")
    assert flow.run({}).state["x"] == 2


def test_state_is_read_only_for_steps() -> None:
    """Steps get a read-only view: changes go through returned updates."""
    flow = wf.Workflow("ro")

    @flow.step
    def sneaky(state: Any) -> None:
        state["x"] = 1

    with pytest.raises(wf.StepFailedError) as info:
        flow.run({})
    assert isinstance(info.value.__cause__, TypeError)


def test_step_returning_non_mapping_fails_clearly() -> None:
    """A step that returns a list fails with a message on what to return."""
    flow = wf.Workflow("bad")
    flow.step(lambda s: [1, 2], name="listy")
    with pytest.raises(wf.StepFailedError, match="returns a dict of state updates"):
        flow.run({})


def test_inputs_must_be_a_dict() -> None:
    """Run inputs that are not a dict of str keys are refused."""
    flow = wf.Workflow("in")
    flow.step(lambda s: None, name="a")
    with pytest.raises(TypeError, match="dict with string keys"):
        flow.run([1, 2])  # type: ignore[arg-type]


# ---- loops and routes --------------------------------------------------------------------------


def _revise_loop(bound: int, fallback: str | None = None) -> wf.Workflow:
    flow = wf.Workflow("revise")

    @flow.step(max_visits=bound, fallback=fallback)
    def draft(state: Any) -> dict[str, Any]:
        return {"drafts": state.get("drafts", 0) + 1}

    @flow.step
    def review(state: Any) -> dict[str, Any]:
        return {"ok": state["drafts"] >= state["needed"]}

    flow.edge("draft", "review")
    flow.route("review", wf.when("ok", "eq", False) >> wf.go("draft"), default=wf.go(wf.END))
    if fallback:
        flow.step(lambda s: {"escalated": True}, name=fallback)
    return flow


def test_loop_runs_until_route_exits() -> None:
    """A route back to an earlier step loops until its condition turns false."""
    run = _revise_loop(5).run({"needed": 3})
    assert run.state["drafts"] == 3
    assert run.path() == ["draft", "review"] * 3
    assert [e.visit for e in run.events if e.step == "draft"] == [1, 2, 3]


def test_loop_bound_is_a_classified_failure() -> None:
    """Hitting max_visits fails the run with VisitLimitError, classified permanent."""
    flow = _revise_loop(2)
    with pytest.raises(wf.VisitLimitError, match="visited 3 times, over its bound max_visits=2") as info:
        flow.run({"needed": 10})
    assert info.value.step == "draft"
    last = info.value.run.events[-1]  # type: ignore[attr-defined]
    assert (
        last.step,
        last.visit,
        last.status,
        last.error_kind,
        last.error_type,
    ) == ("draft", 3, "failed", "permanent", "VisitLimitError")


def test_loop_bound_follows_fallback() -> None:
    """With a fallback, hitting the bound escalates instead of failing."""
    run = _revise_loop(2, fallback="escalate").run({"needed": 10})
    assert run.state["escalated"]
    assert run.status == "succeeded"


def test_condition_error_fails_run_with_message() -> None:
    """A route comparing incomparable values fails the run, saying which field."""
    flow = wf.Workflow("cmp")
    flow.step(lambda s: {"score": "high"}, name="a")
    flow.step(lambda s: None, name="b")
    flow.route("a", wf.when("score", "gt", 0.5) >> wf.go("b"), default=wf.go(wf.END))
    with pytest.raises(wf.ConditionError, match="field 'score' holds str 'high'"):
        flow.run({})


def test_article_rag_router() -> None:
    """The article's router: each query type reaches its branch with the tools bound there."""
    flow = wf.Workflow("rag")
    flow.step(lambda s: None, name="classify")
    for name in ("code_search", "data_query", "web_search"):
        flow.step(lambda s, ctx: {"tools": list(ctx.tools), "branch": ctx.step}, name=name)
        flow.edge(name, "generate_answer")
    flow.step(lambda s: {"answer": f"via {s['branch']}"}, name="generate_answer")
    flow.route(
        "classify",
        wf.when("query_type", "eq", "code") >> wf.go("code_search", tools=["web_search", "code_interpreter"]),
        wf.when("query_type", "eq", "data") >> wf.go("data_query", tools=["sql_query", "file_read"]),
        wf.when("query_type", "in", ["general", "factual"]) >> wf.go("web_search", tools=["web_search"]),
        default=wf.go("web_search", tools=["web_search"]),
    )
    cases = {
        "code": ("code_search", ["web_search", "code_interpreter"]),
        "data": ("data_query", ["sql_query", "file_read"]),
        "factual": ("web_search", ["web_search"]),
        "unknown": ("web_search", ["web_search"]),
    }
    for query_type, (branch, tools) in cases.items():
        run = flow.run({"query_type": query_type})
        assert ["classify", branch, "generate_answer"] == run.path()
        assert tools == run.state["tools"]
        assert f"via {branch}" == run.state["answer"]
        assert branch == run.events[0].route_taken
        assert tuple(tools) == run.events[1].tools


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
    """Under test_mode long backoffs take no time and jitter repeats with the seed."""
    flow = wf.Workflow("tm")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=30, max_delay=60))
    def call(state: Any) -> None:
        raise ConnectionError("down")

    t0 = time.monotonic()
    with test_mode(seed=3):
        first = flow.run({}, raise_on_error=False)
        second = flow.run({}, raise_on_error=False)
    assert time.monotonic() - t0 < 1.0
    delays = [e.retry_delay_s for e in first.events]
    assert delays == [e.retry_delay_s for e in second.events]
    assert 15 <= delays[0] <= 45


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


def test_run_timeout_bounds_the_whole_run() -> None:
    """A run deadline stops a run of individually-fast steps and marks it timed out."""
    flow = wf.Workflow("deadline")

    @flow.step(max_visits=1000)
    async def tick(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        return {"n": state.get("n", 0) + 1}

    flow.route("tick", wf.when("n", "lt", 1000) >> wf.go("tick"), default=wf.go(wf.END))
    t0 = time.monotonic()
    run = flow.run({}, timeout=0.2, raise_on_error=False)
    assert time.monotonic() - t0 < 1.0
    assert run.status == "timed_out"
    assert isinstance(run.error, wf.RunTimeoutError)
    assert isinstance(run.error, TimeoutError)
    assert 3 <= run.state["n"] <= 10


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


def test_failed_run_cancels_parallel_siblings_and_records_them() -> None:
    """When one branch fails the run, running siblings are cancelled and get an event."""
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
    assert (by_step["slow"].status, by_step["slow"].error_type) == ("failed", "CancelledError")


# ---- events ------------------------------------------------------------------------------------


def test_one_event_per_attempt_with_run_fields() -> None:
    """Each attempt emits exactly one event carrying the run's identity and timings."""
    sink = MemorySink()
    flow = wf.Workflow("ev", version="v7")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0))
    def a(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="sim-1", tokens_in=10, tokens_out=5, cost_usd=0.001)
        if ctx.attempt == 1:
            raise ConnectionError("blip")

    flow.step(lambda s: None, name="b")
    flow.chain("a", "b")
    with capture_events() as captured:
        run = flow.run({"q": 1}, sinks=[sink])
    assert run.events == sink.events == captured
    assert [(e.step, e.attempt, e.status) for e in sink.events] == [
        ("a", 1, "retry"),
        ("a", 2, "ok"),
        ("b", 1, "ok"),
    ]
    first = sink.events[0]
    assert (run.run_id, "ev", "v7") == (first.run_id, first.workflow, first.workflow_version)
    assert (first.model, first.tokens_in, first.tokens_out, first.cost_usd) == ("sim-1", 10, 5, 0.001)
    assert first.ended_at >= first.started_at
    assert first.latency_s >= 0
    assert first.queue_s >= 0
    assert first.parameters_hash
    assert first.host
    assert len({e.parameters_hash for e in sink.events}) == 1


def test_sink_objects_and_callables_both_work() -> None:
    """A sink is any callable or any object with emit()."""
    got: list[str] = []

    class Obj:
        def emit(self, event: wf.StepEvent) -> None:
            got.append("obj:" + event.step)

    flow = wf.Workflow("sinks")
    flow.step(lambda s: None, name="a")
    flow.run({}, sinks=[Obj(), lambda e: got.append("fn:" + e.step)])
    assert got == ["obj:a", "fn:a"]


def test_failing_sink_fails_the_run_loudly() -> None:
    """A sink that raises is not silently ignored."""

    def bad_sink(event: wf.StepEvent) -> None:
        raise OSError("disk full")

    flow = wf.Workflow("badsink")
    flow.step(lambda s: None, name="a")
    with pytest.raises(OSError, match="disk full"):
        flow.run({}, sinks=[bad_sink])
