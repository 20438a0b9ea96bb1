"""Flows as data: a workflow round-trips through its spec, files diff line by line, bad specs are
refused with every problem and its JSON path."""

from __future__ import annotations

import ast
import asyncio
import difflib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import wfkit as wf
from wfkit.evals._evals import load_suite
from wfkit.examples import query_router, rag_router
from wfkit.model import _spec

ROOT = Path(__file__).resolve().parents[1]


def _functions(flow: wf.Workflow) -> dict[str, Any]:
    """The workflow's own functions by name, as a notebook's globals() would hold them."""
    out: dict[str, Any] = {}
    for spec in flow.steps.values():
        out[spec.fn.__name__] = spec.fn
    return out


def _assert_round_trip(flow: wf.Workflow, namespace: dict[str, Any] | None = None) -> None:
    spec = flow.to_spec()
    back = wf.Workflow.from_spec(spec, steps=namespace if namespace is not None else _functions(flow))
    assert flow.validate().fingerprint == back.validate().fingerprint, flow.name
    assert spec == back.to_spec()
    assert flow.validate().description == back.validate().description


def _round_trip_notebook(notebook: Path) -> list[str]:
    """Run a notebook's code cells in this process (top-level await allowed) and, after each cell,
    round-trip every Workflow in its namespace with that namespace as steps=; the names checked."""
    cells = [
        "".join(c["source"])
        for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        if c["cell_type"] == "code"
    ]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    checked: list[str] = []

    async def run_cells() -> None:
        for source in cells:
            code = compile(source, f"<{notebook.name}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)
            if asyncio.iscoroutine(result):
                await result
            for value in list(namespace.values()):
                if isinstance(value, wf.Workflow):
                    # Steps defined in the notebook are its globals; a factory's (query_router's) are
                    # closures no name reaches, handed over as the flow's own functions.
                    _assert_round_trip(value, {**namespace, **_functions(value)})
                    checked.append(value.name)

    asyncio.run(run_cells())
    return checked


# Notebook 06 runs 150 runs against a simulated model with real latency (about 15 s); the others
# take well under 1 s each.
SLOW_NOTEBOOKS = {"06_latency_analysis"}


@pytest.mark.parametrize(
    "notebook",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_NOTEBOOKS else p
        for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
    ],
    ids=lambda p: p.stem,
)
def test_every_notebook_workflow_round_trips_with_its_fingerprint(
    notebook: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """from_spec(to_spec(flow)) has the flow's fingerprint for every workflow a notebook builds,
    after every cell (a later cell may redefine a step), with the notebook's globals as steps=.
    Run from the notebook's folder, as Jupyter and papermill run it (it may read files beside it)."""
    monkeypatch.chdir(notebook.parent)
    checked = _round_trip_notebook(notebook)
    capsys.readouterr()
    assert checked, f"{notebook.name} defines no workflow"


@pytest.mark.parametrize("kwargs", [{}, {"flaky": 0.5, "slow": 0.1}])
def test_example_router_round_trips_with_its_fingerprint(kwargs: dict[str, Any]) -> None:
    """The shipped query router round-trips to the same fingerprint, description and spec."""
    _assert_round_trip(query_router(**kwargs))


@pytest.mark.parametrize("suite_dir", sorted(p.parent for p in (ROOT / "evals").glob("*/suite.py")), ids=str)
def test_every_eval_suite_workflow_round_trips_with_its_fingerprint(suite_dir: Path) -> None:
    """Each eval suite's workflow, for every variant, round-trips to the same fingerprint."""
    suite = load_suite(suite_dir)
    for variant in suite.variants:
        flow, _ = suite.build(variant)
        _assert_round_trip(flow)


# ---- every part of a workflow -----------------------------------------------------------------


def ledger(state: Any) -> dict[str, Any]:
    return {"amount": state["amount"]}


async def refund(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
    return {"refunded": state["amount"], "key": ctx.idempotency_key}


def revise(state: Any) -> dict[str, Any]:
    return {"amount": state["amount"] // 2, "notes": "revised"}


def apologise(state: Any) -> dict[str, Any]:
    return {"notes": "sorry"}


def summary(state: Any) -> dict[str, Any]:
    return {"notes": "done"}


def reviewer_view(state: Any) -> dict[str, Any]:
    return {"amount": state["amount"]}


def always_permanent(exc: BaseException) -> wf.ErrorKind:
    return wf.ErrorKind.PERMANENT


def _everything() -> wf.Workflow:
    flow = wf.Workflow("everything", version="3", description="all parts", merge={"notes": wf.append})
    flow.step(ledger, tools=["sql_query"])
    flow.step(
        refund,
        retry=wf.RetryPolicy(max_retries=2, base_delay=0.5, max_elapsed=None, jitter=0),
        timeout=4.5,
        fallback="apologise",
        classify=always_permanent,
        approval=wf.Approval(
            "Refunds over 100 need a human",
            payload=["amount"],
            when=wf.when("amount", "gt", 100) & ~wf.when("vip", "eq", True),
            on_reject="revise",
        ),
        irreversible=True,
    )
    flow.step(revise, max_visits=3, approval=wf.Approval("check the revision", payload=reviewer_view))
    flow.step(apologise, fallback=wf.END)
    flow.step(summary)
    flow.route(
        "ledger",
        (wf.when("amount", "ge", 10) | wf.when("user.tier", "in", ["gold", "silver"])) >> wf.go("refund", tools=[]),
        wf.when("amount", "exists") >> wf.go(wf.END),
        default=wf.go("summary", tools=["web_search", "file_read"]),
    )
    flow.edge("revise", "refund")
    flow.edge("refund", "summary")
    flow.edge("apologise", "summary")
    flow.metadata = {"layout": {"ledger": [10, 20], "refund": [200, 20.5]}, "note": "kept"}
    return flow


def test_every_part_survives_the_round_trip() -> None:
    """Functions by import path, routes with and/or/not, bound tools ([] and None differ), defaults,
    fallbacks, retry, timeout, approval (payload fields or function, condition, on_reject),
    irreversible, visit bounds, merges, version, description and metadata all come back."""
    flow = _everything()
    spec = flow.to_spec()
    back = wf.Workflow.from_spec(spec)
    assert spec == back.to_spec()
    assert flow.validate().fingerprint == back.validate().fingerprint
    assert "3" == back.version
    assert "all parts" == back.description
    assert {"layout": {"ledger": [10, 20], "refund": [200, 20.5]}, "note": "kept"} == back.metadata
    assert {"notes": wf.append} == back._merge
    step = back.steps["refund"]
    assert (refund, always_permanent, True) == (step.fn, step.classifier, step.irreversible)
    assert wf.RetryPolicy(max_retries=2, base_delay=0.5, max_elapsed=None, jitter=0) == step.retry
    assert step.approval is not None
    assert (("amount",), "revise") == (tuple(step.approval.payload or ()), step.approval.on_reject)
    assert str(flow.steps["refund"].approval.when) == str(step.approval.when)  # type: ignore[union-attr]
    assert reviewer_view is back.steps["revise"].approval.payload  # type: ignore[union-attr]
    routes = back._routers["ledger"]
    assert [(), None] == [routes.routes[0].go.tools, routes.routes[1].go.tools]
    assert ("web_search", "file_read") == routes.default.tools
    assert "test_spec:ledger" == spec["steps"]["ledger"]["fn"]
    assert "wfkit:append" == spec["merge"]["notes"]


def test_loaded_spec_runs_like_the_code() -> None:
    """A workflow loaded from its spec file runs the same path with the same state as the original."""
    flow = _everything()
    inputs = {"amount": 50}
    expected = flow.run(inputs, policy="approve")
    back = wf.Workflow.from_spec(flow.to_spec()).run(inputs, policy="approve")
    assert expected.path() == back.path()
    assert {**expected.state, "key": "-"} == {**back.state, "key": "-"}  # the key names the run


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_files_round_trip_and_validate_against_the_shipped_schema(tmp_path: Path, suffix: str) -> None:
    """save() writes YAML or JSON by suffix; the file reads back to the same spec and fingerprint,
    and validates against the JSON Schema shipped in the package."""
    flow = _everything()
    path = flow.save(tmp_path / f"flow{suffix}")
    data = _spec.read(path)
    jsonschema.Draft202012Validator(_spec.schema()).validate(data)
    assert flow.to_spec() == data
    assert flow.version == wf.Workflow.from_spec(path).version
    assert flow.validate().fingerprint == wf.Workflow.from_spec(path).validate().fingerprint


def test_schema_is_shipped_and_is_a_valid_json_schema() -> None:
    """flow.schema.json is package data, a valid Draft 2020-12 schema, and names the step options
    (maps, sub-workflows, caches)."""
    schema = _spec.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {"map", "workflow", "cache"} <= set(schema["$defs"]["step"]["properties"])


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_changing_one_route_is_a_one_line_diff(fmt: _spec.Format) -> None:
    """Changing one route's tools, or one condition's value, changes exactly one line of the file."""
    before = query_router()
    after = query_router()
    after.route(
        "classify",
        wf.when("query_type", "eq", "code") >> wf.go("code_search", tools=["web_search", "code_interpreter"]),
        wf.when("query_type", "eq", "data") >> wf.go("data_query", tools=["sql_query"]),  # file_read dropped
        wf.when("query_type", "in", ["general", "factual"]) >> wf.go("web_search", tools=["web_search"]),
        default=wf.go("web_search", tools=["web_search"]),
    )
    old = _spec.dumps(before.to_spec(), fmt).splitlines()
    new = _spec.dumps(after.to_spec(), fmt).splitlines()
    changed = [line for line in difflib.unified_diff(old, new, lineterm="", n=0) if line[:1] in "+-"]
    assert 4 == len(changed), changed  # the ---/+++ header, one line out, one line in
    assert "sql_query" in changed[3]
    assert "file_read" not in changed[3]


def test_moving_a_box_changes_only_its_layout_line() -> None:
    """Positions live in metadata.layout, one line per step, after the logic."""
    flow = _everything()
    old = _spec.dumps(flow.to_spec()).splitlines()
    flow.metadata["layout"]["refund"] = [300, 40]
    new = _spec.dumps(flow.to_spec()).splitlines()
    changed = [line for line in difflib.unified_diff(old, new, lineterm="", n=0) if line[:1] in "+-"][2:]
    assert ["-    refund: [200, 20.5]", "+    refund: [300, 40]"] == changed


def test_key_order_is_stable_across_saves(tmp_path: Path) -> None:
    """Saving, loading and saving again writes byte-identical files."""
    first = _everything().save(tmp_path / "a.yaml").read_text()
    second = wf.Workflow.from_spec(tmp_path / "a.yaml").save(tmp_path / "b.yaml").read_text()
    assert first == second


COMMENTED = {
    "entry: classify\n": "entry: classify  # every query is classified first\n",
    "routes:\n  classify:\n": "routes:\n  # billing asked for file_read on the data route (OPS-12)\n  classify:\n",
    "go: data_query, tools: [sql_query, file_read]}\n": (
        "go: data_query, tools: [sql_query, file_read]}  # \"#\" in a comment, and 'quotes'\n"
    ),
    "  web_search:\n    fn:": "  # the fallback of every search\n  web_search:\n    fn:",
}


def test_saving_over_a_spec_keeps_its_comments(tmp_path: Path) -> None:
    """A comment written in a YAML spec (on a line of its own, or after a key) is still there, at
    the same key, after the flow is loaded, changed and saved over it (as the builder's Save does);
    the diff is the line changed. Saving dropped every comment, and a reviewer's note with them."""
    path = rag_router().save(tmp_path / "router.yaml")
    text = path.read_text()
    for plain, commented in COMMENTED.items():
        assert 1 == text.count(plain), plain
        text = text.replace(plain, commented)
    path.write_text(text)

    spec = wf.Workflow.from_spec(path).to_spec()
    spec["routes"]["classify"]["routes"][1]["tools"] = ["sql_query"]
    spec["metadata"] = {"layout": {"classify": [10, 20]}}
    wf.Workflow.from_spec(spec).save(path)
    saved = path.read_text()
    changed = list(difflib.unified_diff(text.splitlines(), saved.splitlines(), lineterm="", n=0))
    assert [
        "-    - {when: {field: query_type, op: eq, value: data}, go: data_query, tools: [sql_query, file_read]}"
        "  # \"#\" in a comment, and 'quotes'",
        "+    - {when: {field: query_type, op: eq, value: data}, go: data_query, tools: [sql_query]}"
        "  # \"#\" in a comment, and 'quotes'",
        "+metadata:",
        "+  layout:",
        "+    classify: [10, 20]",
    ] == [line for line in changed if line[:1] in "+-"][2:]
    assert spec == wf.Workflow.from_spec(path).to_spec()
    again = wf.Workflow.from_spec(path).save(path).read_text()
    assert saved == again  # stable: a second save changes nothing


def test_a_comment_on_a_deleted_step_goes_with_it(tmp_path: Path) -> None:
    """The comment above a step that is deleted is not left behind on another key."""
    flow = rag_router()
    path = flow.save(tmp_path / "router.yaml")
    path.write_text(path.read_text().replace("  code_search:\n", "  # searches code\n  code_search:\n"))
    spec = flow.to_spec()
    spec["steps"]["code_search"]["fn"] = "wfkit.examples:web_search"
    spec["steps"]["web_search"]["timeout"] = 5
    wf.Workflow.from_spec(spec).save(path)
    assert "  # searches code\n  code_search:\n" in path.read_text()
    del spec["steps"]["code_search"]
    spec["edges"].pop("code_search")
    spec["routes"]["classify"]["routes"].pop(0)
    wf.Workflow.from_spec(spec).save(path)
    assert "#" not in path.read_text()


# ---- problems ----------------------------------------------------------------------------------


def _problems(spec: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(spec, **kwargs)
    assert isinstance(info.value, wf.WorkflowDefinitionError)
    assert isinstance(info.value, ValueError)
    return info.value.problems


def _router_spec() -> dict[str, Any]:
    return query_router().to_spec()


def test_every_problem_is_reported_at_once_with_its_json_path() -> None:
    """A bad operator, an unknown key, a missing function and an unknown route target are all
    reported together, each prefixed by its JSON path (not the step the misspelt target cuts off)."""
    spec = _router_spec()
    spec["routes"]["classify"]["routes"][0]["when"]["op"] = "equals"
    spec["steps"]["review"]["timout"] = 3
    spec["routes"]["classify"]["routes"][1]["go"] = "data_qery"
    functions = _functions(query_router())
    del functions["generate_answer"]
    problems = sorted(_problems(spec, steps=functions), key=_order)
    expected = [
        "$.routes.classify.routes[0].when.op: 'equals' is not one of",
        "$.steps.review: unknown key 'timout' (did you mean 'timeout'?)",
        "$.steps.generate_answer.fn: 'generate_answer', the function of step 'generate_answer', is not among the "
        "functions passed in steps=",
        "$.routes.classify.routes[1].go: route from 'classify' -> 'data_qery': no step named 'data_qery' "
        "(did you mean 'data_query'?); add it under steps: (with its fn:), or write go: __end__ to finish",
    ]
    assert len(expected) == len(problems), problems
    for start, problem in zip(expected, problems, strict=True):
        assert problem.startswith(start), problem


def test_a_route_to_an_unknown_step_says_how_a_spec_ends_the_branch(tmp_path: Path) -> None:
    """`go: END` in a file: the message names `__end__`, the spelling a spec can hold, not
    `wfkit.END`, which a YAML file cannot write."""
    spec = rag_router().to_spec()
    spec["routes"]["classify"]["default"]["go"] = "END"
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(spec)), sort_keys=False))
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(path)
    (problem,) = info.value.problems
    assert problem.startswith("$.routes.classify.default.go (router.yaml line ")
    assert "no step named 'END'" in problem
    assert problem.endswith("add it under steps: (with its fn:), or write go: __end__ to finish")


def _label(state: Any) -> dict[str, Any]:
    return {"label": "spam"}


def _done(state: Any) -> dict[str, Any]:
    return {"done": True}


def test_a_misspelt_route_field_in_a_spec_warns_at_the_routes_line(tmp_path: Path) -> None:
    """A route of a spec file comparing a field nobody writes warns, as a route in code does, but
    at the routes' line in the file (Python shows that line when the file is where it was read),
    not at a line of wfkit's engine."""
    (tmp_path / "triage.yaml").write_text(
        "wfkit_flow: 1\nname: triage\nentry: classify\nsteps:\n"
        "  classify: {fn: _label}\n  junk: {fn: _done}\n  inbox: {fn: _done}\n"
        "routes:\n  classify:\n    routes:\n"
        "    - {when: {field: lable, op: eq, value: spam}, go: junk}\n    default: {go: inbox}\n"
    )
    flow = wf.Workflow.from_spec(tmp_path / "triage.yaml", steps=[_label, _done])
    with pytest.warns(wf.RouteFieldWarning) as caught:
        run = flow.run({}, workspace=False)
    assert run.state["done"]
    assert [("triage.yaml", 9)] == [(w.filename, w.lineno) for w in caught]
    assert "compares field 'lable'" in str(caught[0].message)
    assert "(did you mean 'label'?)" in str(caught[0].message)


def test_an_unknown_key_is_reported_at_its_own_line(tmp_path: Path) -> None:
    """A misspelt key names the line the key is written on, not the first line of its mapping (the
    step's name, a few lines above it), so a reader goes straight to the typo."""
    (tmp_path / "flow.yaml").write_text(
        "wfkit_flow: 1\nname: gate\nentry: ledger\nsteps:\n"
        "  ledger:\n    fn: summary\n    timeout: 5\n    timout: 5\n"
        "  summary: {fn: summary}\nedges:\n  ledger: [summary]\n"
    )
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "flow.yaml", steps=[summary])
    (problem,) = info.value.problems
    assert problem.startswith("$.steps.ledger (flow.yaml line 8): unknown key 'timout' (did you mean 'timeout'?)")
    assert [("steps", "ledger")] == info.value.locations  # the builder still marks the step


