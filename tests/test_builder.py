"""The builder's kernel side: the palette, the problems shown on the graph, Save and new steps."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
import wfkit.examples as ex
from wfkit.model._spec import read
from wfkit.notebook import _builder
from wfkit.notebook._builder import Session, empty_spec, namespace_of, palette, problems_of, stub_source, tool_list

BUNDLE = Path(wf.__file__).parent / "notebook" / "static" / "builder.js"


def local_step(state: Any, ctx: Any) -> dict[str, Any]:
    """A step defined next to the test."""
    return {}


def _helper(state: Any) -> None:
    return None


def not_a_step(a: Any, b: Any, c: Any) -> None:
    return None


def helper(text: str) -> str:
    return text


def test_palette_offers_step_functions_with_their_spec_reference() -> None:
    """Functions taking (state) or (state, ctx) are offered with the reference a spec writes;
    private names, other signatures, helpers whose first parameter is not state and non-functions
    are left out."""
    items = palette(
        {
            "local_step": local_step,
            "_helper": _helper,
            "not_a_step": not_a_step,
            "helper": helper,
            "x": 3,
            "classify": ex.classify,
        }
    )
    assert [
        {
            "name": "classify",
            "ref": "wfkit.examples:classify",
            "doc": "Decide the query type from keywords (code, data, factual or unknown).",
            "is_async": False,
        },
        {
            "name": "local_step",
            "ref": "test_builder:local_step",
            "doc": "A step defined next to the test.",
            "is_async": False,
        },
    ] == items


def test_palette_uses_bare_names_for_notebook_functions() -> None:
    """A function defined in a notebook (module __main__) is offered under its bare name."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("async def fetch(state, ctx):\n    return {}\n", namespace)
    assert [{"name": "fetch", "ref": "fetch", "doc": "", "is_async": True}] == palette(namespace)


def test_problems_of_an_empty_canvas_say_what_to_do() -> None:
    """An empty flow asks for a step from the palette."""
    expected = [{"path": ["steps"], "message": "the flow has no steps yet: add one from the palette"}]
    assert expected == problems_of(empty_spec("draft"), {})


def test_problems_carry_the_location_the_graph_marks() -> None:
    """A route to a deleted step is reported at that route's target, as the kernel's code check says."""
    spec = ex.rag_router().to_spec()
    del spec["steps"]["data_query"]
    del spec["edges"]["data_query"]
    found = problems_of(spec, {})
    assert [["routes", "classify", "routes", 1, "go"]] == [p["path"] for p in found]
    assert found[0]["message"].startswith("the route classify → data_query leads to 'data_query', which is not a step")
    assert [] == problems_of(ex.rag_router().to_spec(), {})


def _broken(change: Any) -> dict[str, Any]:
    """The router example's spec, changed by ``change(spec)`` as a builder user might have."""
    spec = ex.rag_router().to_spec()
    change(spec)
    return spec


