"""Build-time validation: every problem reported at once, each saying how to fix it."""

from __future__ import annotations

from typing import Any

import pytest

import wfkit as wf


def noop(state: Any) -> None:
    return None


def _flow(*names: str, **opts: Any) -> wf.Workflow:
    flow = wf.Workflow("t")
    for name in names:
        flow.step(noop, name=name, **opts.get(name, {}))
    return flow


def test_valid_workflow_compiles_with_fingerprint() -> None:
    """A well-formed workflow compiles and gets a stable fingerprint."""
    flow = _flow("a", "b").chain("a", "b")
    graph = flow.validate()
    assert graph.entry == "a"
    assert graph.fingerprint == _flow("a", "b").chain("a", "b").validate().fingerprint


def test_fingerprint_changes_with_definition() -> None:
    """Changing a route or an option changes the fingerprint."""
    a = _flow("a", "b").chain("a", "b").validate().fingerprint
    b = _flow("a", "b", b={"timeout": 3}).chain("a", "b").validate().fingerprint
    assert a != b


def test_empty_workflow_is_rejected() -> None:
    """A workflow with no steps says to add one."""
    with pytest.raises(wf.WorkflowDefinitionError, match=r"no steps: add one with @flow\.step"):
        wf.Workflow("empty").validate()


def test_definition_error_is_a_value_error_listing_all_problems() -> None:
    """Unknown target, unreachable step and unbounded loop are all reported together."""
    flow = _flow("a", "b", "c", "orphan")
    flow.edge("a", "b", "typo_step")
    flow.route("b", default=wf.go("c"))
    flow.route("c", wf.when("x", "eq", 1) >> wf.go("b"), default=wf.go(wf.END))
    with pytest.raises(ValueError) as info:
        flow.validate()
    err = info.value
    assert isinstance(err, wf.WorkflowDefinitionError)
    text = str(err)
    assert len(err.problems) == 3, text
    assert "edge 'a' -> 'typo_step': no step named 'typo_step'" in text
    assert "'orphan' is unreachable from the entry 'a'" in text
    assert "loop b -> c -> b has no visit bound: set max_visits" in text


def test_unknown_target_suggests_close_name() -> None:
    """A misspelt target gets a did-you-mean hint."""
    flow = _flow("classify", "answer").edge("classify", "anwser")
    with pytest.raises(wf.WorkflowDefinitionError, match="did you mean 'answer'"):
        flow.validate()


@pytest.mark.parametrize("misspell", ["chain", "route", "fallback"])
def test_a_misspelt_step_is_the_one_problem_not_every_step_behind_it(misspell: str) -> None:
    """A misspelt name in an edge, a route or a fallback is reported with its closest step; the
    steps it cuts off are not reported as unreachable as well (they would bury the one mistake),
    while a step that nothing names stays reported."""
    flow = _flow("fetch", "summarize", "review", "publish", "orphan", fetch={"fallback": "review"})
    flow.chain("summarize", "review", "publish")
    if misspell == "chain":
        flow.chain("fetch", "sumarize")
    elif misspell == "route":
        flow.route("fetch", wf.when("text", "exists") >> wf.go("sumarize"), default=wf.go(wf.END))
    else:
        flow = _flow("fetch", "summarize", "review", "publish", "orphan", fetch={"fallback": "sumarize"})
        flow.chain("summarize", "review", "publish").route("fetch", default=wf.go(wf.END))
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    first, *rest = info.value.problems
    assert "no step named 'sumarize' (did you mean 'summarize'?)" in first or first.startswith(
        "step 'fetch' falls back to 'sumarize', which is not a step (did you mean 'summarize'?)"
    ), first
    assert ["step 'orphan' is unreachable from the entry 'fetch'"] == [p.split(":")[0] for p in rest]


def test_unknown_route_target_and_fallback() -> None:
    """Routes and fallbacks to missing steps are reported."""
    flow = _flow("a", "b", a={"fallback": "rescue"})
    flow.route("a", wf.when("k", "eq", 1) >> wf.go("nowhere"), default=wf.go("b"))
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    text = str(info.value)
    assert "route from 'a' -> 'nowhere': no step named 'nowhere'" in text
    assert "falls back to 'rescue', which is not a step" in text