def test_an_edge_to_one_step_not_in_a_list_says_how_to_write_it(tmp_path: Path) -> None:
    """`ledger: summary` under `edges:` (a step, not a list) says an edge's targets are a list, with
    the form to write; it said only "'summary' is not of type 'array'"."""
    (tmp_path / "flow.yaml").write_text(
        "wfkit_flow: 1\nname: gate\nentry: ledger\nsteps:\n"
        "  ledger: {fn: summary}\n  summary: {fn: summary}\n"
        "edges:\n  ledger: summary\n"
    )
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "flow.yaml", steps=[summary])
    assert (
        "$.edges.ledger (flow.yaml line 8): 'summary' is not of type 'array' (the steps that run after this one, a "
        "list even of one: [answer], or [left, right] to run both at once)"
    ) in info.value.problems


def _order(problem: str) -> int:
    keys = ["routes[0].when.op", "timout", ".fn:", "routes[1].go"]
    return next(i for i, k in enumerate(keys) if k in problem)


def test_bad_operator_names_the_allowed_ones() -> None:
    """An unknown operator is reported at its condition with the list of operators to choose from."""
    spec = _router_spec()
    spec["routes"]["classify"]["routes"][0]["when"]["op"] = "equals"
    (problem,) = _problems(spec, steps=_functions(query_router()))
    assert problem.startswith("$.routes.classify.routes[0].when.op: 'equals' is not one of ")
    assert "['eq', 'ne', 'gt', 'ge', 'lt', 'le', 'contains', 'in', 'exists']" in problem


