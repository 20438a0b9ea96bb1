"""Defining workflows and the three ways to run them: run, arun and start."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf


def _two_steps() -> wf.Workflow:
    flow = wf.Workflow("two")

    @flow.step
    async def first(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"x": state.get("x", 0) + 1}

    @flow.step
    def second(state: Any) -> dict[str, Any]:
        return {"y": state["x"] * 10}

    flow.chain("first", "second")
    return flow


def test_first_step_is_entry_unless_declared() -> None:
    """The first declared step is the entry; entry=True or set_entry changes it."""
    flow = wf.Workflow("e", merge={"order": wf.append})
    flow.step(lambda s: {"order": "a"}, name="a", max_visits=2)
    flow.step(lambda s: {"order": "b"}, name="b", entry=True)
    flow.edge("b", "a")
    flow.route("a", wf.when("order", "contains", "b") >> wf.go(wf.END), default=wf.go("b"))
    assert flow.run({}).state["order"] == ["b", "a"]
    flow.set_entry("a")
    assert flow.run({}).state["order"] == ["a", "b", "a"]


def test_decorator_returns_the_function() -> None:
    """@flow.step leaves the function usable on its own."""
    flow = wf.Workflow("d")

    @flow.step(timeout=1)
    def double(state: Any) -> dict[str, Any]:
        return {"v": state["v"] * 2}

    assert double({"v": 2}) == {"v": 4}
    assert flow.steps["double"].timeout == 1


def test_a_retry_policys_keyword_given_to_a_step_names_the_retry_to_write() -> None:
    """``flow.step(max_retries=3)`` (how LangGraph, tenacity and Prefect put it) is refused with the
    ``retry=wf.RetryPolicy(...)`` to write, carrying the values given; a misspelt keyword beside
    them is still named; nothing is registered, and the call it names works."""
    flow = wf.Workflow("retries")
    with pytest.raises(TypeError) as one:
        flow.step(lambda s: None, name="a", max_retries=3)  # type: ignore[call-overload]
    assert str(one.value) == (
        "Workflow.step() takes no 'max_retries': a retry policy does, so write retry=wf.RetryPolicy(max_retries=3)"
    )
    with pytest.raises(TypeError) as several:
        flow.step(retries=2, base_delay=0.5, timout=3)  # type: ignore[call-overload]
    assert str(several.value).startswith(
        "Workflow.step() takes no 'base_delay', 'retries': a retry policy does, so write "
        "retry=wf.RetryPolicy(base_delay=0.5, max_retries=2) (Workflow.step() got unexpected keyword "
        "argument(s) 'timout' (did you mean 'timeout'?); it takes "
    )
    with pytest.raises(TypeError, match=r"so write retry=wf.RetryPolicy\(max_retries=1\)"):
        flow.map(over="docs", into="out", max_retries=1)  # type: ignore[call-overload]
    with pytest.raises(TypeError) as attempts:
        flow.step(max_attempts=3)  # type: ignore[call-overload]
    assert str(attempts.value) == (
        "Workflow.step() takes no 'max_attempts': a retry policy does, so write "
        "retry=wf.RetryPolicy(max_retries=2) (max_attempts=3 counts the first attempt)"
    )
    assert {} == flow.steps
    flow.step(lambda s: None, name="a", retry=wf.RetryPolicy(base_delay=0.5, max_retries=2))
    assert flow.steps["a"].retry == wf.RetryPolicy(base_delay=0.5, max_retries=2)


def test_a_misspelt_public_name_of_the_package_names_the_closest() -> None:
    """``wf.Retry`` says which public name it is close to; private and dunder names stay plain."""
    with pytest.raises(
        AttributeError, match=r"^module 'wfkit' has no attribute 'Retry' \(did you mean 'RetryPolicy'\?\)$"
    ):
        wf.Retry  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError, match=r"^module 'wfkit' has no attribute 'StateGraph'$"):
        wf.StateGraph  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(wf, "__wrapped__")
    with pytest.raises(AttributeError, match=r"^module 'wfkit' has no attribute '_Workflow'$"):
        wf._Workflow  # type: ignore[attr-defined]  # noqa: B018


def test_a_misspelt_keyword_of_step_or_map_names_the_closest() -> None:
    """A keyword step() or map() does not take, called directly or as a decorator factory, is a
    TypeError naming the keyword it is closest to and the ones it takes; nothing is registered."""
    import inspect

    flow = wf.Workflow("typos")
    with pytest.raises(TypeError) as direct:
        flow.step(lambda s: None, name="a", retires=3)  # type: ignore[call-overload]
    assert str(direct.value).startswith(
        "Workflow.step() got unexpected keyword argument(s) 'retires' (did you mean 'retry'?); "
        "it takes approval, cache, classify, entry, fallback, irreversible, max_visits, name, retry, timeout"
    )
    with pytest.raises(TypeError) as factory:
        flow.step(retires=3, timout=2)  # type: ignore[call-overload]
    assert "'retires' (did you mean 'retry'?), 'timout' (did you mean 'timeout'?); it takes" in str(factory.value)
    with pytest.raises(TypeError) as mapped:
        flow.map(over="docs", into="out", max_concurency=2)  # type: ignore[call-overload]
    assert "Workflow.map() got unexpected keyword argument(s) 'max_concurency' (did you mean 'max_concurrency'?)" in (
        str(mapped.value)
    )
    child = wf.Workflow("child")
    with pytest.raises(
        TypeError,
        match=r"Workflow.subflow\(\) got unexpected keyword argument\(s\) 'output' "
        r"\(did you mean 'outputs'\?\)",
    ):
        flow.subflow(child, name="c", output={"x": "y"})  # type: ignore[call-arg]
    assert {} == flow.steps
    with pytest.raises(TypeError, match=r"takes from 1 to 2 positional arguments but 3 were given"):
        flow.step(lambda s: None, "b")  # type: ignore[call-overload]
    # The signature users see (help, completion) is the real one: keyword-only, no **kwargs.
    params = inspect.signature(wf.Workflow.step).parameters
    assert "retry" in params
    assert inspect.Parameter.VAR_KEYWORD not in {p.kind for p in params.values()}


def test_a_misspelt_run_input_names_the_declared_one_it_meant(workspace: Path) -> None:
    """flow.run({"qeury": ...}) of a workflow declaring inputs=["query"] said the inputs lacked
    ['query'], naming nothing of what was given; it now says which given name is close to which."""
    flow = wf.Workflow("asker", inputs=["query", "lang"])

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        return {"answer": state["query"]}

    with pytest.raises(ValueError) as caught:
        flow.run({"qeury": "hi", "lnag": "en", "other": 1})
    assert (
        "workflow 'asker' declares the inputs ['lang', 'query'], and this run's inputs lack ['lang', 'query'] "
        "('qeury' given: did you mean 'query'?; 'lnag' given: did you mean 'lang'?): pass them (or drop them "
        "from Workflow(..., inputs=...))"
    ) == str(caught.value)
    with pytest.raises(ValueError, match=r"lack \['query'\]: pass them"):
        flow.run({"lang": "en", "other": 1})
    assert not (workspace / "wfkit.db").exists() or [] == wf.Workspace().runs()


def test_redefining_in_a_notebook_cell_replaces_the_step() -> None:
    """Re-running a cell that defines the same function replaces the step."""
    flow = wf.Workflow("nb")
    for value in (1, 2):

        def answer(state: Any, value: int = value) -> dict[str, Any]:
            return {"v": value}

        flow.step(answer)
    assert flow.run({}).state["v"] == 2


def test_two_functions_with_one_name_are_refused() -> None:
    """Two different functions cannot share a step name."""
    flow = wf.Workflow("dup")

    def one(state: Any) -> None:
        return None

    def two(state: Any) -> None:
        return None

    flow.step(one, name="same")
    with pytest.raises(ValueError, match="already has a step named 'same'"):
        flow.step(two, name="same")


def test_route_requires_route_objects_and_takes_a_step_name_for_a_destination() -> None:
    """route() rejects a bare condition with a hint. A destination may be a step's name, as in
    LangGraph: `default="a"` (refused before, with `default must be wfkit.go('step')`) is
    `default=wf.go("a")`, and `when(...) >> "a"` is `>> wf.go("a")`; a step's function or
    anything else is refused saying what to write."""
    flow = wf.Workflow("r")
    flow.step(lambda s: None, name="a")
    with pytest.raises(TypeError, match=r"wfkit.when\(...\) >> wfkit.go\(...\)"):
        flow.route("a", wf.when("x", "eq", 1), default=wf.go("a"))  # type: ignore[arg-type]
    flow.route("a", wf.when("x", "eq", 1) >> "a", default="a")
    router = flow._routers["a"]
    assert (wf.go("a"), (wf.go("a"),)) == (router.default, tuple(r.go for r in router.routes))

    def answer(state: Any) -> None:
        return None

    with pytest.raises(
        TypeError, match=r"default must be wfkit.go\('step'\) or a step's name, got the function answer: write 'answer'"
    ):
        flow.route("a", default=answer)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"default must be wfkit.go\('step'\) or a step's name, got 3"):
        flow.route("a", default=3)  # type: ignore[arg-type]


def test_edge_needs_a_target_and_workflow_needs_a_name() -> None:
    """Degenerate definitions fail at once with a clear message."""
    with pytest.raises(ValueError, match="non-empty name"):
        wf.Workflow("  ")
    with pytest.raises(TypeError, match="at least one target"):
        wf.Workflow("x").edge("a")


def test_a_step_function_where_its_name_belongs_is_refused_with_the_call_to_write() -> None:
    """A LangGraph habit, ``flow.edge(plan, write)`` with the decorated functions, failed on the
    first run deep in difflib ("'function' object is not iterable"); it is refused where it is
    written, with the call to write instead."""
    flow = wf.Workflow("names")

    @flow.step
    def plan(state: Any) -> None:
        return None

    @flow.step
    def write(state: Any) -> None:
        return None

    with pytest.raises(TypeError, match=r"step names, not functions: write flow\.edge\('plan', 'write'\)"):
        flow.edge(plan, write)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"write flow\.chain\('plan', 'write'\)"):
        flow.chain("plan", write)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"write flow\.route\('plan', \.\.\.\)"):
        flow.route(plan, default=wf.go("write"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"write flow\.set_entry\('write'\)"):
        flow.set_entry(write)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"write wfkit\.go\('write'\)"):
        wf.go(write)  # type: ignore[arg-type]
    # Nothing was half-added: the names still make a runnable workflow.
    flow.chain("plan", "write")
    assert flow.run({}, workspace=False).path() == ["plan", "write"]


def test_bad_run_timeout_is_refused() -> None:
    """A run timeout of zero or less is refused before anything runs."""
    with pytest.raises(ValueError, match="timeout must be > 0"):
        _two_steps().run({}, timeout=0)


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        ("5", TypeError, r"got '5' \(str\): pass timeout=5 \(a number of seconds, not a string\)"),
        (True, TypeError, r"got True \(bool\): a bool is no duration"),
        (float("inf"), ValueError, r"a finite number of seconds, got inf: leave the timeout unset \(None\)"),
    ],
)
def test_a_run_timeout_of_a_string_a_bool_or_infinity_is_refused_before_anything_runs(
    timeout: Any, error: type[Exception], message: str
) -> None:
    """`flow.run(..., timeout="5")` failed with Python's own "'>' not supported between instances of
    'str' and 'int'", and `timeout=True` ran with a 1 s deadline. Both are now a TypeError naming the
    call and saying to pass seconds as a number or a timedelta; infinity, a ValueError saying to leave
    the timeout unset. run_many refuses them before any run starts."""
    flow = _two_steps()
    for call, go in (
        ("run", lambda: flow.run({}, timeout=timeout, workspace=False)),
        ("start", lambda: flow.start({}, timeout=timeout, workspace=False)),
        ("run_many", lambda: flow.run_many([{}], timeout=timeout, workspace=False)),
    ):
        with pytest.raises(error, match=rf"^{call}\(timeout=...\): a run's timeout must be .*{message}"):
            go()


def test_run_from_plain_python() -> None:
    """run() works from synchronous code with no loop."""
    run = _two_steps().run({"x": 1})
    assert run.result() == {"x": 2, "y": 20}
    assert run.status == "succeeded"


def test_arun_and_run_inside_a_running_loop() -> None:
    """Inside a running loop (a notebook cell) both await arun() and blocking run() work."""

    async def cell() -> tuple[dict[str, Any], dict[str, Any]]:
        flow = _two_steps()
        awaited = await flow.arun({"x": 1})
        blocking = flow.run({"x": 2})  # no nest_asyncio: runs on a worker thread's loop
        return awaited.state, blocking.state

    a, b = asyncio.run(cell())
    assert a["y"] == 20
    assert b["y"] == 30


def test_start_returns_at_once_and_await_waits() -> None:
    """start() inside a loop returns while the run goes on; awaiting it gives the result."""

    async def cell() -> tuple[str, wf.Run]:
        run = _two_steps().start({"x": 0})
        status_at_start = run.status
        finished = await run
        return status_at_start, finished

    status, run = asyncio.run(cell())
    assert status in ("pending", "running")
    assert run.state["y"] == 10


def test_start_from_sync_code_uses_background_loop() -> None:
    """start() with no running loop executes in the background; wait() blocks for it."""
    run = _two_steps().start({"x": 4})
    assert run.wait(timeout=5).state["y"] == 50
    assert run.done()


def test_await_failed_run_raises_with_run_attached() -> None:
    """Awaiting a failed run raises its error, which carries the run."""
    flow = wf.Workflow("fails")
    flow.step(lambda s: 1 / 0, name="div")

    async def cell() -> None:
        await flow.start({})

    with pytest.raises(wf.StepFailedError) as info:
        asyncio.run(cell())
    assert info.value.run.status == "failed"  # type: ignore[attr-defined]
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_cancel_a_started_run() -> None:
    """cancel() stops a started run; it ends as cancelled and awaiting does not hang."""
    started = threading.Event()
    flow = wf.Workflow("long")

    @flow.step
    async def forever(state: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    async def cell() -> wf.Run:
        run = flow.start({})
        await asyncio.to_thread(started.wait, 5)
        run.cancel()
        with pytest.raises(wf.RunError, match="cancelled"):
            await run
        return run

    run = asyncio.run(cell())
    assert run.status == "cancelled"
    assert run.events[-1].error_type == "CancelledError"


def test_result_before_end_and_wait_inside_loop_are_refused() -> None:
    """result() of an unfinished run, and wait() from inside its own loop, explain themselves."""

    async def cell() -> None:
        run = _two_steps().start({})
        with pytest.raises(RuntimeError, match="await it first"):
            run.result()
        with pytest.raises(RuntimeError, match="use `await run`"):
            run.wait()
        await run

    asyncio.run(cell())


def test_repr_is_informative() -> None:
    """Workflow and Run reprs say what they are."""
    flow = _two_steps()
    assert repr(flow) == "<Workflow 'two': 2 steps, entry='first'>"
    run = flow.run({})
    assert f"<Run {run.run_id} of 'two': succeeded, 2 steps done, 2 events>" == repr(run)


def test_version_defaults_to_fingerprint() -> None:
    """Without a declared version the fingerprint stands in."""
    flow = _two_steps()
    assert flow.validate().fingerprint == flow.version
    assert wf.Workflow("v", version="2.0").version == "2.0"


def test_drain_waits_for_every_started_run() -> None:
    """wfkit.drain() returns once every run started in this process has ended or halted."""

    async def cell() -> list[wf.Run]:
        runs = [_two_steps().start({"x": i}) for i in range(3)]
        drained = await wf.drain()
        assert all(r.done() for r in runs)
        return drained

    drained = asyncio.run(cell())
    assert 3 <= len(drained)
    assert {"succeeded"} == {r.status for r in drained}


def test_drain_raises_the_first_failure() -> None:
    """A failed run makes drain() raise, unless raise_on_error=False."""
    flow = wf.Workflow("drain-fails")
    flow.step(lambda s: 1 / 0, name="boom")

    async def cell() -> None:
        flow.start({})
        with pytest.raises(wf.StepFailedError):
            await wf.drain()
        flow.start({})
        await wf.drain(raise_on_error=False)

    asyncio.run(cell())


# ---- tools bound by routes, and the history of resumed runs ------------------------------------------


def test_a_route_binding_a_tool_the_registry_lacks_fails_before_the_first_step() -> None:
    """Tools bound by a route or a step are checked against the run's registry before anything runs."""
    from wfkit.llm import ToolRegistry, UnknownToolError

    ran: list[str] = []
    registry = ToolRegistry()

    @registry.tool
    def web_search(query: str) -> str:
        return query

    flow = wf.Workflow("tool-check")
    flow.step(lambda s: ran.append("classify") or {"k": 1}, name="classify")
    flow.step(lambda s: None, name="answer", tools=["web_search"])
    flow.route("classify", wf.when("k", "eq", 1) >> wf.go("answer", tools=["sql_query"]), default=wf.go("answer"))
    with pytest.raises(
        UnknownToolError, match=r"'sql_query' \(bound by the route 'classify' -> 'answer'\).*web_search"
    ):
        flow.run({}, tools=registry, workspace=False)
    assert [] == ran