def test_edges_from_unknown_step() -> None:
    """An edge or route whose source is not a step is reported."""
    flow = _flow("a").edge("ghost", "a")
    flow.route("phantom", default=wf.go("a"))
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    assert "edge from unknown step 'ghost'" in str(info.value)
    assert "routes from unknown step 'phantom'" in str(info.value)


def test_missing_entry() -> None:
    """An entry that names no step is reported with the known steps."""
    flow = _flow("a").set_entry("start")
    with pytest.raises(wf.WorkflowDefinitionError, match="entry 'start' is not a step; known steps: a"):
        flow.validate()


def test_bounded_loop_is_accepted() -> None:
    """A loop with max_visits on one of its steps is fine."""
    flow = _flow("a", "b", a={"max_visits": 3})
    flow.edge("a", "b")
    flow.route("b", wf.when("again", "eq", True) >> wf.go("a"), default=wf.go(wf.END))
    flow.validate()


def test_a_loop_with_no_way_out_is_refused_saying_how_to_let_it_end() -> None:
    """A loop every step of which leads only back into it (``a -> b -> a`` as plain edges) was
    refused for its missing bound; bounded as told, it was accepted and every run failed at
    the bound with "raise the bound", which could never help. Bounded, it is now refused saying how
    to let a step leave it; a route out, an end or a fallback outside makes it valid."""
    flow = _flow("a", "b")
    flow.edge("a", "b").edge("b", "a")
    with pytest.raises(wf.WorkflowDefinitionError, match="loop a -> b -> a has no visit bound: set max_visits"):
        flow.validate()  # first told to bound it, as before
    flow = _flow("a", "b", a={"max_visits": 3})
    flow.edge("a", "b").edge("b", "a")
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    assert [
        "loop a -> b -> a has no way out: each of its steps leads only back into it, so every run that "
        "enters it fails at a visit bound; let a step leave it, e.g. in place of the edge 'b' -> 'a', "
        "flow.route('b', wfkit.when('done', 'eq', False) >> wfkit.go('a'), default=wfkit.go(wfkit.END)), "
        "or give one of its steps a fallback= outside it"
    ] == info.value.problems
    assert [{"kind": "loop_closed", "loop": ["a", "b", "a"]}] == info.value.facts
    routed = _flow("a", a={"max_visits": 3})
    routed.route("a", wf.when("x", "eq", 1) >> wf.go("a"), default=wf.go("a"))
    with pytest.raises(wf.WorkflowDefinitionError, match=r"loop a -> a has no way out: .* e\.g\. flow\.route\(.a., "):
        routed.validate()
    leaves = _flow("a", "b", "after", a={"max_visits": 3})
    leaves.edge("a", "b").route("b", wf.when("done", "eq", True) >> wf.go("after"), default=wf.go("a"))
    leaves.validate()
    falls_back = _flow("a", "b", "rescue", a={"max_visits": 3, "fallback": "rescue"})
    falls_back.chain("a", "b").edge("b", "a")
    falls_back.validate()
    # A step with no edge or route of its own ends its branch when it succeeds: a loop it is in
    # only through its fallback (retry by way of a repair step) has that way out.
    repaired = _flow("a", "repair", a={"max_visits": 3, "fallback": "repair"})
    repaired.edge("repair", "a")
    repaired.validate()


def test_a_step_renamed_in_a_notebook_cell_is_reported_with_the_cell_to_run_again() -> None:
    """In a notebook, renaming ``plan`` to ``planner`` in a cell that adds steps to a workflow made
    in an earlier cell left ``plan`` behind, still the entry: "step 'planner' is unreachable from the
    entry 'plan': connect it ..., or remove it", and nothing removes a step. When the steps come from
    notebook cells, the problem says what does: running the Workflow's cell again."""
    cell = (
        "def plan(state):\n    return {'a': 1}\n"
        "def planner(state):\n    return {'a': 1}\n"
        "def write(state):\n    return {'b': 1}\n"
    )
    found: dict[str, Any] = {}
    exec(compile(cell, "ipykernel_4242/2417630318.py", "exec"), found)  # as ipykernel names a cell, in its temp folder
    flow = wf.Workflow("renamed")
    flow.step(found["plan"])
    flow.step(found["write"])
    flow.chain("plan", "write")
    flow.step(found["planner"])  # the cell, run again after the rename
    flow.step(found["write"])
    flow.chain("planner", "write")
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    assert [
        "step 'planner' is unreachable from the entry 'plan': connect it with flow.edge(...) or a route, or "
        "remove it; in a notebook, a step renamed or deleted in a cell stays in the workflow until the cell "
        "that makes the Workflow (wf.Workflow(...)) runs again"
    ] == info.value.problems
    script = _flow("a", "b")  # steps from a file: no notebook advice
    with pytest.raises(wf.WorkflowDefinitionError, match=r"or remove it$"):
        script.validate()