def test_a_comparison_without_its_value_is_reported_at_its_condition() -> None:
    """``{field: quality, op: lt}`` (value forgotten) is refused at load, with its path and the fix,
    where it used to load, validate and then fail the run when the route was first tried."""
    spec = _router_spec()
    del spec["routes"]["review"]["routes"][0]["when"]["all"][0]["value"]
    (problem,) = _problems(spec, steps=_functions(query_router()))
    assert problem.startswith("$.routes.review.routes[0].when.all[0].value: operator 'lt' on 'quality' needs a value")


def test_a_comparison_with_an_empty_value_is_reported_at_that_value(tmp_path: Path) -> None:
    """``{op: lt, value: ""}`` (the builder's value box left empty) is refused at load with the path
    and line of that value and the fix, where it used to load and fail the run when first tried;
    a second bad comparison in the same file is reported at its own value too."""
    (tmp_path / "flow.yaml").write_text(
        "wfkit_flow: 1\nname: gate\nentry: ledger\nsteps:\n"
        "  ledger: {fn: summary}\n  summary: {fn: summary}\n"
        "routes:\n  ledger:\n    routes:\n"
        "      - when:\n          all:\n            - {field: n, op: exists}\n"
        "            - {field: score, op: lt, value: ''}\n"
        "        go: summary\n"
        "      - {when: {not: {field: score, op: ge, value: ''}}, go: summary}\n"
        "    default: {go: __end__}\n"
    )
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "flow.yaml", steps=[summary])
    assert [
        "$.routes.ledger.routes[0].when.all[1].value (flow.yaml line 13): operator 'lt' on 'score' needs a value "
        "to compare with, got the blank string ''; give one (when('score', 'lt', 3), or value: 3 in a spec)",
        "$.routes.ledger.routes[1].when.not.value (flow.yaml line 15): operator 'ge' on 'score' needs a value "
        "to compare with, got the blank string ''; give one (when('score', 'ge', 3), or value: 3 in a spec)",
    ] == info.value.problems