def test_a_resumed_run_reports_the_whole_run(workspace: Any) -> None:
    """path() and events of a run resumed by a fresh handle (as in a new process) cover every step."""

    def build() -> wf.Workflow:
        flow = wf.Workflow("whole-history")
        flow.step(lambda s: {"a": 1}, name="a")
        flow.step(lambda s: {"b": 1}, name="b", approval="check")
        flow.step(lambda s: {"c": 1}, name="c")
        flow.chain("a", "b", "c")
        return flow

    run = build().run({})
    wf.Workspace().approve(run.tickets()[0], by="ana", resume=False)
    resumed = build().resume(run.run_id)  # a new Workflow object: nothing of the first handle
    assert ["a", "b", "c"] == resumed.path()
    assert [e.step for e in wf.Workspace().events(run.run_id)] == [e.step for e in resumed.events]


def test_replace_definition_keeps_the_object() -> None:
    """replace_definition takes another workflow's steps, routes, name and metadata in place."""
    flow = _two_steps()
    other = wf.Workflow("renamed", version="9")
    other.step(lambda s: {"z": 1}, name="only")
    other.metadata = {"layout": {"only": [1, 2]}}
    same = flow.replace_definition(other)
    assert same is flow
    assert ("renamed", "9", ["only"], {"layout": {"only": [1, 2]}}) == (
        flow.name,
        flow.version,
        list(flow.steps),
        flow.metadata,
    )
    assert {"z": 1} == flow.run({}, workspace=False).state


