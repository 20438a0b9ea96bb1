"""Running workflows: fan-out and joins, loops, routes, retries, timeouts, conflicts, events."""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import os
import pickle
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.testing import MemorySink, capture_events


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


@pytest.mark.parametrize("durable", [False, True])
def test_a_join_waiting_on_another_join_that_fires_in_the_same_settle_runs_once_after_it(
    durable: bool, tmp_path: Any
) -> None:
    """j2 waits for j1 and x; when the step that completes j1 settles, j2 (whose other branch x is
    done) runs once, after j1, not before it and again."""
    flow = wf.Workflow("nested-joins", merge={"log": wf.append})

    def step(name: str, seconds: float) -> Any:
        async def body(state: Any) -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return {"log": name}

        return body

    for name, seconds in [("start", 0), ("x", 0), ("b", 0.01), ("c", 0.03), ("j1", 0), ("j2", 0)]:
        flow.step(step(name, seconds), name=name)
    flow.edge("start", "x", "b", "c")
    flow.edge("b", "j1")
    flow.edge("c", "j1")
    flow.edge("j1", "j2")
    flow.edge("x", "j2")
    run = flow.run({}, workspace=tmp_path if durable else False)
    assert ("succeeded", ["start", "x", "b", "c", "j1", "j2"]) == (run.status, run.state["log"])
    assert ["start", "x", "b", "c", "j1", "j2"] == [e.step for e in run.events]


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


@pytest.mark.parametrize("takes_context", [False, True])
@pytest.mark.parametrize("where", ["memory", "durable"])
def test_siblings_that_finish_with_the_failing_step_keep_their_rows(where: str, takes_context: bool) -> None:
    """Parallel steps that finish in the same turn of the loop as a sibling that fails the run
    are settled, not dropped: their rows (in events and the journal), their writes and, durable,
    their checkpoints say that they ran; a second failure among them is recorded too."""
    flow = wf.Workflow("same-turn")
    opened: list[asyncio.Event] = []

    @flow.step
    async def start(state: Any) -> None:
        gate = asyncio.Event()
        opened.append(gate)
        asyncio.get_running_loop().call_later(0.02, gate.set)  # every branch wakes in one turn

    async def bad(state: Any) -> None:
        await opened[-1].wait()
        raise ValueError("bad input")

    async def also_bad(state: Any) -> None:
        await opened[-1].wait()
        raise PermissionError("denied")

    async def good(state: Any) -> dict[str, Any]:
        await opened[-1].wait()
        return {"good": True}

    for fn in (bad, good, also_bad):
        if takes_context:  # run by the attempt runner rather than awaited inline
            flow.step(_via_runner(fn), name=fn.__name__)
        else:
            flow.step(fn, name=fn.__name__)
    flow.edge("start", "bad", "good", "also_bad")
    run = flow.run({}, workspace=None if where == "durable" else False, raise_on_error=False)
    assert ("failed", "ValueError") == (run.status, type(run.error.__cause__).__name__)
    expected = [("also_bad", "failed", "PermissionError"), ("bad", "failed", "ValueError"), ("good", "ok", None)]
    assert expected == sorted((e.step, e.status, e.error_type) for e in run.events if e.step != "start")
    assert run.state == {"good": True}
    if where == "durable":
        journal = wf.Workspace().events(run.run_id)
        assert expected == sorted((e.step, e.status, e.error_type) for e in journal if e.step != "start")
        steps = wf.Workspace().run_info(run.run_id)["steps"]
        assert ["good", "start"] == sorted(s["step"] for s in steps if s["outcome"] == "ok")


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
    assert isinstance(info.value.__cause__, wf.StateValueError)  # saying to return the update
    assert isinstance(info.value.__cause__.__cause__, TypeError)  # Python's own refusal


@pytest.mark.parametrize("durable", [False, True])
def test_a_step_reading_a_field_the_state_lacks_is_told_what_it_holds_and_how_to_fix_it(durable: bool) -> None:
    """``state["topic"]`` on a run given ``{"topc": ...}`` failed with a bare ``KeyError: 'topic'``:
    nothing said the state lacked a field, which fields it had, nor how to fix it."""
    flow = wf.Workflow("typo")

    @flow.step
    def plan(state: Any) -> dict[str, Any]:
        assert state.get("topic") is None  # the optional reads stay quiet
        assert "topic" not in state
        return {"questions": [state["topic"]]}

    run = flow.run({"topc": "retries"}, workspace=None if durable else False, raise_on_error=False)
    assert run.status == "failed"
    cause = run.error.__cause__
    assert isinstance(cause, wf.StateKeyError)
    assert isinstance(cause, KeyError)  # user code catching KeyError still catches it
    assert cause.args == ("topic",)  # and finds the field where Python's KeyError has it
    assert "failed with StateKeyError (permanent): the state has no field 'topic'" in str(run.error)
    assert pickle.loads(pickle.dumps(cause)).args == ("topic",)  # a Dask worker sends it back
    message = str(run.error)
    assert "the state has no field 'topic'" in message
    assert "it holds ['topc'] (did you mean 'topc'?)" in message
    assert "pass it in the run's inputs, return it from a step that runs before this one" in message
    assert "state.get('topic')" in message
    # A map item and a cached step read the same state: the same message.
    items = wf.Workflow("items", inputs=["docs"])

    @items.map(over="docs", into="out")
    def each(doc: Any, ctx: Any) -> Any:
        return ctx.state["lang"]

    failed = items.run({"docs": [1]}, workspace=False, raise_on_error=False)
    assert "the state has no field 'lang': it holds ['docs']" in str(failed.error)
    cached = wf.Workflow("cached")

    @cached.step(cache=True)
    def lookup(state: Any) -> dict[str, Any]:
        return {"n": state["count"]}

    failed = cached.run({"cuont": 1}, workspace=False, raise_on_error=False)
    assert "the state has no field 'count': it holds ['cuont'] (did you mean 'cuont'?)" in str(failed.error)


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_a_step_that_forgot_await_is_told_to_await() -> None:
    """``reply = ctx.llm.complete(...)`` without ``await`` failed with Python's "'coroutine' object
    has no attribute 'text'", which says nothing of the missing ``await``; nor did a tool's result
    indexed un-awaited. The error (the run's, the step log's row, a fallback's ``ctx.failure``) now
    says to await the call."""
    flow = wf.Workflow("no-await")

    @flow.step(fallback="explain")
    async def ask(state: Any, ctx: Any) -> dict[str, Any]:
        reply = ctx.llm.complete("hi")  # no await
        return {"text": reply.text}

    @flow.step
    def explain(state: Any, ctx: Any) -> dict[str, Any]:
        return {"why": ctx.failure.error_message}

    run = flow.run({}, workspace=False)
    hint = "a coroutine: `await` the call that made it, as in reply = await ctx.llm.complete(...)"
    assert run.state["why"] == f"'coroutine' object has no attribute 'text' ({hint})"
    assert [e.error_message for e in run.events if e.step == "ask"] == [run.state["why"]]

    tools = wf.llm.ToolRegistry()

    @tools.tool
    async def lookup(key: str) -> dict[str, Any]:
        return {"rows": [key]}

    direct = wf.Workflow("no-await-tool", tools=tools)

    @direct.step(tools=["lookup"])
    async def fetch(state: Any, ctx: Any) -> dict[str, Any]:
        return {"rows": ctx.tool("lookup", key="k")["rows"]}  # no await

    failed = direct.run({}, workspace=False, raise_on_error=False)
    assert str(failed.error).endswith(f"'coroutine' object is not subscriptable ({hint})")
    # The un-awaited coroutines live on in the errors' tracebacks: let them go (and warn) here,
    # under this test's filter, not in whichever test the collector next runs in.
    del run, failed
    gc.collect()


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