def test_self_loop_without_bound() -> None:
    """A step routing back to itself needs a bound."""
    flow = _flow("a")
    flow.route("a", wf.when("again", "eq", True) >> wf.go("a"), default=wf.go(wf.END))
    with pytest.raises(wf.WorkflowDefinitionError, match="loop a -> a has no visit bound"):
        flow.validate()


def test_an_unbounded_loop_is_named_by_a_path_it_takes() -> None:
    """A loop through a branch (a -> b or c -> d -> a) is named by steps that follow one another
    (a -> b -> d -> a); it was named by its steps in name order, "a -> b -> c -> d -> a", a path
    with edges the graph does not have (b -> c, c -> d)."""
    flow = _flow("a", "b", "c", "d")
    flow.route("a", wf.when("x", "eq", 1) >> wf.go("b"), default=wf.go("c"))
    flow.edge("b", "d").edge("c", "d")
    flow.route("d", wf.when("again", "eq", True) >> wf.go("a"), default=wf.go(wf.END))
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    assert [
        "loop a -> b -> d -> a has no visit bound: set max_visits on one of its steps, e.g. "
        "@flow.step(max_visits=5), so it cannot spin forever"
    ] == info.value.problems


def test_join_that_can_never_fire() -> None:
    """A join waiting on a step that only runs after the join itself is rejected."""
    flow = _flow("start", "join", "later", join={"max_visits": 2})
    flow.edge("start", "join")
    flow.edge("join", "later")
    flow.edge("later", "join")
    with pytest.raises(
        wf.WorkflowDefinitionError, match="join 'join' waits for 'later', but 'later' only runs after 'join'"
    ):
        flow.validate()


def test_step_with_edges_and_routes() -> None:
    """A step cannot both fan out along edges and choose a route."""
    flow = _flow("a", "b", "c").edge("a", "b")
    flow.route("a", default=wf.go("c"))
    with pytest.raises(wf.WorkflowDefinitionError, match="has both edges and routes"):
        flow.validate()


def test_validation_runs_before_first_run() -> None:
    """Running an invalid workflow raises the definition error and runs nothing."""
    ran = []
    flow = wf.Workflow("t")

    @flow.step
    def a(state: Any) -> None:
        ran.append("a")

    flow.edge("a", "missing")
    with pytest.raises(wf.WorkflowDefinitionError):
        flow.run({})
    assert ran == []


def test_each_problem_says_where_it_is() -> None:
    """Every problem carries its location in the definition (spec keys), in the same order."""
    flow = _flow("a", "b", "c", "orphan")
    flow.edge("a", "b", "typo_step")
    flow.route("b", wf.when("x", "eq", 1) >> wf.go("nowhere"), default=wf.go("c"))
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    located = dict(zip(info.value.locations, info.value.problems, strict=True))
    assert [("edges", "a", 1), ("routes", "b", "routes", 0, "go"), ("steps", "orphan")] == sorted(located)
    assert located[("routes", "b", "routes", 0, "go")].startswith("route from 'b' -> 'nowhere'")


# ---- maps, caches, declared writes ----------------------------------------------------------------


def _problems(flow: wf.Workflow) -> list[str]:
    with pytest.raises(wf.WorkflowDefinitionError) as info:
        flow.validate()
    return info.value.problems