# What a builder user can do to the router, and what the builder then says: the steps, connections,
# boxes and buttons they see (the kernel's messages said `flow.edge(...)`, `@flow.step(max_visits=5)`,
# `wfkit.END`, `steps=` and JSON paths such as `$.steps.classify.retry.max_retries`).
BUILDER_WORDS = {
    "a step connected to nothing": (
        lambda s: s["steps"].update(extra={"fn": "wfkit.examples:web_search"}),
        "step 'extra' is never reached from the entry step 'classify': drag from the dot under a step to "
        "'extra' to connect them, or delete 'extra'",
    ),
    "a loop without a bound": (
        lambda s: s["edges"].update(generate_answer=["classify"]),
        "the loop classify → code_search → generate_answer → classify has no visit bound, so a run could go "
        "round it forever: click one of its steps and set its 'Visit bound'",
    ),
    "a bounded loop with no way out": (
        lambda s: (s["edges"].update(generate_answer=["web_search"]), s["steps"]["web_search"].update(max_visits=3)),
        "the loop generate_answer → web_search → generate_answer has no way out, so every run that enters it goes "
        "round until its visit bound and fails: drag from the dot under one of its steps to a step outside it (or "
        "set a route of it to end), or set one step's 'On failure go to' a step outside it",
    ),
    "a route to a deleted step": (
        lambda s: (s["steps"].pop("data_query"), s["edges"].pop("data_query")),
        "the route classify → data_query leads to 'data_query', which is not a step: click it and choose "
        "another step (or end) in 'Goes to'",
    ),
    "a connection to a deleted step": (
        lambda s: s["edges"]["web_search"].append("summarise"),
        "the connection web_search → summarise leads to 'summarise', which is not a step: click it and choose "
        "another step in 'Goes to', or delete it",
    ),
    "the entry step deleted": (
        lambda s: (s["steps"].pop("classify"), s["routes"].pop("classify")),
        "the entry step 'classify' is not a step any more: click the step a run starts with and tick 'entry step'",
    ),
    "a plain connection beside routes": (
        lambda s: s["edges"].update(classify=["web_search"]),
        "step 'classify' has plain connections and routes: a step follows all its plain connections at once, or "
        "takes one route; click each plain connection out of 'classify' and set its Kind to a route",
    ),
    "a function not on offer": (
        lambda s: s["steps"]["classify"].update(fn="classify_v2"),
        "step 'classify' runs 'classify_v2', which is not among the step functions on offer: click 'classify' and "
        "choose another Function, or Write stub",
    ),
    "a fraction in Retries": (
        lambda s: s["steps"]["classify"].update(retry={"max_retries": 1.5}),
        "Retries of step 'classify' is 1.5: type a whole number",
    ),
    "a visit bound of 0": (
        lambda s: s["steps"]["classify"].update(max_visits=0),
        "Visit bound of step 'classify' is 0: type 1 or more",
    ),
    "a timeout of 0": (
        lambda s: s["steps"]["classify"].update(timeout=0),
        "Timeout per attempt (s) of step 'classify' is 0: type a number above 0",
    ),
    "a blank condition field": (
        lambda s: s["routes"]["classify"]["routes"][0]["when"].update(field=""),
        "the condition of the route classify → code_search tests no field: type the state field it tests in "
        "its field box",
    ),
    "an approval's reason cleared": (
        lambda s: s["steps"]["data_query"].update(approval={"reason": ""}),
        "the approval's Reason of step 'data_query' is empty: type why a human must say yes (the reviewer reads it)",
    ),
    "payload fields written with a colon": (
        lambda s: s["steps"]["data_query"].update(approval={"reason": "costly", "payload": "customer: name"}),
        "the approval's Payload fields of step 'data_query' are 'customer: name': type the state fields the "
        "reviewer sees, separated by commas (customer, name)",
    ),
    "a gate bound written with letters": (
        lambda s: s["steps"]["data_query"].update(
            approval={"reason": "costly", "when": {"field": "rows", "op": "gt", "value": "10k"}}
        ),
        "the gate condition of step 'data_query' tests 'rows' with 'gt', and its value box holds the text '10k', "
        "which orders as text, not as a number: type the number it stands for in digits alone, without 'k'",
    ),
    "routes without a default": (
        lambda s: s["routes"]["classify"].pop("default"),
        "the routes out of 'classify' have no default route, so a run where no condition holds would have "
        "nowhere to go: click one of its connections and set its Kind to 'otherwise (default route)'",
    ),
}


@pytest.mark.parametrize("case", list(BUILDER_WORDS))
def test_problems_are_worded_for_the_builder(case: str) -> None:
    """Each problem a builder user can cause is said in the builder's words, with no code in it;
    the Python API keeps its own message (a fix in code) for the same spec."""
    change, expected = BUILDER_WORDS[case]
    spec = _broken(change)
    assert [expected] == [p["message"] for p in problems_of(spec, namespace_of(ex, {}))]
    with pytest.raises(wf.WorkflowDefinitionError) as raised:
        wf.Workflow.from_spec(spec)
    assert expected not in str(raised.value)


def test_the_python_api_gives_a_specs_fixes_in_its_keys() -> None:
    """A step connected to nothing, in a spec loaded in code, gets the fix in the spec's keys (the
    spec is what is fixed), not the builder's words nor `flow.edge(...)`."""
    spec = _broken(BUILDER_WORDS["a step connected to nothing"][0])
    with pytest.raises(wf.WorkflowDefinitionError, match=r"connect it under edges: \(e\.g\. classify: \[extra\]\)"):
        wf.Workflow.from_spec(spec)