def _cycle_flow(kind: str) -> wf.Workflow:
    """Small flows that exercise sleeps, timeouts, retried errors, sync steps and fan-out/join."""
    flow = wf.Workflow(f"cycles-{kind}")
    if kind == "retry":

        async def flaky(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
            if ctx.attempt == 1:
                raise wf.TransientError("first attempt fails")
            return {"a": 1}

        flow.step(flaky, name="s0", retry=wf.RetryPolicy(max_retries=2, base_delay=0.0))
        return flow
    if kind == "inline-retry":  # awaited by the scheduler itself, its failure judged by the attempt runner
        attempts: list[int] = []

        async def fails_once(state: Any) -> dict[str, Any]:
            attempts.append(1)
            if len(attempts) % 2:
                raise wf.TransientError("first attempt fails")
            return {"a": [1]}  # not plain: the attempt runner checks it

        flow.step(fails_once, name="s0", retry=wf.RetryPolicy(max_retries=2, base_delay=0.0))
        flow.step(fails_once, name="s1", retry=wf.RetryPolicy(max_retries=2, base_delay=0.0))
        flow.chain("s0", "s1")
        return flow

    async def nap(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {}

    def sync(state: Any) -> dict[str, Any]:
        return {}

    flow.step(nap, name="a", timeout=1.0)
    flow.step(sync, name="b", timeout=1.0)
    flow.step(nap, name="c")
    flow.step(nap, name="d")
    flow.edge("a", "b", "c")
    flow.edge("b", "d")
    flow.edge("c", "d")
    return flow


# The measurement, run in a fresh interpreter: in this one, threads that earlier tests left behind
# (a Dask client reconnecting to a scheduler a test killed, tornado's loops, kernels) may drop the
# last reference to cycles of their own while the runs are counted, and those would read as the
# runs'. A fresh interpreter holds nothing but the runs.
_COUNT_CYCLES = """
import asyncio, gc, json, sys
sys.path.insert(0, sys.argv[1])
from test_engine import _cycle_flow
from wfkit.testing import test_mode
flow = _cycle_flow(sys.argv[2])
workspace = sys.argv[3] or False

async def runs(n):
    for _ in range(n):
        await flow.arun({}, workspace=workspace)

with test_mode(seed=1):
    asyncio.run(runs(1))  # warm caches (compiled graph, thread pool, loggers)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    asyncio.run(runs(10))
    found = gc.collect()
    kinds = sorted({type(o).__name__ for o in gc.garbage})
    gc.garbage.clear()
    gc.set_debug(0)
print(json.dumps([found, kinds]))
"""


@pytest.mark.parametrize("kind", ["graph", "retry", "inline-retry"])
@pytest.mark.parametrize("durable", [False, True])
def test_runs_leave_no_reference_cycles(kind: str, durable: bool, tmp_path: Path) -> None:
    """A finished run is freed by reference counting alone: the cyclic collector finds nothing of it,
    so thousands of concurrent runs do not make the collector sweep the engine's objects."""
    import json
    import subprocess

    workspace = str(tmp_path) if durable else ""
    args = [sys.executable, "-c", _COUNT_CYCLES, str(Path(__file__).parent), kind, workspace]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert 0 == done.returncode, done.stderr
    found, kinds = json.loads(done.stdout.strip().splitlines()[-1])
    assert (0, []) == (found, kinds)


def test_a_concurrent_run_keeps_few_objects_for_the_collector() -> None:
    """While 200 runs of a 3-step chain sleep in their first step, each keeps at most 36 objects the
    cyclic collector tracks (10,000 concurrent runs make the collector walk every one of them)."""
    flow = wf.Workflow("light")

    async def nap(state: Any) -> None:
        await asyncio.sleep(0.05)

    for name in ("a", "b", "c"):
        flow.step(nap, name=name)
    flow.chain("a", "b", "c")

    async def burst(n: int) -> float:
        await flow.arun({}, workspace=False)  # warm caches
        gc.collect()
        before = len(gc.get_objects())
        runs = asyncio.gather(*(flow.arun({}, workspace=False) for _ in range(n)))
        await asyncio.sleep(0.02)  # every run is now asleep in step a
        gc.collect()  # untracks tuples and dicts that hold no containers, as a real pass would
        during = len(gc.get_objects())
        await runs
        return (during - before) / n

    per_run = asyncio.run(burst(200))
    assert per_run <= 36, f"{per_run:.1f} tracked objects per concurrent run"


def test_steps_activated_at_one_state_share_what_they_see_and_a_commit_is_seen_after() -> None:
    """Branches activated together see the same state, none sees a sibling's write, the join sees all."""
    flow = wf.Workflow("views")
    seen: dict[str, dict[str, Any]] = {}

    def record(name: str, writes: dict[str, Any]) -> Any:
        async def step(state: Any) -> dict[str, Any]:
            seen[name] = dict(state)
            await asyncio.sleep(0.001 if name == "left" else 0.0)
            return writes

        return step

    flow.step(record("start", {"n": 1}), name="start")
    flow.step(record("left", {"l": 1}), name="left")
    flow.step(record("right", {"r": 1}), name="right")
    flow.step(record("join", {}), name="join")
    flow.edge("start", "left", "right")
    flow.edge("left", "join")
    flow.edge("right", "join")
    flow.run({"x": 0}, workspace=False)
    assert {
        "start": {"x": 0},
        "left": {"x": 0, "n": 1},
        "right": {"x": 0, "n": 1},
        "join": {"x": 0, "n": 1, "l": 1, "r": 1},
    } == seen


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({"__wf__": 1}, "a name wfkit keeps for its encoding"),
        ({1: 2}, "field names are strings"),
        ({"ok": 1, "bad": object()}, "which run state cannot keep"),
    ],
)
def test_in_memory_runs_refuse_what_a_checkpoint_could_not_keep(updates: dict[Any, Any], message: str) -> None:
    """Plain numbers skip the encoding check, but a reserved name, a non-string name or an
    unencodable value beside them is still refused in memory, as durable runs refuse it."""
    flow = wf.Workflow("refuse")

    @flow.step
    async def write(state: Any) -> dict[Any, Any]:
        return updates

    with pytest.raises(wf.StepFailedError, match=message):
        flow.run({}, workspace=False)


# ---- map steps -----------------------------------------------------------------------------------