def test_bad_option_values_say_what_is_expected() -> None:
    """A negative timeout, a zero visit bound and a retry policy with an unknown key are reported at
    their own paths with what the field expects."""
    spec = _router_spec()
    spec["steps"]["code_search"]["timeout"] = -1
    spec["steps"]["generate_answer"]["max_visits"] = 0
    spec["steps"]["web_search"]["retry"]["retries"] = 2
    problems = sorted(_problems(spec, steps=_functions(query_router())))
    assert 3 == len(problems), problems
    assert problems[0].startswith("$.steps.code_search.timeout: -1 is less than or equal to the minimum of 0")
    assert problems[0].endswith("(seconds per attempt, a number > 0)")
    assert problems[1].startswith("$.steps.generate_answer.max_visits: 0 is less than the minimum of 1")
    assert problems[2].startswith("$.steps.web_search.retry: unknown key 'retries' (did you mean 'max_retries'?)")


def test_retry_keys_on_a_step_and_durations_as_text_say_what_to_write() -> None:
    """A retry policy's keys written on the step (``max_retries: 3``, ``max_attempts: 4``), a retry
    policy given as its count (``retry: 3``) and a duration written as text (``timeout: 5s``,
    ``base_delay: 500ms``) each say the YAML to write, which loads; a number field that is no
    duration (``max_visits: '3'``) gets no seconds."""
    spec = _router_spec()
    steps = spec["steps"]
    steps["classify"].update(max_retries=3, base_delay=0.5)
    steps["code_search"]["max_attempts"] = 4
    steps["data_query"]["retry"] = 3
    steps["generate_answer"]["timeout"] = "5s"
    steps["web_search"]["retry"] = {"base_delay": "500ms"}
    steps["review"]["max_visits"] = "3"
    problems = sorted(_problems(spec, steps=_functions(query_router())))
    assert 6 == len(problems), problems
    assert problems[0].startswith(
        "$.steps.classify: unknown key 'base_delay', 'max_retries'; allowed here: fn, retry, "
    )
    assert problems[0].endswith(
        "; 'base_delay', 'max_retries' belong in its retry policy: write retry: {base_delay: 0.5, max_retries: 3}"
    )
    assert problems[1].endswith(
        "; 'max_attempts' belongs in its retry policy: write retry: {max_retries: 3} (max_attempts: 4 counts the "
        "first attempt)"
    )
    assert problems[2] == (
        "$.steps.data_query.retry: 3 is not of type 'object' (a retry policy; absent keys take RetryPolicy's "
        "defaults); write retry: {max_retries: 3}"
    )
    assert problems[3] == (
        "$.steps.generate_answer.timeout: '5s' is not of type 'number' (seconds per attempt, a number > 0); "
        "write timeout: 5 (seconds, a number)"
    )
    assert problems[4].startswith("$.steps.review.max_visits: '3' is not of type 'integer'")
    assert "second" not in problems[4]
    assert problems[5] == (
        "$.steps.web_search.retry.base_delay: '500ms' is not of type 'number' (seconds before the first "
        "retry); write base_delay: 0.5 (seconds, a number)"
    )
    # What they say to write loads.
    del steps["classify"]["max_retries"], steps["classify"]["base_delay"], steps["code_search"]["max_attempts"]
    steps["classify"]["retry"] = {"base_delay": 0.5, "max_retries": 3}
    steps["code_search"]["retry"] = {"max_retries": 3}
    steps["data_query"]["retry"] = {"max_retries": 3}
    steps["generate_answer"]["timeout"] = 5
    steps["web_search"]["retry"] = {"base_delay": 0.5}
    steps["review"]["max_visits"] = 3
    flow = wf.Workflow.from_spec(spec, steps=_functions(query_router()))
    assert (flow.steps["classify"].retry.max_retries, flow.steps["generate_answer"].timeout) == (3, 5)


def test_every_retry_word_on_a_step_gets_the_same_policy_in_a_spec_as_in_code() -> None:
    """The words a retry policy goes by (its own keywords, ``retries``, ``max_retry``,
    ``stop_after_attempt``...) written on a step name the same policy in a spec as in code, where
    the two once kept lists of their own that drifted apart."""
    from wfkit.model._retry import RETRY_WORDS

    for word in ("retries", "num_retries", "max_retry", "attempts", "max_attempts", "stop_after_attempt"):
        assert RETRY_WORDS[word] == "max_retries", word
        spec = _router_spec()
        spec["steps"]["classify"][word] = 3
        (problem,) = _problems(spec, steps=_functions(query_router()))
        with pytest.raises(TypeError) as in_code:
            wf.Workflow("retries").step(**{word: 3})
        retries = 2 if "attempt" in word else 3
        assert f"belongs in its retry policy: write retry: {{max_retries: {retries}}}" in problem, problem
        assert f"so write retry=wf.RetryPolicy(max_retries={retries})" in str(in_code.value)
        counted = f"({word}: 3 counts the first attempt)" in problem
        assert counted == (f"({word}=3 counts the first attempt)" in str(in_code.value)) == ("attempt" in word)


def test_a_timeout_written_as_text_says_the_number_to_pass() -> None:
    """``timeout="5s"`` in code (a config's value, another library's habit) says the number."""
    flow = wf.Workflow("t")
    for text, seconds in (("5s", "5"), ("500ms", "0.5"), ("2 min", "120"), ("1.5", "1.5")):
        with pytest.raises(TypeError, match=rf"got '{text}' \(str\): pass timeout={seconds} \(a number of seconds"):
            flow.step(lambda s: None, name="a", timeout=text)
    with pytest.raises(TypeError, match=r"got 'soon' \(str\)$"):
        flow.step(lambda s: None, name="a", timeout="soon")
    assert {} == flow.steps


def test_import_path_that_does_not_import_is_reported() -> None:
    """A step function whose module or name is wrong says which and how to fix it."""
    spec = _router_spec()
    spec["steps"]["classify"]["fn"] = "wfkit.examples:clasify"
    spec["steps"]["review"]["fn"] = "no_such_module_here:review"
    problems = sorted(_problems(spec, steps=_functions(query_router())))
    assert problems[0].startswith(
        "$.steps.classify.fn: cannot import 'wfkit.examples:clasify', the function of step 'classify'"
    )
    assert problems[1].startswith(
        "$.steps.review.fn: cannot import 'no_such_module_here:review', the function of step 'review'"
    )