def test_save_writes_the_spec_and_builds_the_workflow(tmp_path: Path) -> None:
    """Save writes the normalised spec (layout kept) and gives a Workflow with the code's fingerprint."""
    saved: list[wf.Workflow] = []
    session = Session(path=tmp_path / "router.yaml", namespace={}, registry=ex.reliable_tools(), on_save=[saved.append])
    spec = ex.rag_router().to_spec() | {"metadata": {"layout": {"classify": [10, 20]}}}
    status, found = session.save(spec)
    assert [] == found
    assert session.flow is not None
    assert f"saved router.yaml: 5 steps, fingerprint {ex.rag_router().version}" == status
    assert [session.flow] == saved
    assert "    classify: [10, 20]\n" in (tmp_path / "router.yaml").read_text()
    run = session.flow.run({"query": "What were Q1 sales figures?"}, workspace=False)
    assert ("sql_query", "file_read") == next(e.tools for e in run.events if e.step == "data_query")


def test_retries_typed_in_the_builder_are_there_when_the_flow_is_opened_again(tmp_path: Path) -> None:
    """3 in the Retries box (the default count) is saved as `max_retries: 3` and shown again when the
    saved flow is reopened; it was saved as `retry: {}`, and the reopened box was blank."""
    spec = ex.rag_router().to_spec()
    spec["steps"]["web_search"]["retry"] = {"max_retries": 3}
    spec["steps"]["data_query"]["retry"] = {"base_delay": 0.5}
    Session(path=tmp_path / "router.yaml", namespace={}).save(spec)
    assert "    retry: {max_retries: 3}\n" in (tmp_path / "router.yaml").read_text()
    path = tmp_path / "router.yaml"
    reopened = Session(path=path, namespace={}, flow=wf.Workflow.from_spec(path))
    steps = reopened.initial_spec()["steps"]
    assert ({"max_retries": 3}, {"max_retries": 3, "base_delay": 0.5}) == (
        steps["web_search"]["retry"],
        steps["data_query"]["retry"],
    )


def test_save_refuses_a_flow_with_problems(tmp_path: Path) -> None:
    """Nothing is written while the kernel finds problems; the status says how many."""
    session = Session(path=tmp_path / "router.yaml", namespace={})
    spec = ex.rag_router().to_spec()
    spec["routes"]["classify"]["default"]["go"] = "nowhere"
    status, found = session.save(spec)
    assert ("not saved: 1 problem to fix first", 1) == (status, len(found))
    assert not (tmp_path / "router.yaml").exists()


def test_save_refuses_a_comparison_whose_value_box_was_left_empty(tmp_path: Path) -> None:
    """A route condition `quality lt ""` (the value box left empty) is not saved: the problem points
    at that value, for the editor to mark the box, and says to give one."""
    flow = ex.query_router()
    session = Session(path=tmp_path / "router.yaml", namespace={s.fn.__name__: s.fn for s in flow.steps.values()})
    spec = flow.to_spec()
    spec["routes"]["review"]["routes"][0]["when"]["all"][0]["value"] = ""
    status, found = session.save(spec)
    assert "not saved: 1 problem to fix first" == status
    assert [
        {
            "path": ["routes", "review", "routes", 0, "when", "all", 0, "value"],
            "message": "the condition of the route review → generate_answer tests 'quality' with 'lt', and its "
            "value box is empty: type a value to compare with, such as 3",
        }
    ] == found
    assert not (tmp_path / "router.yaml").exists()


def test_save_never_silently_writes_over_a_change_made_to_the_file_outside_the_builder(tmp_path: Path) -> None:
    """The programmer edits the spec file while the builder is open (a timeout, with a comment):
    the builder's Save wrote over it without a word. The first Save now writes nothing and says so,
    a second Save writes what the builder shows; after that, Saves go through again."""
    path = tmp_path / "router.yaml"
    ex.rag_router().save(path)
    session = Session(path=path, namespace=namespace_of(ex, {}), source=path)
    spec = session.initial_spec()
    spec["steps"]["classify"]["timeout"] = 5
    assert session.save(spec)[0].startswith("saved router.yaml")
    theirs = path.read_text().replace(
        "    fn: wfkit.examples:generate_answer\n",
        "    fn: wfkit.examples:generate_answer\n    timeout: 99  # the programmer's\n",
    )
    path.write_text(theirs)
    spec["steps"]["classify"]["timeout"] = 6
    status, problems = session.save(spec)
    assert [] == problems
    assert status.startswith(
        "not saved: router.yaml was changed outside the builder after it was opened here (someone edited the file). "
        "Save again to replace their changes with what you see here"
    )
    assert theirs == path.read_text()
    assert session.save(spec)[0].startswith("saved router.yaml")
    saved = read(path)
    assert 6 == saved["steps"]["classify"]["timeout"]
    assert "timeout" not in saved["steps"]["generate_answer"]
    spec["steps"]["classify"]["timeout"] = 7
    assert session.save(spec)[0].startswith("saved router.yaml")