def test_a_map_over_a_field_nobody_writes_is_reported_with_both_fixes() -> None:
    """Nothing declares `docs`: the problem names the map, the field, writes= and inputs=."""
    flow = wf.Workflow("map-nowhere")
    flow.step(lambda s: {"docs": [1]}, name="load")
    flow.map(lambda d: d, over="docs", into="out", name="each")
    flow.edge("load", "each")
    assert [
        "map step 'each' maps over 'docs', but no step declares it writes it: declare the step that produces "
        "the list with @flow.step(writes=['docs']), or the run input with Workflow(..., inputs=['docs'])"
    ] == _problems(flow)


def test_a_map_field_declared_by_writes_inputs_or_another_map_is_fine() -> None:
    """writes=, inputs= and another map's into= each count as a producer."""
    by_writes = wf.Workflow("map-writes")
    by_writes.step(lambda s: {"docs": [1]}, name="load", writes=["docs"])
    by_writes.map(lambda d: d, over="docs", into="out", name="each")
    by_writes.edge("load", "each")
    by_inputs = wf.Workflow("map-inputs", inputs=["docs"])
    by_inputs.map(lambda d: d, over="docs", into="out", name="each")
    chained = wf.Workflow("map-chain", inputs=["docs"])
    chained.map(lambda d: d, over="docs", into="mid", name="first")
    chained.map(lambda d: d, over="mid", into="out", name="second")
    chained.edge("first", "second")
    for flow in (by_writes, by_inputs, chained):
        assert flow.validate().entry


def test_a_cache_on_an_irreversible_or_gated_step_is_reported() -> None:
    """Both steps are reported together, each saying why a cache cannot stand in for it."""
    flow = wf.Workflow("cache-gated")
    flow.step(lambda s: None, name="pay", irreversible=True, cache=True)
    flow.step(lambda s: None, name="ship", approval="check", cache=True)
    flow.chain("pay", "ship")
    assert [
        "step 'pay' is irreversible and has cache=: a cached result would skip the side effect (or the "
        "human's decision) the step exists for; drop cache= on it",
        "step 'ship' is gated by an approval and has cache=: a cached result would skip the side effect (or "
        "the human's decision) the step exists for; drop cache= on it",
    ] == _problems(flow)


def test_map_options_appear_in_the_description_only_when_set() -> None:
    """A map step describes its map; a plain step's description has no map key (fingerprints stay)."""
    flow = wf.Workflow("map-described", inputs=["docs"])
    flow.map(lambda d: d, over="docs", into="out", name="each", max_concurrency=4)
    flow.step(lambda s: None, name="plain")
    flow.edge("each", "plain")
    steps = {s["name"]: s for s in flow.validate().description["steps"]}
    assert {"over": "docs", "into": "out", "max_concurrency": 4} == steps["each"]["map"]
    assert "map" not in steps["plain"]
    assert ["docs"] == flow.validate().description["inputs"]


def test_onward_plan_says_what_follows_each_step() -> None:
    """The compiled graph's Onward plan names each step's lone link, its fan-out, its joins and its router."""
    flow = _flow("a", "b", "c", "d", "e", a={"max_visits": 3})
    flow.chain("a", "b")
    flow.edge("b", "c", "d")
    flow.edge("c", "e")
    flow.edge("d", "e")
    flow.route("e", wf.when("x", "eq", 1) >> wf.go("a"), default=wf.go(wf.END))
    graph = flow.validate()
    onward = graph.onward
    assert (graph.steps["b"], (graph.steps["b"],), ()) == (onward["a"].lone, onward["a"].starts, onward["a"].joins)
    assert (None, (graph.steps["c"], graph.steps["d"])) == (onward["b"].lone, onward["b"].starts)
    assert ((), ("e",), None) == (onward["c"].starts, onward["c"].joins, onward["c"].lone)
    assert (graph.routers["e"], (), None) == (onward["e"].router, onward["e"].starts, onward["e"].lone)
    assert (False, False) == (graph.caches, graph.subflows)


def test_graph_knows_whether_a_step_caches() -> None:
    """A graph with a cached step says so, once, for every run to read."""
    flow = _flow("a", "b", b={"cache": True})
    flow.chain("a", "b")
    assert (True, False) == (flow.validate().caches, flow.validate().subflows)