def _subflow_parent() -> tuple[wf.Workflow, wf.Workflow]:
    child = wf.Workflow("spec-child", inputs=["docs"])
    child.step(split, name="inner", writes=["docs"])
    parent = wf.Workflow("spec-parent")
    parent.step(split, name="first", writes=["docs"])
    parent.subflow(
        child,
        name="nested",
        inputs={"docs": "docs"},
        outputs={"words": "docs"},
        retry=wf.RetryPolicy(max_retries=2),
        timeout=5,
    )
    parent.edge("first", "nested")
    return parent, child


def test_a_sub_workflow_step_round_trips_with_its_child_by_name_or_import_path() -> None:
    """The step is written as workflow: {ref, inputs, outputs} (no fn), and reads back to the same fingerprint."""
    parent, child = _subflow_parent()
    spec = parent.to_spec()
    assert {
        "workflow": {"ref": "spec-child", "inputs": {"docs": "docs"}, "outputs": {"words": "docs"}},
        "retry": {"max_retries": 2},
        "timeout": 5,
    } == spec["steps"]["nested"]
    _assert_round_trip(parent, {"split": split, "spec-child": child})
    by_path = json.loads(json.dumps(spec))
    by_path["steps"]["nested"]["workflow"]["ref"] = "wfkit.examples:query_router"
    problems = _problems(by_path, steps={"split": split})
    assert ["$.steps.nested.workflow.ref: 'wfkit.examples:query_router' is function, not a Workflow"] == problems