def test_save_updates_the_edited_workflow_in_place(tmp_path: Path) -> None:
    """Editing a Workflow object: Save changes that very object, so every name bound to it sees it."""
    flow = ex.rag_router()
    session = Session(path=tmp_path / "r.json", namespace={}, flow=flow)
    spec = session.initial_spec()
    spec["steps"]["classify"]["timeout"] = 5
    session.save(spec)
    assert session.flow is flow
    assert 5 == flow.steps["classify"].timeout
    assert 5 == json.loads((tmp_path / "r.json").read_text())["steps"]["classify"]["timeout"]


def test_new_step_writes_an_importable_stub(tmp_path: Path) -> None:
    """ "New step" appends a stub to <spec>_steps.py, imports it and offers it by import path."""
    session = Session(path=tmp_path / "my-flow.yaml", namespace={})
    made = session.new_step("rerank", is_async=True)
    assert {"name": "rerank", "ref": "my_flow_steps:rerank", "file": "my_flow_steps.py"} == made
    assert stub_source("rerank", takes_context=True, is_async=True) == (tmp_path / "my_flow_steps.py").read_text()
    second = session.new_step("summarise", takes_context=False)
    assert "my_flow_steps:summarise" == second["ref"]
    assert {} == session.namespace["summarise"]({})
    assert ["rerank", "summarise"] == [item["name"] for item in palette(session.namespace)]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("2fast", "cannot be a function name"),
        ("class", "'class' is a word Python keeps for itself and cannot name a function: choose another name"),
        ("classify", "exists already"),
    ],
)
def test_new_step_refuses_names_that_cannot_be_functions(tmp_path: Path, name: str, message: str) -> None:
    """A name that is not an identifier, a keyword, or one already taken is refused with why."""
    session = Session(path=tmp_path / "f.yaml", namespace={"classify": ex.classify})
    with pytest.raises(ValueError, match=message):
        session.new_step(name)


def test_new_step_never_writes_a_second_function_over_one_the_stub_file_has(tmp_path: Path) -> None:
    """ "Write stub" for a name the stub file defines already (written in an earlier session, then
    filled in) writes nothing: a second stub after it replaced the filled-in function on import, and
    the run got ``{}``. The function written before is offered in the palette instead."""
    stub = tmp_path / "triage_again_steps.py"
    filled = "def escalate(state, ctx):\n    return {'escalated': True}\n"
    stub.write_text(filled)
    session = Session(path=tmp_path / "triage-again.yaml", namespace={})
    with pytest.raises(ValueError, match=r"escalate\(\) is in triage_again_steps.py already, nothing was written"):
        session.new_step("escalate")
    assert filled == stub.read_text()
    assert {"escalated": True} == session.namespace["escalate"]({}, None)
    assert ["triage_again_steps:escalate"] == [item["ref"] for item in palette(session.namespace)]


def test_initial_spec_from_a_file_keeps_it_as_written(tmp_path: Path) -> None:
    """A spec file with problems opens as it is, so the builder can show and fix them."""
    path = tmp_path / "broken.yaml"
    path.write_text("wfkit_flow: 1\nname: broken\nentry: a\nsteps:\n  a: {fn: missing_fn}\n")
    session = Session(path=path, namespace={}, source=path)
    assert {
        "wfkit_flow": 1,
        "name": "broken",
        "entry": "a",
        "steps": {"a": {"fn": "missing_fn"}},
    } == session.initial_spec()
    assert {"wfkit_flow": 1, "name": "new", "entry": None, "steps": {}} == Session(
        path=tmp_path / "new.yaml", namespace={}
    ).initial_spec()