def _mapflow(fn: Any, *, max_concurrency: int | None = None, fallback: str | None = None, **opts: Any) -> wf.Workflow:
    flow = wf.Workflow("mapping", inputs=["docs"])
    flow.map(over="docs", into="results", max_concurrency=max_concurrency, fallback=fallback, name="each", **opts)(fn)

    @flow.step
    def after(state: Any) -> dict[str, Any]:
        return {"count": len(state["results"])}

    flow.edge("each", "after")
    if fallback is not None:

        @flow.step(name=fallback)
        def rescue(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
            assert ctx.failure is not None
            return {"why": ctx.failure.error_message}

    return flow


def test_map_gathers_results_in_item_order_whatever_order_items_finish() -> None:
    """Items that finish in reverse order still land in `into` in item order."""

    async def slow_first(doc: int, ctx: wf.StepContext) -> int:
        await asyncio.sleep(0.01 * (5 - doc))
        return doc * 10

    run = _mapflow(slow_first).run({"docs": [0, 1, 2, 3, 4]}, workspace=False)
    assert [0, 10, 20, 30, 40] == run.state["results"]
    assert 5 == run.state["count"]
    assert ["each", "after"] == run.path()


def test_map_items_are_events_of_their_own_with_their_index() -> None:
    """One event per item with map_index, then the map step's own row (map_index None, items counted)."""
    run = _mapflow(lambda doc: doc.upper()).run({"docs": ["a", "b", "c"]}, workspace=False)
    rows = [(e.step, e.map_index, e.status) for e in run.events if e.step == "each"]
    assert [("each", 0, "ok"), ("each", 1, "ok"), ("each", 2, "ok"), ("each", None, "ok")] == sorted(
        rows, key=lambda r: (r[1] is None, r[1] or 0)
    )
    whole = next(e for e in run.events if e.step == "each" and e.map_index is None)
    assert {"items": 3} == whole.extra


def test_map_max_concurrency_bounds_items_in_flight() -> None:
    """With max_concurrency=2, no more than two items ever run at once."""
    now = {"in": 0, "peak": 0}

    async def track(doc: int) -> int:
        now["in"] += 1
        now["peak"] = max(now["peak"], now["in"])
        await asyncio.sleep(0.005)
        now["in"] -= 1
        return doc

    run = _mapflow(track, max_concurrency=2).run({"docs": list(range(9))}, workspace=False)
    assert list(range(9)) == run.state["results"]
    assert 2 == now["peak"]


def test_each_map_item_retries_on_its_own() -> None:
    """A transient failure of item 1 retries item 1 only; its retry event carries its index."""
    failed: set[int] = set()

    def flaky(doc: int, ctx: wf.StepContext) -> int:
        if doc == 1 and doc not in failed:
            failed.add(doc)
            raise Flaky(503)
        return doc

    with wf.testing.test_mode():
        run = _mapflow(flaky, retry=wf.RetryPolicy(max_retries=2)).run({"docs": [0, 1, 2]}, workspace=False)
    assert [0, 1, 2] == run.state["results"]
    retries = [(e.map_index, e.attempt) for e in run.events if e.status == "retry"]
    assert [(1, 1)] == retries
    assert 2 == next(e.attempt for e in run.events if e.map_index == 1 and e.status == "ok")


def test_each_map_item_has_its_own_timeout() -> None:
    """An item that overruns the step timeout times out on its own, and the run fails naming it."""

    async def stuck_on_two(doc: int) -> int:
        await asyncio.sleep(1.0 if doc == 2 else 0)
        return doc

    run = _mapflow(stuck_on_two, timeout=0.05).run({"docs": [0, 1, 2]}, workspace=False, raise_on_error=False)
    assert "failed" == run.status
    assert [(2, "timeout")] == [(e.map_index, e.status) for e in run.events if e.status == "timeout"]
    assert "item 2 of 3" in str(run.error)


def test_a_failed_item_without_fallback_fails_the_run_naming_the_item() -> None:
    """The run's error is a StepFailedError whose cause names item 1 and chains the item's error."""

    def bad_one(doc: int) -> int:
        if doc == 1:
            raise PermissionError("no access to doc 1")
        return doc

    run = _mapflow(bad_one).run({"docs": [0, 1, 2]}, workspace=False, raise_on_error=False)
    assert isinstance(run.error, wf.StepFailedError)
    cause = run.error.__cause__
    assert isinstance(cause, wf.MapItemError)
    assert 1 == cause.index
    assert isinstance(cause.__cause__, PermissionError)
    assert "item 1 of 3 of map step 'each' failed: PermissionError: no access to doc 1" in str(run.error)
    assert "after" not in run.path()


def test_a_failed_item_sends_the_map_to_its_fallback_with_the_item_named() -> None:
    """With a fallback, the failure of item 2 routes there, and ctx.failure says which item."""

    def bad_two(doc: int) -> int:
        if doc == 2:
            raise PermissionError("denied")
        return doc

    run = _mapflow(bad_two, fallback="rescue").run({"docs": [0, 1, 2]}, workspace=False)
    assert "succeeded" == run.status
    assert run.state["why"].startswith("item 2 of 3 of map step 'each' failed")
    assert "results" not in run.state


def test_map_over_an_empty_list_writes_an_empty_list_and_continues() -> None:
    """No items: `into` is [] and the successor runs."""
    run = _mapflow(lambda doc: doc).run({"docs": []}, workspace=False)
    assert [] == run.state["results"]
    assert 0 == run.state["count"]


def test_map_over_a_field_that_is_not_a_list_fails_with_a_clear_error() -> None:
    """A string where a list should be fails the step, naming the field, its type and value. Given
    as the run's input, it was told "the step before it must write a list there" (there is none):
    it says to pass the input as a list; written by a step, that the step must write a list."""
    run = _mapflow(lambda doc: doc).run({"docs": "abc"}, workspace=False, raise_on_error=False)
    assert "failed" == run.status
    assert (
        "map step 'each' maps over state field 'docs', which holds str 'abc'; a map runs once per item of a list "
        "(or tuple): pass the run's input 'docs' as a list ({'docs': [...]})"
    ) in str(run.error)
    flow = wf.Workflow("loaded")

    @flow.step(writes=["docs"])
    def load(state: Any) -> dict[str, Any]:
        return {"docs": 5}

    flow.map(lambda doc: doc, over="docs", into="results", name="each")
    flow.edge("load", "each")
    run = flow.run({}, workspace=False, raise_on_error=False)
    assert (
        "map step 'each' maps over state field 'docs', which holds int 5; a map runs once per item of a list "
        "(or tuple): the step before it must write a list there"
    ) in str(run.error)


def test_durable_map_checkpoints_each_item_and_journals_its_index() -> None:
    """A durable map writes one journal row per item with map_index, and the same state as in memory."""
    flow = _mapflow(lambda doc: doc * 2)
    durable = flow.run({"docs": [1, 2, 3]})
    memory = flow.run({"docs": [1, 2, 3]}, workspace=False)
    assert memory.state == durable.state
    stored = wf.Workspace().events(durable.run_id)
    assert [0, 1, 2, None] == [e.map_index for e in stored if e.step == "each"]


def test_a_killed_durable_map_resumes_running_only_unfinished_items(tmp_path: Any) -> None:
    """SIGKILL while item 4 runs; the resumed run starts items 4..9 only and gathers all ten results."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full", "PYTHONPATH": str(here.parent)}
    script = [sys.executable, str(here / "mapflow.py"), str(tmp_path / "ws"), str(logs)]
    crashed = subprocess.run([*script, "4"], env=env, capture_output=True, text=True, timeout=60)
    assert -9 == crashed.returncode, crashed.stderr
    assert [f"start:{i}" for i in range(5)] == (logs / "ran.log").read_text().split()
    (logs / "ran.log").unlink()
    resumed = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert 0 == resumed.returncode, resumed.stderr
    assert [f"start:{i}" for i in range(4, 10)] == (logs / "ran.log").read_text().split()
    import json

    result = json.loads((logs / "result.json").read_text())
    assert "succeeded" == result["status"]
    assert list(range(1, 11)) == result["state"]["sizes"]
    assert 55 == result["state"]["total"]
    # The item the crash cut off is a crashed attempt, as a step in flight is, and runs again as
    # attempt 2; every other item counts its own attempts, so those that first ran after the
    # resume are attempt 1 (they were numbered 2, after their siblings, and item 4's crash was lost).
    events = wf.Workspace(tmp_path / "ws").events("map-run")
    items = sorted((e.map_index, e.attempt, e.status, e.error_type) for e in events if e.map_index is not None)
    assert [
        *((i, 1, "ok", None) for i in range(4)),
        (4, 1, "retry", "ProcessCrashedError"),
        (4, 2, "ok", None),
        *((i, 1, "ok", None) for i in range(5, 10)),
    ] == items
    crash = next(e for e in events if e.error_type == "ProcessCrashedError")
    assert "item 4 of step 'size'" in (crash.error_message or "")


def test_every_item_a_crash_cut_off_is_a_crashed_attempt(tmp_path: Any) -> None:
    """max_concurrency=2, SIGKILL as item 3 starts while item 2 still runs: on resume both are
    crashed attempts that run again as attempt 2; the items that never started are attempt 1."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full", "PYTHONPATH": str(here.parent)}
    script = [sys.executable, str(here / "mapflow.py"), str(tmp_path / "ws"), str(logs)]
    crashed = subprocess.run([*script, "3", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert -9 == crashed.returncode, crashed.stderr
    assert [f"start:{i}" for i in range(4)] == (logs / "ran.log").read_text().split()
    resumed = subprocess.run([*script, "-", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert 0 == resumed.returncode, resumed.stderr
    assert "succeeded" == json.loads((logs / "result.json").read_text())["status"]
    events = wf.Workspace(tmp_path / "ws").events("map-run")
    items = sorted((e.map_index, e.attempt, e.status) for e in events if e.map_index is not None)
    assert [
        (0, 1, "ok"),
        (1, 1, "ok"),
        (2, 1, "retry"),
        (2, 2, "ok"),
        (3, 1, "retry"),
        (3, 2, "ok"),
        *((i, 1, "ok") for i in range(4, 10)),
    ] == items


# ---- durability off the event loop -----------------------------------------------------------------


def _stall_writer(seconds: float) -> None:
    """Make the workspace's store writer slow for a while, as a slow disk would."""
    from wfkit.store._workspace import open_store

    open_store().writer.submit(lambda conn: time.sleep(seconds))


def test_latency_is_the_body_and_the_checkpoint_wait_has_its_own_column() -> None:
    """A 20 ms step whose checkpoint waits 0.4 s for the disk: latency_s stays ~20 ms, durable_wait_s ~0.4 s."""
    flow = wf.Workflow("slow-disk")

    @flow.step(timeout=0.2)  # the body's timeout: the disk's slowness is not the step's
    async def work(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        _stall_writer(0.4)
        return {"x": 1}

    flow.step(lambda s: {"y": 2}, name="after")
    flow.chain("work", "after")
    run = flow.run({})
    first = run.events[0]
    assert ("work", "ok") == (first.step, first.status)
    assert 0.02 <= first.latency_s < 0.15
    assert first.durable_wait_s is not None
    assert first.durable_wait_s >= 0.38
    stored = wf.Workspace().events(run.run_id)
    assert [e.durable_wait_s for e in run.events] == [e.durable_wait_s for e in stored]


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_every_step_of_a_long_durable_run_stores_the_wait_its_event_has(
    synchronous: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """150 steps: their waits ride in later writes (64 at a time with a checkpoint, the rest with the
    run's finish), each to its own row, at either level; none is lost, none lands on another row."""
    monkeypatch.setenv("WFKIT_SYNCHRONOUS", synchronous)

    async def nothing(state: Any) -> dict[str, Any]:
        return {}

    flow = wf.Workflow(f"long-waits-{synchronous}")
    names = [f"s{i}" for i in range(150)]
    for name in names:
        flow.step(nothing, name=name)
    flow.chain(*names)
    run = flow.run({})
    stored = wf.Workspace().events(run.run_id)
    assert 150 == len(stored)
    assert [(e.step, e.durable_wait_s) for e in run.events] == [(e.step, e.durable_wait_s) for e in stored]
    assert all(e.durable_wait_s is not None and e.durable_wait_s >= 0.0 for e in stored)


def test_a_run_in_memory_records_no_durable_wait() -> None:
    """workspace=False: nothing is checkpointed, so durable_wait_s is None."""
    flow = wf.Workflow("memory")
    flow.step(lambda s: {"x": 1}, name="only")
    assert [None] == [e.durable_wait_s for e in flow.run({}, workspace=False).events]


def test_a_successor_starts_only_after_its_predecessors_checkpoint_is_on_disk(workspace: Path) -> None:
    """Each step reads the journal from its own connection: its predecessors' checkpoints are there."""
    import sqlite3

    seen: dict[str, list[str]] = {}
    flow = wf.Workflow("ordered")

    def make(name: str) -> Any:
        def step(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
            conn = sqlite3.connect(workspace / "wfkit.db")
            try:
                rows = conn.execute(
                    "SELECT step FROM journal WHERE run_id=? AND outcome='ok' ORDER BY seq", (ctx.run_id,)
                ).fetchall()
            finally:
                conn.close()
            seen[name] = [r[0] for r in rows]
            _stall_writer(0.05)  # the checkpoint of this step is slow to reach the disk
            return {name: True}

        return step

    for name in ("a", "b", "c", "d"):
        flow.step(make(name), name=name)
    flow.edge("a", "b", "c")
    flow.edge("b", "d")
    flow.edge("c", "d")
    flow.run({})
    assert [] == seen["a"]
    assert ["a"] == seen["b"] == seen["c"]
    assert {"a", "b", "c"} == set(seen["d"])


def test_other_runs_keep_going_while_one_waits_for_the_disk() -> None:
    """While a durable run's checkpoint waits 1 s, an in-memory run on the same loop does 20 steps."""
    slow, fast = wf.Workflow("waits-for-disk"), wf.Workflow("keeps-going")

    @slow.step
    async def stall(state: Any) -> None:
        _stall_writer(1.0)

    names = [f"s{i}" for i in range(20)]

    async def tick(state: Any) -> None:
        await asyncio.sleep(0.005)

    for name in names:
        fast.step(tick, name=name)
    fast.chain(*names)

    async def main() -> tuple[float, float]:
        t0 = time.perf_counter()
        durable = asyncio.ensure_future(slow.arun({}))
        await fast.arun({}, workspace=False)
        fast_done = time.perf_counter() - t0
        await durable
        return fast_done, time.perf_counter() - t0

    fast_done, slow_done = asyncio.run(main())
    assert slow_done >= 1.0
    assert fast_done < 0.9


def _diamond(branch_a: Any) -> wf.Workflow:
    """start -> (a, b) -> join, with ``branch_a`` as step a."""
    flow = wf.Workflow("diamond")

    async def plain(state: Any) -> None:
        return None

    flow.step(plain, name="start")
    flow.step(branch_a, name="a")
    flow.step(plain, name="b")
    flow.step(plain, name="join")
    flow.edge("start", "a", "b")
    flow.edge("a", "join")
    flow.edge("b", "join")
    return flow


def test_a_parallel_step_that_cancels_itself_ends_the_run_as_cancelled() -> None:
    """A step running as a task of its own that raises CancelledError ends the run as cancelled."""

    async def quits(state: Any) -> None:
        raise asyncio.CancelledError()

    flow = _diamond(quits)

    async def cell() -> wf.Run:
        run = flow.start({}, workspace=False)
        with pytest.raises(wf.RunError, match="cancelled"):
            await run
        return run

    run = asyncio.run(cell())
    assert ("cancelled", "CancelledError") == (run.status, run.events[-1].error_type)


def test_parallel_steps_are_made_by_the_loops_own_task_factory() -> None:
    """On a loop with a task factory, the tasks of parallel steps are made by that factory."""
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def plain(state: Any) -> None:
        return None

    flow = _diamond(plain)

    async def cell() -> wf.Run:
        asyncio.get_running_loop().set_task_factory(factory)
        return await flow.arun({}, workspace=False)

    run = asyncio.run(cell())
    assert ("succeeded", 2) == (run.status, made.count("Execution._run_reported"))


class _CountingLoop(asyncio.SelectorEventLoop):
    """A real event loop that counts the callbacks scheduled on it."""

    scheduled = 0

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        self.scheduled += 1
        return super().call_soon(callback, *args, context=context)


def test_a_map_costs_the_event_loop_one_callback_per_item() -> None:
    """Map items that finish together are settled in one pass: the loop schedules one callback per
    item (its task's first step), none for each finished item, and one wake-up per batch."""
    flow = wf.Workflow("batched", inputs=["docs"])

    async def same(doc: Any) -> Any:
        return doc

    flow.map(same, over="docs", into="out", name="each")
    n = 500

    async def cell() -> tuple[list[Any], int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, _CountingLoop)
        await flow.arun({"docs": [0]}, workspace=False)  # warm up
        before = loop.scheduled
        run = await flow.arun({"docs": list(range(n))}, workspace=False)
        return run.state["out"], loop.scheduled - before

    loop = _CountingLoop()
    try:
        out, scheduled = loop.run_until_complete(cell())
    finally:
        loop.close()
    assert list(range(n)) == out
    assert n <= scheduled <= n + 10, f"{scheduled} callbacks scheduled for {n} map items"


# ---- inline steps (awaited by the scheduler itself) --------------------------------------------


def test_an_inline_step_retried_reports_each_attempt_like_any_step() -> None:
    """An async step without a context that fails once is retried by the policy: a retry row, then an ok row."""
    flow = wf.Workflow("inline-retry")
    calls: list[int] = []

    async def flaky(state: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise wf.TransientError("blip")
        return {"n": len(calls)}

    flow.step(flaky, retry=wf.RetryPolicy(max_retries=2, base_delay=0.0, jitter=0))
    run = flow.run({}, workspace=False)
    rows = [(e.step, e.attempt, e.status, e.error_type) for e in run.events]
    assert [("flaky", 1, "retry", "TransientError"), ("flaky", 2, "ok", None)] == rows
    assert {"n": 2} == run.state


def test_an_inline_step_returning_no_dict_fails_with_the_runners_message() -> None:
    """An async step returning a list fails the run with the message on what a step returns."""
    flow = wf.Workflow("inline-bad")

    async def listy(state: Any) -> list[int]:
        return [1, 2]

    flow.step(listy)
    with pytest.raises(wf.StepFailedError, match="returns a dict of state updates"):
        flow.run({}, workspace=False)


def test_an_inline_step_writing_a_value_state_cannot_keep_is_refused() -> None:
    """An async step writing an object the state cannot keep fails as it does when the runner runs it."""
    flow = wf.Workflow("inline-object")

    async def writes_object(state: Any) -> dict[str, Any]:
        return {"x": object()}

    flow.step(writes_object)
    with pytest.raises(wf.StepFailedError) as info:
        flow.run({}, workspace=False)
    assert "StateValueError" == type(info.value.__cause__).__name__


def _via_runner(fn: Any) -> Any:
    """``fn`` as a step that takes a context: the scheduler never awaits such a body itself (it is
    not ``StepSpec.inline``), so the attempt runner runs it."""

    async def with_context(state: Any, ctx: Any) -> Any:
        return await fn(state)

    return with_context


def test_inline_and_runner_steps_make_the_same_rows() -> None:
    """Inline steps and the same steps run by the attempt runner (taking a context) give equal rows but for timing."""

    async def add(state: Any) -> dict[str, Any]:
        return {"i": state.get("i", 0) + 1}

    def chain(runner: bool) -> wf.Workflow:
        flow = wf.Workflow("same-rows")
        for name in ("a", "b"):
            flow.step(_via_runner(add) if runner else add, name=name, max_visits=5)
        flow.route("b", wf.when("i", "lt", 4) >> wf.go("a"), default=wf.go(wf.END))
        flow.chain("a", "b")
        return flow

    timing = {"run_id", "workflow_version", "started_at", "ended_at", "latency_s", "queue_s"}

    def rows(run: wf.Run) -> list[dict[str, Any]]:
        return [{k: v for k, v in e._asdict().items() if k not in timing} for e in run.events]

    inline, runner = chain(False).run({}, workspace=False), chain(True).run({}, workspace=False)
    assert rows(runner) == rows(inline)
    assert (4, [e.route_taken for e in runner.events]) == (inline.state["i"], [e.route_taken for e in inline.events])
    columns = ["step", "visit", "outcome", "route", "updates", "state"]
    assert runner.history()[columns].to_dict("records") == inline.history()[columns].to_dict("records")


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "under-its-alarm"])
def test_an_inline_step_cancelled_mid_body_ends_the_run_as_cancelled(timeout: float | None) -> None:
    """Cancelling a run while an inline step sleeps records that step's cancelled attempt and ends
    the run cancelled; inside a timeout too (a cancellation, not a timeout)."""
    flow = wf.Workflow("inline-cancel")

    async def nap(state: Any) -> None:
        await asyncio.sleep(10)

    flow.step(nap, timeout=timeout)

    async def cell() -> wf.Run:
        run = flow.start({}, workspace=False)
        await asyncio.sleep(0.05)
        run.cancel()
        with pytest.raises(wf.RunError, match="cancelled"):
            await run
        return run

    run = asyncio.run(cell())
    assert ("cancelled", [("nap", "cancelled", "CancelledError")]) == (
        run.status,
        [(e.step, e.status, e.error_type) for e in run.events],
    )


def _fan(
    branch: Any, *, timeout: float | None = None, retry: wf.RetryPolicy | None = None, runner: bool = False
) -> wf.Workflow:
    """start -> three parallel branches (run as tasks) -> join. ``runner``: the branches take a
    context, so the attempt runner runs them."""
    flow = wf.Workflow("inline-fan", merge={"seen": wf.append})

    async def noop(state: Any) -> None:
        return None

    flow.step(noop, name="start")
    for name in ("b0", "b1", "b2"):
        flow.step(_via_runner(branch) if runner else branch, name=name, timeout=timeout, retry=retry)
        flow.edge(name, "join")
    flow.step(noop, name="join")
    flow.edge("start", "b0", "b1", "b2")
    return flow


@pytest.mark.parametrize("where", ["memory", "durable", "parallel"])
def test_an_inline_step_that_overstays_its_timeout_makes_the_rows_of_a_runner_step(where: str) -> None:
    """A step with a timeout is awaited by the scheduler itself, under its timeout: when it
    overstays, its attempt is a timeout row (StepTimeoutError) and it is retried, as the attempt
    runner (a step taking a context) times out and retries it; the rows agree but for timing."""
    retry = wf.RetryPolicy(max_retries=1, base_delay=0.0, jitter=0)

    def flow(runner: bool) -> wf.Workflow:
        attempts: dict[int, int] = {}  # per task: a branch's attempts all run in its task

        async def slow_once(state: Any) -> dict[str, Any]:
            key = id(asyncio.current_task())
            attempts[key] = attempts.get(key, 0) + 1
            if attempts[key] == 1:  # each task's first attempt overstays
                await asyncio.sleep(5)
            return {"seen": 1}

        if where == "parallel":
            return _fan(slow_once, timeout=0.05, retry=retry, runner=runner)
        one = wf.Workflow("overstays", merge={"seen": wf.append})
        one.step(_via_runner(slow_once) if runner else slow_once, name="slow", timeout=0.05, retry=retry)
        return one

    timing = {"run_id", "workflow_version", "started_at", "ended_at", "latency_s", "queue_s", "durable_wait_s"}

    def rows(run: wf.Run) -> list[dict[str, Any]]:
        out = [{k: v for k, v in e._asdict().items() if k not in timing} for e in run.events]
        return sorted(out, key=lambda row: (row["step"], row["attempt"]))

    workspace = None if where == "durable" else False
    inline, runner = flow(False).run({}, workspace=workspace), flow(True).run({}, workspace=workspace)
    assert ("succeeded", "succeeded") == (inline.status, runner.status)
    assert rows(runner) == rows(inline)
    timed_out = [e for e in inline.events if e.status == "timeout"]
    assert len(timed_out) == (3 if where == "parallel" else 1)
    assert {("StepTimeoutError", 1)} == {(e.error_type, e.attempt) for e in timed_out}
    assert all(0.05 <= e.latency_s < 4.0 for e in timed_out)  # cut short in a 5 s sleep
    if where == "durable":  # both rows journaled, the ok row checkpointed (it waited for the disk)
        assert 2 == len(wf.Workspace().events(inline.run_id))
        assert all(e.durable_wait_s is not None for e in inline.events if e.status == "ok")


def test_parallel_inline_steps_make_the_same_rows_as_runner_steps() -> None:
    """Branches awaited inline in their tasks and run by the attempt runner (taking a context) agree but for timing."""

    async def branch(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"seen": 1}

    timing = {"run_id", "workflow_version", "started_at", "ended_at", "latency_s", "queue_s"}

    def rows(run: wf.Run) -> list[tuple[str, dict[str, Any]]]:
        out = [(e.step, {k: v for k, v in e._asdict().items() if k not in timing}) for e in run.events]
        return sorted(out, key=lambda row: row[0])  # branches finish in any order

    inline, runner = _fan(branch).run({}, workspace=False), _fan(branch, runner=True).run({}, workspace=False)
    assert rows(runner) == rows(inline)
    assert ([1, 1, 1], "succeeded") == (inline.state["seen"], inline.status)
    steps = [e.step for e in inline.events]
    assert ("start", ["b0", "b1", "b2"], "join", 5) == (steps[0], sorted(steps[1:4]), steps[-1], len(steps))


def test_a_parallel_inline_step_that_fails_once_is_retried_in_its_task() -> None:
    """Each branch raising a transient error once reports a retry row then an ok row; the join runs once."""
    calls: dict[str, int] = {}

    async def branch(state: Any, ctx: Any = None) -> dict[str, Any]:
        key = str(id(asyncio.current_task()))
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1:
            raise wf.TransientError("blip")
        return {"seen": 1}

    run = _fan(branch, retry=wf.RetryPolicy(max_retries=1, base_delay=0.0, jitter=0)).run({}, workspace=False)
    statuses = sorted((e.step, e.attempt, e.status) for e in run.events if e.step.startswith("b"))
    expected = sorted([(b, 1, "retry") for b in ("b0", "b1", "b2")] + [(b, 2, "ok") for b in ("b0", "b1", "b2")])
    assert (expected, [1, 1, 1], 1) == (statuses, run.state["seen"], [e.step for e in run.events].count("join"))


def test_a_parallel_inline_step_returning_no_dict_fails_the_run_with_the_runners_message() -> None:
    """A branch returning a list is judged by the attempt runner in its task: the run fails saying why."""

    async def branch(state: Any) -> list[int]:
        return [1]

    with pytest.raises(wf.StepFailedError, match="returns a dict of state updates"):
        _fan(branch).run({}, workspace=False)


# ---- inline steps: the compiled plan's paths ------------------------------------------------------


def _async_loop(bound: int, laps: int) -> wf.Workflow:
    flow = wf.Workflow("async_loop")

    @flow.step(max_visits=bound)
    async def work(state: Any) -> dict[str, Any]:
        return {"i": state["i"] + 1, "seen": [*state.get("seen", []), state["i"]]}

    flow.route("work", wf.when("i", "lt", laps) >> wf.go("work"), default=wf.go(wf.END))
    return flow


def test_inline_loop_each_visit_sees_its_own_state() -> None:
    """An async step routed back to itself runs once per lap, each visit seeing the state its predecessor left."""
    run = _async_loop(10, 5).run({"i": 0}, workspace=False)
    assert [0, 1, 2, 3, 4] == run.state["seen"]
    assert [1, 2, 3, 4, 5] == [e.visit for e in run.events]
    assert ["work", "work", "work", "work", wf.END] == [e.route_taken for e in run.events]
    assert [(n + 1, "work", n + 1, "ok") for n in range(5)] == [entry[:4] for entry in run._exec.log]


def test_inline_loop_bound_row_follows_the_row_of_the_step_that_met_it() -> None:
    """In memory, an async loop's visit-limit row comes right after the row of the visit that met the bound."""
    with pytest.raises(wf.VisitLimitError) as info:
        _async_loop(3, 10).run({"i": 0}, workspace=False)
    events = info.value.run.events  # type: ignore[attr-defined]
    assert [("work", 1, "ok"), ("work", 2, "ok"), ("work", 3, "ok"), ("work", 4, "failed")] == [
        (e.step, e.visit, e.status) for e in events
    ]


def test_inline_chain_rows_carry_wall_clock_times_in_order() -> None:
    """An async chain's rows fall within the run's wall-clock span, in order, each queued as its predecessor ended."""
    flow = wf.Workflow("async_chain")

    async def nap(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {}

    for name in ("a", "b", "c"):
        flow.step(nap, name=name)
    flow.chain("a", "b", "c")
    before = time.time()
    run = flow.run({}, workspace=False)
    after = time.time()
    events = run.events
    assert ["a", "b", "c"] == [e.step for e in events]
    assert all(before - 0.001 <= e.started_at <= e.ended_at <= after + 0.001 for e in events)
    assert all(e.latency_s >= 0.009 and abs(e.ended_at - e.started_at - e.latency_s) < 1e-6 for e in events)
    for earlier, later in itertools.pairwise(events):
        assert 0 <= later.queue_s < 0.05
        assert earlier.ended_at <= later.started_at - later.queue_s + 1e-6


def test_inline_join_waits_for_every_running_branch() -> None:
    """Async branches of a fan-out each arrive at the join, which runs once, after the last of them."""
    flow = wf.Workflow("async_fan")

    async def start(state: Any) -> dict[str, Any]:
        return {}

    def branch(delay: float, name: str) -> Any:
        async def run(state: Any) -> dict[str, Any]:
            await asyncio.sleep(delay)
            return {name: True}

        return run

    async def join(state: Any) -> dict[str, Any]:
        return {"joined": sorted(k for k in state if k.startswith("b"))}

    flow.step(start, name="start")
    names = [f"b{i}" for i in range(6)]
    for i, name in enumerate(names):
        flow.step(branch(0.005 * (6 - i), name), name=name)
        flow.edge(name, "join")
    flow.step(join, name="join")
    flow.edge("start", *names)
    run = flow.run({}, workspace=False)
    assert names == run.state["joined"]
    assert ["join"] == [e.step for e in run.events if e.step == "join"]
    assert "join" == run.events[-1].step


def test_inline_parallel_writes_to_one_field_conflict() -> None:
    """Two async branches writing one field conflict (a commit checks once another committed since it was queued)."""
    flow = wf.Workflow("async_conflict")

    async def start(state: Any) -> dict[str, Any]:
        return {"n": 0}

    def writer(delay: float) -> Any:
        async def write(state: Any) -> dict[str, Any]:
            await asyncio.sleep(delay)
            return {"answer": delay}

        return write

    flow.step(start, name="start")
    flow.step(writer(0.001), name="fast")
    flow.step(writer(0.02), name="slow")
    flow.edge("start", "fast", "slow")
    with pytest.raises(wf.StateConflictError, match="steps 'fast' and 'slow' ran in parallel and both wrote"):
        flow.run({}, workspace=False)


# ---- inline steps in a durable run (checkpointed by the scheduler itself) --------------------------


def _journal_rows(run_id: str) -> list[tuple[Any, ...]]:
    """What the run store holds of a run: (step, visit, attempt, status, outcome, updates), in journal order."""
    import sqlite3

    from wfkit.store._workspace import open_store

    conn = sqlite3.connect(open_store().path)
    try:
        return conn.execute(
            "SELECT step, visit, attempt, status, outcome, updates FROM journal WHERE run_id=? ORDER BY seq", (run_id,)
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_durable_inline_and_runner_steps_make_the_same_rows_and_checkpoints(
    synchronous: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A durable loop of inline steps and the same steps run by the attempt runner store and emit equal rows."""
    monkeypatch.setenv("WFKIT_SYNCHRONOUS", synchronous)

    async def add(state: Any) -> dict[str, Any]:
        return {"i": state.get("i", 0) + 1, "note": f"lap {state.get('i', 0)}", "seen": state.get("i", 0)}

    def chain(runner: bool) -> wf.Workflow:
        flow = wf.Workflow("same-durable-rows", merge={"seen": wf.append})
        for name in ("a", "b"):
            flow.step(_via_runner(add) if runner else add, name=name, max_visits=5)
        flow.route("b", wf.when("i", "lt", 4) >> wf.go("a"), default=wf.go(wf.END))
        flow.chain("a", "b")
        return flow

    timing = {"run_id", "workflow_version", "started_at", "ended_at", "latency_s", "queue_s", "durable_wait_s"}

    def rows(events: list[wf.StepEvent]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e._asdict().items() if k not in timing} for e in events]

    inline, runner = chain(False).run({}), chain(True).run({})
    assert ("succeeded", "succeeded") == (inline.status, runner.status)
    assert rows(runner.events) == rows(inline.events)
    assert [r[:5] for r in _journal_rows(runner.run_id)] == [r[:5] for r in _journal_rows(inline.run_id)]
    assert [r[5] for r in _journal_rows(runner.run_id)] == [r[5] for r in _journal_rows(inline.run_id)]
    assert {"i": 4, "note": "lap 3", "seen": [0, 1, 2, 3]} == inline.state
    assert runner.state == inline.state
    stored = wf.Workspace().events(inline.run_id)
    assert [(e.step, e.visit, e.durable_wait_s) for e in inline.events] == [
        (e.step, e.visit, e.durable_wait_s) for e in stored
    ]
    assert all(e.durable_wait_s is not None and e.durable_wait_s >= 0.0 for e in inline.events)


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_a_durable_inline_successor_starts_only_after_its_predecessors_checkpoint_is_on_disk(
    synchronous: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Async steps without a context, checkpointed from the scheduler, each find their predecessors' rows on disk."""
    import sqlite3

    monkeypatch.setenv("WFKIT_SYNCHRONOUS", synchronous)
    seen: dict[str, list[str]] = {}
    flow = wf.Workflow("ordered-inline")

    def make(name: str) -> Any:
        async def step(state: Any) -> dict[str, Any]:
            conn = sqlite3.connect(workspace / "wfkit.db")
            try:
                rows = conn.execute("SELECT step FROM journal WHERE outcome='ok' ORDER BY seq").fetchall()
            finally:
                conn.close()
            seen[name] = [r[0] for r in rows]
            _stall_writer(0.05)  # this step's checkpoint is slow to reach the disk
            return {name: True}

        return step

    for name in ("a", "b", "c"):
        flow.step(make(name), name=name)
    flow.chain("a", "b", "c")
    run = flow.run({})
    assert ([], ["a"], ["a", "b"]) == (seen["a"], seen["b"], seen["c"])
    assert all(e.durable_wait_s is not None and e.durable_wait_s >= 0.04 for e in run.events)
    assert all(e.latency_s < 0.04 for e in run.events)  # the stall is the checkpoint's wait, not the body's


def test_a_durable_inline_steps_text_and_lists_come_back_on_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values beyond numbers written by an inline step are checkpointed as JSON and rebuilt when the run resumes."""
    calls: list[str] = []
    flow = wf.Workflow("inline-resume")

    @flow.step
    async def write(state: Any) -> dict[str, Any]:
        calls.append("write")
        return {"text": "héllo", "items": [1, 2.5, None], "nested": {"k": ["v"]}}

    @flow.step(retry=wf.RetryPolicy(max_retries=0))
    async def check(state: Any) -> dict[str, Any]:
        calls.append("check")
        if not os.environ.get("INLINE_FIXED"):
            raise wf.PermanentError("not yet")
        return {"checked": (state["text"], state["items"], state["nested"])}

    flow.chain("write", "check")
    run = flow.run({}, raise_on_error=False)
    assert "failed" == run.status
    monkeypatch.setenv("INLINE_FIXED", "1")
    resumed = flow.resume(run.run_id)
    assert ("succeeded", ["write", "check", "check"]) == (resumed.status, calls)
    assert ("héllo", [1, 2.5, None], {"k": ["v"]}) == resumed.state["checked"]


def test_a_durable_inline_step_writing_a_value_state_cannot_keep_is_refused() -> None:
    """In a durable run, an async step writing an object fails with the codec's StateValueError naming the field."""
    flow = wf.Workflow("inline-object-durable")

    async def writes_object(state: Any) -> dict[str, Any]:
        return {"x": object()}

    flow.step(writes_object)
    with pytest.raises(wf.StepFailedError, match="'x'") as info:
        flow.run({})
    assert "StateValueError" == type(info.value.__cause__).__name__


def test_a_durable_inline_step_returning_no_dict_fails_with_the_runners_message() -> None:
    """In a durable run, an async step returning a list fails the run with the message on what a step returns."""
    flow = wf.Workflow("inline-bad-durable")

    async def listy(state: Any) -> list[int]:
        return [1, 2]

    flow.step(listy)
    run = flow.run({}, raise_on_error=False)
    assert "failed" == run.status
    assert "returns a dict of state updates" in str(run.error)
    assert [("listy", 1, 1, "failed", None, None)] == _journal_rows(run.run_id)


def test_a_durable_inline_step_retried_journals_each_attempt() -> None:
    """A durable async step failing once: a retry row then an ok row carrying the checkpoint, in memory and on disk."""
    calls: list[int] = []
    flow = wf.Workflow("inline-retry-durable")

    async def flaky(state: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise wf.TransientError("blip")
        return {"n": len(calls)}

    flow.step(flaky, retry=wf.RetryPolicy(max_retries=2, base_delay=0.0, jitter=0))
    run = flow.run({})
    assert [("flaky", 1, "retry"), ("flaky", 2, "ok")] == [(e.step, e.attempt, e.status) for e in run.events]
    assert [("flaky", 1, 1, "retry", None, None), ("flaky", 1, 2, "ok", "ok", '{"n":2}')] == _journal_rows(run.run_id)


def test_a_durable_inline_route_that_cannot_be_evaluated_fails_the_run_and_journals_the_step() -> None:
    """A route that cannot be evaluated after a durable inline step fails the run; the step's failed row is stored."""
    flow = wf.Workflow("inline-cmp-durable")

    async def a(state: Any) -> dict[str, Any]:
        return {"score": "high"}

    async def b(state: Any) -> None:
        return None

    flow.step(a)
    flow.step(b)
    flow.route("a", wf.when("score", "gt", 0.5) >> wf.go("b"), default=wf.go(wf.END))
    run = flow.run({}, raise_on_error=False)
    assert ("failed", "ConditionError") == (run.status, type(run.error).__name__)
    assert [("a", 1, 1, "failed", None, None)] == _journal_rows(run.run_id)
    assert [("a", "failed", "ConditionError")] == [(e.step, e.status, e.error_type) for e in run.events]


def test_a_durable_inline_loop_bound_row_follows_the_checkpoint_of_the_visit_that_met_it() -> None:
    """In a durable run, the visit-limit row follows the checkpoint of the visit that met the bound, also on disk."""
    run = _async_loop(3, 10).run({"i": 0}, raise_on_error=False)
    assert "failed" == run.status
    expected = [("work", 1, "ok"), ("work", 2, "ok"), ("work", 3, "ok"), ("work", 4, "failed")]
    assert expected == [(e.step, e.visit, e.status) for e in run.events]
    assert expected == [(r[0], r[1], r[3]) for r in _journal_rows(run.run_id)]


def test_a_durable_chain_of_inline_steps_settles_without_the_attempt_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """A durable run's inline steps (a step with a timeout too) are checkpointed by the scheduler; a
    step that takes a context still uses the runner."""
    from wfkit.engine._attempts import AttemptRunner

    ran: list[str] = []
    run_attempts = AttemptRunner.run

    async def counting(self: AttemptRunner, act: Any, first: Any = None, alarm: Any = None) -> Any:
        ran.append(act.spec.name)
        return await run_attempts(self, act, first, alarm)

    monkeypatch.setattr(AttemptRunner, "run", counting)
    flow = wf.Workflow("lean-durable")

    async def step(state: Any) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1}

    for name in ("a", "b", "c"):
        flow.step(_via_runner(step) if name == "c" else step, name=name, timeout=5.0 if name == "b" else None)
    flow.chain("a", "b", "c")
    run = flow.run({})
    assert (["c"], {"n": 3}) == (ran, run.state)
    assert [
        ("a", 1, 1, "ok", "ok", '{"n":1}'),
        ("b", 1, 1, "ok", "ok", '{"n":2}'),
        ("c", 1, 1, "ok", "ok", '{"n":3}'),
    ] == (_journal_rows(run.run_id))


def test_rows_settled_inline_in_memory_are_the_rows_event_maker_makes() -> None:
    """A run kept in memory settles plain inline steps in one frame: each row equals EventMaker.ok's for its fields."""
    from wfkit.engine._stepevents import EventMaker

    flow = wf.Workflow("inline-rows")

    @flow.step(max_visits=3)
    async def work(state: Any) -> dict[str, Any]:
        return {"i": state["i"] + 1}

    @flow.step(tools=["search"])
    async def done(state: Any) -> None:
        return None

    flow.route("work", wf.when("i", "lt", 2) >> wf.go("work", tools=["calc"]), default=wf.go("done"))
    sink = MemorySink()
    run = flow.run({"i": 0}, sinks=[sink], workspace=False)
    make = EventMaker(run.run_id, "inline-rows", run.events[0].workflow_version, run.events[0].parameters_hash, ())
    expected = [
        make.ok(e.step, e.visit, e.started_at, e.latency_s, e.queue_s, e.route_taken, e.tools) for e in sink.events
    ]
    assert expected == sink.events
    assert [("work", 1, ()), ("work", 2, ("calc",)), ("done", 1, ("search",))] == [
        (e.step, e.visit, e.tools) for e in sink.events
    ]
    assert [("work", "work"), ("work", "done"), ("done", None)] == [(e.step, e.route_taken) for e in sink.events]


def test_a_run_no_one_listens_to_has_the_events_of_a_run_with_a_sink() -> None:
    """In memory with no sink, inline rows are kept compact and made when read: the same events, in
    the same order, as a run whose sink heard each one (a visit bound's failure among them)."""
    flow = wf.Workflow("compact-rows")

    @flow.step(max_visits=3)
    async def work(state: Any) -> dict[str, Any]:
        return {"i": state["i"] + 1}

    flow.route("work", wf.when("i", "lt", 5) >> wf.go("work", tools=["calc"]), default=wf.go(wf.END))
    differ = {"run_id", "started_at", "ended_at", "latency_s", "queue_s", "error_message"}  # (it names the run)

    def rows(events: list[wf.StepEvent]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e._asdict().items() if k not in differ} for e in events]

    sink = MemorySink()
    heard = flow.run({"i": 0}, sinks=[sink], workspace=False, raise_on_error=False)
    alone = flow.run({"i": 0}, workspace=False, raise_on_error=False)
    assert rows(sink.events) == rows(heard.events) == rows(alone.events)
    assert ["ok", "ok", "ok", "failed"] == [e.status for e in alone.events]
    assert all(type(e) is wf.StepEvent for e in alone.events)
    from wfkit.engine._stepevents import EventMaker

    first = alone.events[0]
    make = EventMaker(alone.run_id, "compact-rows", first.workflow_version, first.parameters_hash, ())
    assert alone.events[:3] == [
        make.ok(e.step, e.visit, e.started_at, e.latency_s, e.queue_s, e.route_taken, e.tools) for e in alone.events[:3]
    ]


# ---- a route on a field the state does not hold -----------------------------------------------


def _graded(field: str, **score_options: Any) -> wf.Workflow:
    """score writes `score`; its route compares ``field`` with 80: good, else bad."""
    flow = wf.Workflow("grade")
    flow.step(lambda state: {"score": 90}, name="score", **score_options)
    flow.step(lambda state: {"out": "good"}, name="good")
    flow.step(lambda state: {"out": "bad"}, name="bad")
    flow.route("score", wf.when(field, "ge", 80) >> wf.go("good"), default=wf.go("bad"))
    return flow


@pytest.mark.parametrize("durable", [False, True])
def test_route_on_a_misspelt_field_warns_naming_it_and_the_closest_field(durable: bool, tmp_path: Path) -> None:
    """A condition on a field no input, step or declaration provides, where no route held, warns
    once per run, naming the field, the fields the state holds, the closest of them and the default taken."""
    flow = _graded("scroe")
    with pytest.warns(wf.RouteFieldWarning) as caught:
        run = flow.run({"student": "ada"}, workspace=tmp_path if durable else False)
    assert ("succeeded", "bad") == (run.status, run.state["out"])
    assert 1 == len(caught)
    message = str(caught[0].message)
    assert "workflow 'grade': the route after step 'score' compares field 'scroe'" in message
    assert "['score', 'student']" in message
    assert "(did you mean 'score'?)" in message
    assert "no route held: the run went to the default, 'bad'" in message


def test_a_misspelt_route_field_warns_once_at_the_route_not_once_per_run() -> None:
    """A batch of runs misled by one misspelt field printed the warning once per run (each named
    its run), each at a line of wfkit's engine (`self._warn_absent(...)` shown under it). Under
    Python's default filter it now shows once, at the user's `flow.route(...)` line, which Python
    prints under it."""
    flow = wf.Workflow("grade")
    flow.step(lambda state: {"score": 90}, name="score")
    flow.step(lambda state: {"out": "good"}, name="good")
    flow.step(lambda state: {"out": "bad"}, name="bad")
    declared = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    flow.route("score", wf.when("scroe", "ge", 80) >> wf.go("good"), default="bad")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        batch = flow.run_many([{"n": i} for i in range(5)], workspace=False, progress=False)
    assert [state["out"] for state in batch.runs["state"]] == ["bad"] * 5
    assert 1 == len(caught)
    assert (__file__, declared) == (caught[0].filename, caught[0].lineno)
    assert issubclass(caught[0].category, wf.RouteFieldWarning)
    assert str(caught[0].message).startswith("workflow 'grade': the route after step 'score' compares field 'scroe'")


def test_route_warns_of_an_absent_field_once_per_run_in_a_loop() -> None:
    """A loop deciding its route ten times on an absent field warns once per run, not per visit."""
    flow = wf.Workflow("laps")
    flow.step(lambda state: {"i": state.get("i", 0) + 1}, name="work", max_visits=20)
    flow.route("work", (wf.when("i", "lt", 10) & wf.when("stop", "ne", True)) >> wf.go("work"), default=wf.go(wf.END))
    with pytest.warns(wf.RouteFieldWarning) as caught:
        run = flow.run({})
    assert (10, 1) == (run.state["i"], len(caught))
    with pytest.warns(wf.RouteFieldWarning) as again:
        flow.run({})
    assert 1 == len(again)


@pytest.mark.parametrize("durable", [False, True])
def test_a_loop_held_by_a_misspelt_field_warns_naming_it(durable: bool, tmp_path: Path) -> None:
    """A state machine `when("status", "ne", "done") >> go("work")` whose step writes "stauts" went
    round to its visit bound with no warning: the route held (a missing field equals nothing), and
    the warning came only when no route held. It warns once, when the route first holds so, naming
    the field, the closest the state holds and the route taken; `~when(..., "eq", ...)` alike."""
    for condition in (wf.when("status", "ne", "done"), ~wf.when("status", "eq", "done")):
        flow = wf.Workflow("machine")

        @flow.step(max_visits=4)
        def work(state: Any) -> dict[str, Any]:
            laps = state.get("laps", 0) + 1
            return {"laps": laps, "stauts": "done" if laps >= 2 else "working"}

        flow.step(lambda state: {"out": "finished"}, name="finish")
        flow.route("work", condition >> wf.go("work"), default=wf.go("finish"))
        with pytest.warns(wf.RouteFieldWarning) as caught:
            run = flow.run({}, workspace=tmp_path if durable else False, raise_on_error=False)
        assert ("failed", 4) == (run.status, run.state["laps"])
        assert 1 == len(caught)
        assert (
            "workflow 'machine': the route after step 'work' to 'work' compares field 'status', which neither the "
            "run's inputs nor any step so far put in the state (it holds ['laps', 'stauts']) (did you mean "
            "'stauts'?); a missing field equals nothing, so the route held because it is missing"
        ) in str(caught[0].message)
    guarded = wf.Workflow("guarded")
    guarded.step(lambda state: {"laps": state.get("laps", 0) + 1}, name="work", max_visits=4)
    guarded.route(
        "work",
        (wf.when("status", "exists") & wf.when("status", "ne", "done")) >> wf.go("work"),
        default=wf.go(wf.END),
    )
    assert "succeeded" == guarded.run({}, workspace=False).status  # tested with exists: no warning


def test_a_run_whose_route_fields_are_there_allocates_nothing_for_their_warnings() -> None:
    """The fields warned of once per run are kept only by a run that warns: one whose routes
    compare fields the state holds (nearly every run) holds no set for them (ten thousand
    runs in flight would each hold an empty one)."""
    run = _graded("score").run({})
    assert "good" == run.state["out"]
    assert [] == [r for r in gc.get_referents(run._exec) if isinstance(r, (set, frozenset))]


def test_route_on_an_optional_field_that_is_declared_or_tested_does_not_warn() -> None:
    """Fields a step declares it writes, that are present, that the condition tests with `exists`,
    or an absent one beside a part that held (`score >= 80 | user.tier == 'gold'`) are legitimately
    optional: no warning (warnings are errors in this test run)."""
    assert "good" == _graded("score").run({}).state["out"]
    assert "bad" == _graded("bonus", writes=["score", "bonus"]).run({}).state["out"]
    flow = wf.Workflow("optional")
    flow.step(lambda state: {}, name="look")
    flow.step(lambda state: {"out": "flagged"}, name="flag")
    flow.route(
        "look", (wf.when("flag", "exists") & wf.when("flag", "eq", True)) >> wf.go("flag"), default=wf.go(wf.END)
    )
    assert "succeeded" == flow.run({}).status
    either = _graded("score")
    either.route(
        "score",
        (wf.when("score", "ge", 80) | wf.when("user.tier", "eq", "gold")) >> wf.go("good"),
        default=wf.go("bad"),
    )
    assert "good" == either.run({}).state["out"]