def test_a_sub_workflow_named_bare_is_found_in_the_module_given_as_steps(tmp_path: Path) -> None:
    """`workflow: {ref: review_flow}` with steps=the module defining review_flow (and `wfkit run SPEC
    --steps MODULE`) was refused, "not among steps=": a module gave its functions alone, never the
    workflows a sub-workflow step names. It gives both; a misspelt ref names the module's workflow."""
    (tmp_path / "reviewsteps.py").write_text(
        "import wfkit as wf\n"
        "review_flow = wf.Workflow('review', inputs=['draft'])\n"
        "@review_flow.step\n"
        "def judge(state):\n"
        "    return {'verdict': 'ok' if len(state['draft']) > 3 else 'short'}\n"
    )
    (tmp_path / "subs.yaml").write_text(
        "wfkit_flow: 1\nname: subs\ninputs: [query]\nentry: rev\nsteps:\n  rev:\n"
        "    workflow: {ref: review_flow, inputs: {draft: query}, outputs: {verdict: verdict}}\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import reviewsteps  # type: ignore[import-not-found]

        flow = wf.Workflow.from_spec(tmp_path / "subs.yaml", steps=reviewsteps)
        assert "ok" == flow.run({"query": "long enough"}, workspace=False).state["verdict"]
        misspelt = (tmp_path / "subs.yaml").read_text().replace("ref: review_flow", "ref: reviewflow")
        (tmp_path / "subs.yaml").write_text(misspelt)
        with pytest.raises(
            wf.FlowSpecError, match=r"workflow 'reviewflow' is not among steps= \(did you mean 'review_flow'\?\)"
        ):
            wf.Workflow.from_spec(tmp_path / "subs.yaml", steps=reviewsteps)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("reviewsteps", None)
    (tmp_path / "subs.yaml").write_text(misspelt.replace("ref: reviewflow", "ref: review_flow"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wfkit",
            "run",
            "subs.yaml",
            "--steps",
            "reviewsteps",
            "--no-workspace",
            "--json",
            "--input",
            '{"query": "long enough"}',
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    assert "ok" == json.loads(done.stdout)["state"]["verdict"]


def test_a_sub_workflow_reference_that_cannot_be_found_or_mapped_is_reported() -> None:
    """A child missing from steps=, an unimportable path, a step with both fn and workflow, no outputs."""
    parent, _ = _subflow_parent()
    spec = parent.to_spec()
    assert [
        "$.steps.nested.workflow.ref: workflow 'spec-child' is not among steps=; pass it "
        "(Workflow.from_spec(spec, steps={'spec-child': spec-child}); to wfkit validate, run or graph: --steps "
        "MODULE, the module defining it) or write it as 'module:spec-child'"
    ] == _problems(spec, steps={"split": split})
    spec["steps"]["nested"]["workflow"]["ref"] = "no_such_module_here:flow"
    spec["steps"]["nested"]["fn"] = "split"
    problems = _problems(spec, steps={"split": split})
    assert 2 == len(problems)
    assert problems[0].startswith("$.steps.nested.workflow.ref: cannot import workflow 'no_such_module_here:flow'")
    assert "$.steps.nested.fn: a sub-workflow step runs its workflow, not a function; drop 'fn'" == problems[1]
    del spec["steps"]["nested"]["fn"]
    spec["steps"]["nested"]["workflow"] = {"ref": "spec-child", "outputs": {}}
    assert any(p.startswith("$.steps.nested.workflow.outputs") for p in _problems(spec, steps={"split": split}))


def split(state: Any) -> dict[str, Any]:
    return {"docs": state["text"].split()}


async def shout(item: Any, ctx: wf.StepContext) -> str:
    return str(item).upper()


def by_text(state: Any) -> str:
    return str(state["text"])


def _mapped() -> wf.Workflow:
    flow = wf.Workflow("mapped", inputs=["text"])
    flow.step(split, writes=["docs"], cache=wf.Cache(ttl=60, key=by_text))
    flow.map(shout, over="docs", into="loud", max_concurrency=2, cache=True)
    flow.edge("split", "shout")
    return flow


def test_maps_caches_declared_writes_and_inputs_round_trip() -> None:
    """A map step (over, into, max_concurrency), caches (ttl, key function), declared writes and the
    workflow's inputs come back with the same fingerprint, and the loaded flow runs the map."""
    flow = _mapped()
    spec = flow.to_spec()
    assert ["text"] == spec["inputs"]
    assert {"over": "docs", "into": "loud", "max_concurrency": 2} == spec["steps"]["shout"]["map"]
    assert {"ttl": 60, "key": "test_spec:by_text"} == spec["steps"]["split"]["cache"]
    assert ({}, ["docs"]) == (spec["steps"]["shout"]["cache"], spec["steps"]["split"]["writes"])
    assert "    map: {over: docs, into: loud, max_concurrency: 2}" in _spec.dumps(spec).splitlines()
    back = wf.Workflow.from_spec(spec)
    assert flow.validate().fingerprint == back.validate().fingerprint
    assert spec == back.to_spec()
    assert ["A", "B"] == back.run({"text": "a b"}, workspace=False).state["loud"]


def test_bad_map_options_are_reported_at_the_map() -> None:
    """A map into the field it reads and a zero concurrency are reported with their paths."""
    spec = _mapped().to_spec()
    spec["steps"]["shout"]["map"]["into"] = "docs"
    (problem,) = _problems(spec)
    assert problem.startswith("$.steps.shout.map: a map reads its items from 'docs' and writes its results")
    spec["steps"]["shout"]["map"] = {"over": "docs", "into": "loud", "max_concurrency": 0}
    (problem,) = _problems(spec)
    assert problem.startswith("$.steps.shout.map.max_concurrency: 0 is less than the minimum of 1")


def test_a_map_over_a_field_nobody_writes_is_located_at_its_over() -> None:
    """The graph check's message about a map over an unwritten field points at map.over."""
    spec = _mapped().to_spec()
    del spec["inputs"]
    del spec["steps"]["split"]["writes"]
    (problem,) = _problems(spec)
    assert problem.startswith("$.steps.shout.map.over: map step 'shout' maps over 'docs', but no step declares")


def test_missing_required_keys_are_reported() -> None:
    """A spec without steps or entry lists each missing piece."""
    problems = _problems({"wfkit_flow": 1, "name": "x"})
    assert [
        "$: 'entry' is missing: the step the run starts with",
        "$: 'steps' is missing: steps by name; at least one",
    ] == sorted(problems)


def test_a_spec_without_its_format_says_the_line_to_add() -> None:
    """A hand-written spec without `wfkit_flow:` was told "'wfkit_flow' is missing: the spec format: 1",
    which reads as a description, not as the line to write."""
    (problem,) = _problems({"name": "x", "entry": "a", "steps": {"a": {"fn": "wfkit.examples:classify"}}})
    assert (
        "$: 'wfkit_flow' is missing: the spec format: 1; add `wfkit_flow: 1` at the top of the spec "
        "(1 is the only format there is)"
    ) == problem


def test_a_spec_without_entry_says_so_once_in_a_specs_words(tmp_path: Path) -> None:
    """A hand-written spec without `entry:` got two problems, the schema's "'entry' is missing" and
    the graph's "no entry step: call flow.entry('step') or declare a step first", advice for code;
    it gets the first, with the line to add."""
    (tmp_path / "noentry.yaml").write_text(
        "wfkit_flow: 1\nname: noentry\nsteps:\n  first: {fn: 'wfkit.examples:classify'}\n"
        "  second: {fn: 'wfkit.examples:classify'}\nedges:\n  first: [second]\n"
    )
    with pytest.raises(wf.FlowSpecError) as caught:
        wf.Workflow.from_spec(tmp_path / "noentry.yaml")
    assert [
        "$ (noentry.yaml): 'entry' is missing: the step the run starts with; add `entry: first` (the first step) "
        "or the step it starts with"
    ] == caught.value.problems
    fixed = (tmp_path / "noentry.yaml").read_text().replace("steps:", "entry: first\nsteps:")
    (tmp_path / "noentry.yaml").write_text(fixed)
    assert "first" == wf.Workflow.from_spec(tmp_path / "noentry.yaml").validate().entry


def test_routes_without_a_default_get_one_message_saying_how_to_add_one() -> None:
    """A step's routes with no default (the builder's first connection made a route) are reported
    once, with what to add; the steps those routes reach are not also called unreachable (they
    were: "'default' is a required property", then every step after the router as unreachable)."""
    spec = rag_router().to_spec()
    del spec["routes"]["classify"]["default"]
    assert [
        "$.routes.classify: 'default' is missing: the step a run goes to when no route's condition holds, so "
        "no run is left without a next step; add `default: {go: STEP}` (`__end__` ends the branch), or in the "
        "visual builder set one connection's kind to 'otherwise (default route)'"
    ] == _problems(spec)


def test_a_spec_of_another_format_gets_one_message_saying_what_to_do(tmp_path: Path) -> None:
    """A file of a format this wfkit does not read is refused with one message, at its line: the
    formats this wfkit reads and what to do (not also the schema's complaint about the number, nor
    one for every key the other format may have added)."""
    path = tmp_path / "future.yaml"
    path.write_text("name: future\nwfkit_flow: 2\nentry: a\nsteps:\n  a: {fn: summary, budget: 3}\n")
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(path, steps=[summary])
    assert [
        f"$.wfkit_flow (future.yaml line 2): this spec is written in format 2, which a newer wfkit writes; "
        f"wfkit {wf.__version__} reads format 1 only: upgrade wfkit to load it"
    ] == info.value.problems
    assert ["$.wfkit_flow: there is no spec format 0; this wfkit reads format 1: write 1 there"] == _problems(
        {"wfkit_flow": 0, "name": "x", "entry": "a", "steps": {"a": {"fn": "summary"}}}, steps=[summary]
    )


def test_graph_problems_of_a_spec_say_the_fix_in_its_keys() -> None:
    """A loop without a visit bound is said as in code, at its path, but its fix is written in the
    spec's keys: `@flow.step(max_visits=5)` told a spec's author, who may write no Python, nothing."""
    spec = _router_spec()
    del spec["steps"]["generate_answer"]["max_visits"]
    (problem,) = _problems(spec, steps=_functions(query_router()))
    flow = query_router()
    flow.step(flow.steps["generate_answer"].fn, name="generate_answer")  # redeclared without max_visits
    with pytest.raises(wf.WorkflowDefinitionError) as code_error:
        flow.validate()
    (in_code,) = code_error.value.problems
    assert in_code.endswith("e.g. @flow.step(max_visits=5), so it cannot spin forever")
    said = in_code.replace("@flow.step(max_visits=5)", "max_visits: 5 in step 'generate_answer'")
    assert f"$.steps.generate_answer.max_visits: {said}" == problem
    assert "flow." not in problem
    assert "wfkit." not in problem


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    """Broken YAML, broken JSON and a top-level list each raise FlowSpecError naming the file."""
    (tmp_path / "a.yaml").write_text("steps: [unclosed\n")
    (tmp_path / "b.json").write_text("{nope")
    (tmp_path / "c.yaml").write_text("- just a list\n")
    for name, text in (("a.yaml", "not valid YAML"), ("b.json", "not valid JSON"), ("c.yaml", "a mapping at the top")):
        with pytest.raises(wf.FlowSpecError, match=text):
            wf.Workflow.from_spec(tmp_path / name)


def test_an_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    """An empty spec file (or one of comments only) says it is empty, not "got NoneType"."""
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(wf.FlowSpecError, match=r"empty\.yaml is empty: a flow spec is a mapping") as error:
        wf.Workflow.from_spec(tmp_path / "empty.yaml")
    assert "NoneType" not in str(error.value)


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    """A file that is neither .yaml/.yml nor .json needs format= to be written."""
    with pytest.raises(ValueError, match=r"name it \.yaml, \.yml or \.json, or pass format="):
        _everything().save(tmp_path / "flow.txt")
    assert "wfkit_flow: 1" in _everything().save(tmp_path / "flow.txt", format="yaml").read_text()


def test_values_a_file_cannot_hold_are_refused_on_writing() -> None:
    """A condition comparing with a set cannot be written as JSON data: the error says to use a list."""
    flow = query_router()
    flow.route("review", wf.when("quality", "in", {0.1, 0.2}) >> wf.go("generate_answer"), default=wf.go(wf.END))
    with pytest.raises(
        ValueError, match=r"route 'review' -> 'generate_answer': the value .* \(set\) cannot be written"
    ):
        flow.to_spec()


def test_lambdas_cannot_be_named_in_a_spec() -> None:
    """A merge rule given as a lambda has no name to write: the error says to use a def function."""
    flow = wf.Workflow("lam", merge={"n": lambda a, b: b})
    flow.step(summary)
    with pytest.raises(TypeError, match="has no name, so a spec cannot refer to it: use a def function"):
        flow.to_spec()


def test_steps_may_be_a_list_of_functions() -> None:
    """steps= also takes a list of functions, found by their names."""
    flow = query_router()
    back = wf.Workflow.from_spec(flow.to_spec(), steps=list(_functions(flow).values()))
    assert flow.version == back.version


def test_steps_may_be_a_module_as_in_the_builder_and_the_cli(tmp_path: Path) -> None:
    """steps= takes the module of the step functions, as wf.edit(steps=...) and `wfkit run --steps`
    do: a spec naming them by bare name loads and runs. It failed with TypeError "'module' object is
    not iterable"."""
    import wfkit.examples as ex

    spec = rag_router().to_spec()
    for step in spec["steps"].values():
        step["fn"] = step["fn"].rpartition(":")[2]  # "classify", as a notebook's functions are written
    path = _spec.write(spec, tmp_path / "router.yaml")
    flow = wf.Workflow.from_spec(path, steps=ex, tools=ex.reliable_tools())
    run = flow.run({"query": "What were Q1 sales figures?"}, workspace=False)
    assert ["classify", "data_query", "generate_answer"] == run.path()
    with pytest.raises(TypeError, match=r"steps= takes a module, a mapping of names to functions or a list"):
        wf.Workflow.from_spec(path, steps=[ex])


def test_json_path_quotes_keys_that_are_not_names() -> None:
    """Keys with spaces or dashes are written in brackets."""
    assert '$.steps["two words"].retry[0]' == _spec.json_path(("steps", "two words", "retry", 0))


HAND_WRITTEN = """\
wfkit_flow: 1
name: hand-written
entry: ledger
steps:
  ledger: {fn: summary}
  on: {fn: summary, timeout: 1e3}
edges:
  ledger: [on]
routes:
  on:
    routes:
      - {when: {field: country, op: eq, value: NO}, go: __end__}
      - {when: {field: at, op: eq, value: 12:30}, go: __end__}
      - {when: {field: day, op: eq, value: 2024-01-01}, go: __end__}
      - {when: {field: answer, op: in, value: [yes, off, 0x1F, 010]}, go: __end__}
    default: {go: __end__}
"""


def test_yaml_is_read_as_json_data_not_as_yaml_1_1(tmp_path: Path) -> None:
    """A hand-written YAML spec means what a JSON one would: ``on`` is a step's name, ``NO`` a
    country, ``12:30`` a time and ``2024-01-01`` a day, all strings; ``1e3`` is a number. YAML 1.1
    read them as True, False, 750 and a date (a step named ``on`` crashed the loader), and ``1e3``
    as a string."""
    (tmp_path / "flow.yaml").write_text(HAND_WRITTEN)
    flow = wf.Workflow.from_spec(tmp_path / "flow.yaml", steps=[summary])
    assert ["ledger", "on"] == list(flow.steps)
    assert 1000.0 == flow.steps["on"].timeout
    values = [route["when"]["value"] for route in flow.to_spec()["routes"]["on"]["routes"]]
    assert ["NO", "12:30", "2024-01-01", ["yes", "off", "0x1F", 10]] == values
    # Written back, every string stays a string for YAML 1.1 readers too (yaml.safe_load).
    flow.save(tmp_path / "again.yaml")
    assert flow.to_spec() == wf.Workflow.from_spec(tmp_path / "again.yaml", steps=[summary]).to_spec()
    assert flow.to_spec()["routes"] == yaml.safe_load((tmp_path / "again.yaml").read_text())["routes"]


def test_a_string_yaml_1_2_reads_as_a_number_is_quoted_when_written(tmp_path: Path) -> None:
    """A condition value "1e3" (a string) is written quoted, so it is read back as a string."""
    flow = wf.Workflow("quoted")
    flow.step(summary)
    flow.route("summary", wf.when("code", "eq", "1e3") >> wf.go(wf.END), default=wf.go(wf.END))
    back = wf.Workflow.from_spec(flow.save(tmp_path / "quoted.yaml"), steps=[summary])
    assert "1e3" == back.to_spec()["routes"]["summary"]["routes"][0]["when"]["value"]


def test_keys_that_are_not_strings_are_reported_where_they_are(tmp_path: Path) -> None:
    """A step named ``2`` (a YAML number) or a key ``null`` is reported at its mapping's path and
    the key's own line, saying to quote it; the step is not dropped without a word, and nothing
    crashes."""
    (tmp_path / "flow.yaml").write_text(
        "wfkit_flow: 1\nname: n\nentry: ledger\nsteps:\n  ledger: {fn: summary}\n  2: {fn: summary}\n"
        "metadata: {layout: {null: [1, 2]}}\n"
    )
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "flow.yaml", steps=[summary])
    assert [
        "$.steps (flow.yaml line 6): the key 2 is int, not a string; quote it ('2')",  # the key's line, not steps:'s
        "$.metadata.layout (flow.yaml line 7): the key None is NoneType, not a string; quote it ('null')",
    ] == info.value.problems
    spec = {"wfkit_flow": 1, "name": "n", "entry": "a", "steps": {"a": {"fn": "summary"}, True: {"fn": "summary"}}}
    with pytest.raises(wf.FlowSpecError, match=r"\$\.steps: the key True is bool, not a string"):
        wf.Workflow.from_spec(spec, steps=[summary])


def test_a_key_written_twice_is_reported_not_overwritten(tmp_path: Path) -> None:
    """A step, an option or a route's default written twice in one mapping is an error naming both
    lines (YAML) or the object (JSON), not the last one silently replacing the first."""
    (tmp_path / "twice.yaml").write_text(
        "wfkit_flow: 1\nname: twice\nentry: ledger\nsteps:\n"
        "  ledger: {fn: summary, timeout: 1, timeout: 2}\n"
        "  summary: {fn: summary}\n"
        "  summary: {fn: ledger}\n"
        "edges:\n  ledger: [summary]\n"
    )
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "twice.yaml", steps=[summary, ledger])
    assert [
        "$.steps: the key 'summary' is written twice in one mapping (twice.yaml lines 6 and 7): keep one",
        "$.steps.ledger: the key 'timeout' is written twice in one mapping (twice.yaml line 5): keep one",
    ] == info.value.problems
    assert [("steps",), ("steps", "ledger")] == info.value.locations
    (tmp_path / "twice.json").write_text(
        '{"wfkit_flow": 1, "name": "twice", "entry": "ledger", "steps": {"ledger": {"fn": "summary"}},\n'
        ' "routes": {"ledger": {"default": {"go": "__end__"}, "default": {"go": "ledger"}}}}\n'
    )
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "twice.json", steps=[summary])
    assert ["$.routes.ledger: the key 'default' is written twice in one object (twice.json): keep one"] == (
        info.value.problems
    )