def test_namespace_of_each_kind_of_steps_argument() -> None:
    """A module gives its own functions, a mapping is taken as is, a list by names, None the caller's."""
    from_module = namespace_of(ex, {})
    assert {"classify", "code_search", "rag_router"} <= set(from_module)
    assert "Any" not in from_module  # imported names are not the module's own
    assert {"f": len} == namespace_of({"f": len}, {})
    assert {"classify": ex.classify} == namespace_of([ex.classify], {})
    assert {"x": 1} == namespace_of(None, {"x": 1})
    with pytest.raises(TypeError, match="steps= takes a module, a mapping"):
        namespace_of(42, {})


def test_tool_list_names_and_describes_each_tool() -> None:
    """The route form lists the registry's tools with their descriptions; no registry, no tools."""
    tools = tool_list(ex.reliable_tools())
    assert ["web_search", "code_interpreter", "sql_query", "file_read"] == [t["name"] for t in tools]
    assert tools[0]["description"].startswith("Search the web")
    assert [] == tool_list(None)


def test_operators_offered_are_the_condition_operators() -> None:
    """The operator list in the edge form is exactly the conditions' fixed list."""
    assert ["eq", "ne", "gt", "ge", "lt", "le", "contains", "in", "exists"] == _builder.OPERATOR_LIST


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_bundled_front_end_labels_exists_as_the_kernel_prints_it() -> None:
    """A route label of `exists` with value false reads "missing", as the kernel prints the condition
    (the builder labelled it "exists", the opposite of what the route tests)."""
    conditions = [{"field": "x", "op": "exists", "value": v} for v in (None, True, False)]
    script = f"""
        import {{conditionText}} from {json.dumps(BUNDLE.as_uri())};
        console.log(JSON.stringify({json.dumps(conditions)}.map(conditionText)));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    assert [str(wf.when("x", "exists", c["value"])) for c in conditions] == json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_bundled_front_end_finds_the_kernels_problem_at_a_condition_value() -> None:
    """The shipped bundle (run by node) finds the kernel's problem with a value box left empty at
    that value's path, so the route form marks the box; the condition's other parts have none."""
    flow = ex.query_router()
    spec = flow.to_spec()
    spec["routes"]["review"]["routes"][0]["when"]["all"][1]["value"] = ""
    problems = problems_of(spec, {s.fn.__name__: s.fn for s in flow.steps.values()})
    when = ["routes", "review", "routes", 0, "when"]
    script = f"""
        import {{problemsAt}} from {json.dumps(BUNDLE.as_uri())};
        const problems = {json.dumps(problems)};
        const at = (path) => problemsAt(problems, path);
        console.log(JSON.stringify([at({json.dumps([*when, "all", 1, "value"])}),
                                    at({json.dumps([*when, "all", 0, "value"])}), at({json.dumps(when)})]));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    assert [[problems[0]["message"]], [], []] == json.loads(out.stdout)
    assert "tests 'draft' with 'lt', and its value box is empty" in problems[0]["message"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_bundled_front_end_lists_a_blank_value_once_under_its_box() -> None:
    """The shipped bundle (run by node) leaves the kernel's problem with a value box left empty out
    of the list at the top of the route's form, as it is shown under that box (it was shown in both
    places), and keeps the route's other problems in that list; a gate condition's blank value is
    likewise left out of its step's list."""
    flow = ex.query_router()
    spec = flow.to_spec()
    route = spec["routes"]["review"]["routes"][0]
    route["when"]["all"][1]["value"] = ""
    route["go"] = "generat"
    spec["steps"]["review"]["approval"] = {"reason": "check", "when": {"field": "draft", "op": "gt", "value": ""}}
    problems = problems_of(spec, {s.fn.__name__: s.fn for s in flow.steps.values()})
    assert 3 == len(problems)
    target = next(p["message"] for p in problems if p["path"][-1] == "go")
    script = f"""
        import {{formProblems, problemTarget}} from {json.dumps(BUNDLE.as_uri())};
        const listed = formProblems({json.dumps(problems)}).map((p) => [problemTarget(p.path), p.message]);
        const route = listed.filter(([at]) => at.edge === "route:review:0").map(([, message]) => message);
        const step = listed.filter(([at]) => !at.edge && at.step === "review").map(([, message]) => message);
        console.log(JSON.stringify([route, step]));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    assert [[target], []] == json.loads(out.stdout)
    blanks = sorted(p["path"][0] for p in problems if "value box is empty" in p["message"])
    assert ["routes", "steps"] == blanks  # the route's value and the gate's: both left out above


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_bundled_front_end_keeps_a_steps_marks_inside_its_box() -> None:
    """A step box's line of marks that would run past its sides (approval, irreversible, retry and a
    timeout: 36 characters in a box that holds about 28) shows the marks that fit and "+N" for the
    rest; a short line is shown whole."""
    cases = [
        ["approval", "irreversible", "retry", "30s"],
        ["≤4 visits", "15s"],
        ["retry", 'timeout "thirty seconds"?'],
        ['timeout "thirty seconds, or forty"?'],
    ]
    script = f"""
        import {{markLine}} from {json.dumps(BUNDLE.as_uri())};
        console.log(JSON.stringify({json.dumps(cases)}.map(markLine)));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    lines = json.loads(out.stdout)
    assert ["approval · irreversible +2", "≤4 visits · 15s", "retry +1", 'timeout "thirty seconds, or…'] == lines
    assert all(len(line) <= 28 for line in lines)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_bundled_front_end_reads_specs_like_the_kernel() -> None:
    """The shipped bundle (run by node) lists a spec's edges and points problems at them."""
    script = f"""
        import m, {{conditionText, edgeList, problemTarget}} from {json.dumps(BUNDLE.as_uri())};
        const spec = {json.dumps(ex.query_router().to_spec())};
        console.log(JSON.stringify({{
          render: typeof m.render,
          edges: edgeList(spec).map((e) => e.id),
          text: conditionText(spec.routes.review.routes[0].when),
          route: problemTarget(["routes", "classify", "routes", 1, "go"]),
          step: problemTarget(["steps", "review", "max_visits"]),
          fallback: problemTarget(["steps", "web_search", "fallback"]),
        }}));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert "function" == result["render"]
    assert [
        "edge:code_search:0",
        "edge:data_query:0",
        "edge:web_search:0",
        "edge:generate_answer:0",
        "route:classify:0",
        "route:classify:1",
        "route:classify:2",
        "default:classify",
        "route:review:0",
        "default:review",
        "fallback:code_search",
        "fallback:data_query",
        "fallback:web_search",
    ] == result["edges"]
    assert "(quality lt 0.9 and draft lt 3)" == result["text"]
    assert {"edge": "route:classify:1"} == result["route"]
    assert {"step": "review"} == result["step"]
    assert {"edge": "fallback:web_search", "step": "web_search"} == result["fallback"]


def _outer_spec() -> dict[str, Any]:
    """A flow whose step `nested` runs workflow `child`, referred to by its bare name."""
    child = wf.Workflow("child", inputs=["x"])
    child.step(ex.generate_answer, name="deep")
    outer = wf.Workflow("outer")
    outer.step(ex.classify, name="start")
    outer.subflow(child, name="nested", inputs={"x": "x"}, outputs={"z": "answer"})
    outer.edge("start", "nested")
    return outer.to_spec()


def test_a_sub_workflow_not_on_offer_is_said_to_the_builder_and_to_the_call(tmp_path: Path) -> None:
    """A step running a workflow the edit call did not hand over: the builder says so in its words
    (its list said "is not among steps=; pass it (Workflow.from_spec(spec, steps=...))", which its
    user cannot do), and the note for the call's author says how to pass it."""
    spec = _outer_spec()
    [problem] = problems_of(spec, {})
    assert ["steps", "nested", "workflow", "ref"] == problem["path"]
    assert (
        "step 'nested' runs workflow 'child', which is not on offer in this builder: the note printed by the "
        "cell that opened this builder says how to offer it, or delete 'nested'"
    ) == problem["message"]
    path = tmp_path / "outer.yaml"
    path.write_text(json.dumps(spec))
    notes = Session(path=path, namespace={}, registry=ex.reliable_tools(), source=path).notes_for_the_call()
    assert (
        "step 'nested' runs workflow 'child', which is not among steps=: pass it (steps={'child': child, ...}) "
        "or write its ref in the spec as 'module:child'"
    ) in notes
    with pytest.raises(wf.WorkflowDefinitionError, match=r"workflow 'child' is not among steps=; pass it"):
        wf.Workflow.from_spec(spec)  # code keeps the fix in code