def test_a_run_missing_a_declared_input_is_refused_before_it_starts() -> None:
    """Workflow(inputs=[...]) makes those inputs required, with a message naming what is missing."""
    flow = wf.Workflow("needs-docs", inputs=["docs", "query"])
    flow.step(lambda s: None, name="s")
    with pytest.raises(ValueError, match=r"lack \['docs'\]: pass them"):
        flow.run({"query": "q"}, workspace=False)


def test_a_step_writing_an_undeclared_field_fails_naming_it() -> None:
    """writes=['a'] and a returned 'b' fail the step with the field named."""
    flow = wf.Workflow("declared-writes")
    flow.step(lambda s: {"a": 1, "b": 2}, name="s", writes=["a"])
    run = flow.run({}, workspace=False, raise_on_error=False)
    assert "failed" == run.status
    assert "step 's' wrote ['b'], which its writes=['a'] does not declare" in str(run.error)


def test_a_durable_run_records_where_its_workflow_can_be_imported_under_its_current_name(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's workflow_ref names the module attribute holding the workflow, follows it when the
    module rebinds the workflow under another name, is empty while the module holds it under no
    name (as a workflow a factory function built), and is found again once the module does."""
    import sqlite3
    import sys
    import types

    module = types.ModuleType("wfkit_ref_probe")
    exec(  # the workflow made inside the module, as an import would make it
        "import wfkit as wf\nflow = wf.Workflow('probe')\nflow.step(lambda s: {'x': 1}, name='one')\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, "wfkit_ref_probe", module)
    first = module.flow.run({}, workspace=tmp_path)
    module.renamed = module.flow
    del module.flow
    second = module.renamed.run({}, workspace=tmp_path)
    held = module.renamed
    del module.renamed
    third = held.run({}, workspace=tmp_path)
    module.again = held
    fourth = held.run({}, workspace=tmp_path)
    with sqlite3.connect(tmp_path / "wfkit.db") as conn:
        refs = dict(conn.execute("SELECT run_id, workflow_ref FROM runs").fetchall())
    assert {
        first.run_id: "wfkit_ref_probe:flow",
        second.run_id: "wfkit_ref_probe:renamed",
        third.run_id: None,
        fourth.run_id: "wfkit_ref_probe:again",
    } == refs


def test_every_duration_takes_a_timedelta_as_its_seconds(tmp_path: Path) -> None:
    """A step's timeout, a run's timeout and a RetryPolicy's delays and max_elapsed take a
    `datetime.timedelta` as the seconds it spans, and a run that outlives it times out the same."""
    policy = wf.RetryPolicy(
        base_delay=dt.timedelta(milliseconds=500), max_delay=dt.timedelta(minutes=1), max_elapsed=dt.timedelta(hours=1)
    )
    assert wf.RetryPolicy(base_delay=0.5, max_delay=60, max_elapsed=3600) == policy
    flow = wf.Workflow("slow")

    @flow.step(timeout=dt.timedelta(milliseconds=50), retry=wf.RetryPolicy(max_retries=0))
    async def nap(state: Any) -> dict[str, Any]:
        await asyncio.sleep(state["nap"])
        return {"done": True}

    assert 0.05 == flow.validate().steps["nap"].timeout
    assert "succeeded" == flow.run({"nap": 0}, timeout=dt.timedelta(seconds=30), workspace=tmp_path).status
    with pytest.raises(wf.StepFailedError, match=r"step 'nap' did not finish within 0.05 s"):
        flow.run({"nap": 5}, workspace=False)
    run = flow.start({"nap": 0}, workspace=False)
    assert "succeeded" == run.wait(dt.timedelta(seconds=30)).status
    with pytest.raises(ValueError, match=r"a run's timeout must be > 0 seconds, got 0.0"):
        flow.run({"nap": 0}, timeout=dt.timedelta(0))