def test_a_bad_condition_inside_a_group_says_what_is_wrong_with_it() -> None:
    """A misspelt operator inside ``all`` is reported at its own op with the allowed ones, as at the
    top; a group key that does not exist (``and``) is named, with the key meant and the shapes a
    condition may take. Both said only "is not valid under any of the given schemas"."""
    spec = _router_spec()
    spec["routes"]["review"]["routes"][0]["when"]["all"][1]["op"] = "lte"
    spec["routes"]["classify"]["routes"][0]["when"] = {"and": [{"field": "query_type", "op": "eq", "value": "code"}]}
    problems = sorted(_problems(spec, steps=_functions(query_router())))
    assert 2 == len(problems), problems
    assert problems[0].startswith(
        "$.routes.classify.routes[0].when: unknown key 'and' (did you mean 'all'?); it must be a structured "
    )
    assert "{field, op, value}, or {all: [...]}, {any: [...]}, {not: {...}}" in problems[0]
    assert problems[1].startswith("$.routes.review.routes[0].when.all[1].op: 'lte' is not one of ['eq', 'ne'")


def test_infinity_and_nan_in_a_spec_are_refused_naming_field_line_and_what_to_write(tmp_path: Path) -> None:
    """YAML's `.inf` and `.nan` (and JSON's `Infinity`, `NaN`, which Python's json reads) were read
    as numbers: a timer that never fires, a NaN jitter that passed the schema's [0, 1]. `wfkit
    validate` refuses each, naming its field and line and what to write for what it meant."""
    spec = rag_router().save(tmp_path / "router.yaml").read_text()
    spec = spec.replace(
        "    fn: wfkit.examples:web_search\n",
        "    fn: wfkit.examples:web_search\n    timeout: .inf\n"
        "    retry: {max_retries: .inf, jitter: .nan, max_elapsed: .inf}\n    cache: {ttl: .inf}\n",
    ).replace("value: data}", "value: .nan}")
    (tmp_path / "bad.yaml").write_text(spec)
    done = subprocess.run(
        [sys.executable, "-m", "wfkit", "validate", "bad.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    none = "is no number a flow spec can hold (JSON has none);"
    assert (
        1,
        (
            "wfkit validate: workflow 'rag-router' has 6 problems:\n"
            f"  - $.steps.web_search.timeout (bad.yaml line 15): infinity {none} leave 'timeout' out: a step without "
            "one has no time limit\n"
            f"  - $.steps.web_search.retry.max_retries (bad.yaml line 16): infinity {none} write a whole number of "
            "retries, e.g. 3\n"
            f"  - $.steps.web_search.retry.jitter (bad.yaml line 16): NaN {none} write the random spread of the wait, "
            "a fraction in [0, 1], e.g. 0.1\n"
            f"  - $.steps.web_search.retry.max_elapsed (bad.yaml line 16): infinity {none} write null for no bound\n"
            f"  - $.steps.web_search.cache.ttl (bad.yaml line 17): infinity {none} leave 'ttl' out: an entry then "
            "lives until `wfkit cache clear`\n"
            f"  - $.routes.classify.routes[1].when.value (bad.yaml line 28): NaN {none} nothing equals NaN and no "
            "comparison with it holds, so the condition never would: write the value\n"
        ),
    ) == (done.returncode, done.stderr)
    text = json.dumps(yaml.safe_load(spec.replace(".inf", "1").replace(".nan", "1")), indent=2)
    (tmp_path / "bad.json").write_text(text.replace('"timeout": 1', '"timeout": -Infinity'))
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "bad.json")
    line = next(n for n, written in enumerate(text.splitlines(), 1) if '"timeout"' in written)
    assert [
        f"$.steps.web_search.timeout (bad.json line {line}): minus infinity {none} write the seconds one attempt "
        "may take, a number > 0"
    ] == info.value.problems


def test_problems_in_a_file_name_it_and_the_line(tmp_path: Path) -> None:
    """Loaded from a file, YAML or JSON, each problem says, after its JSON path, the file and the
    line of the key it concerns (or of the nearest key above it that is written); a YAML syntax
    error names the file, not "<unicode string>". A JSON spec said only the file: json reports no
    positions."""
    (tmp_path / "flow.yaml").write_text(
        "wfkit_flow: 1\nname: lines\nentry: ledger\nsteps:\n"
        "  ledger:\n    fn: summary\n    timeout: 5s\n"
        "  summary: {fn: summary, max_visits: 2}\n"
        "  lonely: {fn: summary}\n"
        "edges:\n  ledger: [sumary]\n"
    )
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "flow.yaml", steps=[summary])
    expected = [
        "$.steps.ledger.timeout (flow.yaml line 7): '5s' is not of type 'number'",
        "$.edges.ledger[0] (flow.yaml line 11): edge 'ledger' -> 'sumary': no step named 'sumary'",
        "$.steps.lonely (flow.yaml line 9): step 'lonely' is unreachable",
    ]
    assert len(expected) == len(info.value.problems), info.value.problems
    for start, problem in zip(expected, info.value.problems, strict=True):
        assert problem.startswith(start), problem
    spec = json.loads(json.dumps(yaml.safe_load((tmp_path / "flow.yaml").read_text())))
    spec["steps"]["ledger"]["timeout"] = 5
    spec["steps"]["summary"]["max_visits"] = 0
    text = json.dumps(spec, indent=2)
    (tmp_path / "flow.json").write_text(text)
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "flow.json", steps=[summary])
    at = {line.strip(): number for number, line in enumerate(text.splitlines(), 1)}
    visits, target, lonely = at['"max_visits": 0'], at['"sumary"'], at['"lonely": {']
    expected = [
        f"$.steps.summary.max_visits (flow.json line {visits}): 0 is less than the minimum of 1",
        f"$.edges.ledger[0] (flow.json line {target}): edge 'ledger' -> 'sumary': no step named 'sumary'",
        f"$.steps.lonely (flow.json line {lonely}): step 'lonely' is unreachable",
    ]
    assert len(expected) == len(info.value.problems), info.value.problems
    for start, problem in zip(expected, info.value.problems, strict=True):
        assert problem.startswith(start), problem
    # As flow.save writes it: a route, a condition, a tool list on one line, their keys on that line.
    broken = rag_router().to_spec()
    broken["routes"]["classify"]["routes"][1]["go"] = "data_qery"
    saved = wf.Workflow.from_spec(rag_router().to_spec()).save(tmp_path / "router.json").read_text()
    (tmp_path / "router.json").write_text(saved.replace('"go": "data_query"', '"go": "data_qery"'))
    with pytest.raises(wf.FlowSpecError) as info:
        wf.Workflow.from_spec(tmp_path / "router.json")
    (problem,) = info.value.problems
    (number,) = [n for n, line in enumerate(saved.splitlines(), 1) if '"go": "data_query"' in line]
    assert problem.startswith(f"$.routes.classify.routes[1].go (router.json line {number}): route from 'classify'")
    (tmp_path / "bad.yaml").write_text("wfkit_flow: 1\nsteps:\n  a: {fn: x\n")
    with pytest.raises(wf.FlowSpecError, match=r'in "bad\.yaml", line 3') as info:
        wf.Workflow.from_spec(tmp_path / "bad.yaml")
    assert "<unicode string>" not in str(info.value)
