"""Scorers (wfkit.evals._scorers) judged on real runs of tiny workflows in the test's workspace."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import jsonschema
import pytest

import wfkit as wf
from wfkit.evals._scorers import Case, Score


def echo_flow() -> wf.Workflow:
    """A one-step workflow copying the input ``value`` to the state field ``out``."""
    flow = wf.Workflow("echo")

    @flow.step
    def produce(state: Any) -> dict[str, Any]:
        return {"out": state["value"]}

    return flow


def echo(value: Any) -> wf.Run:
    """A real run of the echo workflow whose final state holds ``out=value``."""
    return echo_flow().run({"value": value})


def routed_flow() -> wf.Workflow:
    """The article's router in small: classify, then code or web search with route-bound tools."""
    flow = wf.Workflow("routed")

    @flow.step
    def classify(state: Any) -> dict[str, Any]:
        return {"kind": "code" if "python" in state["query"].lower() else "other"}

    @flow.step
    def code_search(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": f"code via {', '.join(ctx.tools)}"}

    @flow.step
    def web_search(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": f"web via {', '.join(ctx.tools)}"}

    flow.route(
        "classify",
        wf.when("kind", "eq", "code") >> wf.go("code_search", tools=["web_search", "code_interpreter"]),
        default=wf.go("web_search", tools=["web_search"]),
    )
    return flow


def score(scorer: Any, case: Case, run: wf.Run) -> Score:
    """Apply a scorer, awaiting it when it is async (custom, llm_judge)."""
    result = scorer(case, run)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return result


# --- exact_match, contains, regex -----------------------------------------------------------


def test_exact_match_passes_on_the_expected_value():
    """exact_match scores 1 and passes when the state field equals the case's expectation."""
    assert Score(1.0, True, "") == score(wf.evals.exact_match("out"), Case("c1", {}, {"out": 42}), echo(42))


def test_exact_match_fails_and_says_what_differed():
    """exact_match scores 0 and the detail shows the actual and the expected value."""
    result = score(wf.evals.exact_match("out"), Case("c1", {}, {"out": "refunded"}), echo("declined"))
    assert Score(0.0, False, 'out="declined", expected "refunded"') == result


def test_exact_match_of_a_number_against_a_sheets_text_says_how_to_type_the_column(tmp_path: Any):
    """A sheet's cell is text: a run answering 2 where the CSV's column expected.y says "2" fails,
    and the detail says why and which column to rename (expected.y:json); it read only
    'y=2, expected "2"', the quotes the one clue."""
    path = tmp_path / "cases.csv"
    path.write_text("id,value,expected.y\nc1,2,2\n", encoding="utf-8")
    (case,) = wf.evals.load_dataset(path)
    detail = (
        'y=2, expected "2" (a number, expected as text: a CSV cell is text; name the column '
        "expected.y:json to expect a number)"
    )
    flow = wf.Workflow("typed")

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        return {"y": int(state["value"])}

    assert Score(0.0, False, detail) == score(wf.evals.exact_match("y"), case, flow.run(case.inputs))


def test_exact_match_of_a_whole_float_against_a_sheets_text_says_how_to_type_the_column(tmp_path: Any):
    """A run answering 40.0 (a float, as a division or float() gives) where the sheet's cell says "40"
    failed with only 'total=40.0, expected "40"': the hint compared JSON texts ("40.0" against "40").
    It compares the values, as the :json column the hint names would (which then passes)."""
    flow = wf.Workflow("halves")

    @flow.step
    def calc(state: Any) -> dict[str, Any]:
        return {"total": float(state["a"]) * 2}

    (tmp_path / "cases.csv").write_text("id,a,expected.total\nc1,20,40\nc2,1.5,3\n", encoding="utf-8")
    details = [
        score(wf.evals.exact_match("total"), case, flow.run(case.inputs)).detail
        for case in wf.evals.load_dataset(tmp_path / "cases.csv")
    ]
    assert [
        f'total={value}, expected "{text}" (a number, expected as text: a CSV cell is text; name the column '
        "expected.total:json to expect a number)"
        for value, text in (("40.0", "40"), ("3.0", "3"))
    ] == details
    (tmp_path / "typed.csv").write_text("id,a,expected.total:json\nc1,20,40\n", encoding="utf-8")
    (case,) = wf.evals.load_dataset(tmp_path / "typed.csv")
    assert score(wf.evals.exact_match("total"), case, flow.run(case.inputs)).passed
    (tmp_path / "other.csv").write_text("id,a,expected.total\nc1,20,41\nc2,1,true\n", encoding="utf-8")
    assert ['total=40.0, expected "41"', 'total=2.0, expected "true"'] == [
        score(wf.evals.exact_match("total"), case, flow.run(case.inputs)).detail
        for case in wf.evals.load_dataset(tmp_path / "other.csv")
    ]


def test_exact_match_with_expected_given_to_the_scorer():
    """An expected value given to the scorer wins over the case (which then needs none)."""
    run = echo([1, 2])
    assert score(wf.evals.exact_match("out", [1, 2]), Case("c1", {}), run).passed
    assert not score(wf.evals.exact_match("out", [2, 1]), Case("c1", {}), run).passed


def test_exact_match_on_a_missing_field_says_missing():
    """A field absent from the state fails with '(missing)' in the detail."""
    result = score(wf.evals.exact_match("nope"), Case("c1", {}, {"nope": 1}), echo(1))
    assert Score(0.0, False, "nope=(missing), expected 1") == result


def test_exact_match_follows_dotted_fields():
    """A dotted field reads a nested value of the state."""
    assert score(
        wf.evals.exact_match("out.order.id"), Case("c1", {}, {"out.order.id": 17}), echo({"order": {"id": 17}})
    ).passed


def test_contains_ignores_case_by_default():
    """contains passes on a case-insensitive substring and fails with the text it searched."""
    run = echo("Your REFUND has been processed")
    assert score(wf.evals.contains("out", "refund"), Case("c1", {}), run).passed
    result = score(wf.evals.contains("out", "refund", ignore_case=False), Case("c1", {}), run)
    assert Score(0.0, False, "'refund' not in \"Your REFUND has been processed\"") == result


def test_contains_reads_the_expected_substring_from_the_case():
    """contains takes the substring from the case's expected value for the field."""
    run = echo("answered with web_search")
    assert score(wf.evals.contains("out"), Case("c1", {}, {"out": "web_search"}), run).passed
    assert not score(wf.evals.contains("out"), Case("c2", {}, {"out": "sql_query"}), run).passed


def test_regex_searches_anywhere_and_shows_the_pattern_on_failure():
    """regex passes when the pattern is found anywhere and the detail names value and pattern."""
    assert score(wf.evals.regex("out", r"order \d+"), Case("c1", {}), echo("see order 17 please")).passed
    result = score(wf.evals.regex("out", r"order \d+"), Case("c1", {}), echo("no order here"))
    assert Score(0.0, False, '"no order here" !~ /order \\d+/') == result


def test_regex_on_a_missing_field_fails():
    """regex fails on a field the state lacks rather than matching its absence."""
    result = score(wf.evals.regex("nope", r".*"), Case("c1", {}), echo("x"))
    assert Score(0.0, False, "(missing) !~ /.*/") == result


@pytest.mark.parametrize(
    ("scorer", "key"),
    [
        (wf.evals.exact_match("out"), "out"),
        (wf.evals.contains("out"), "out"),
        (wf.evals.numeric("out"), "out"),
        (wf.evals.route_taken(), "route"),
        (wf.evals.tools_used(), "tools"),
    ],
)
def test_missing_expected_key_raises_key_error_naming_case_and_key(scorer: Any, key: str):
    """A case without the expectation a scorer needs raises KeyError naming the case and the key."""
    with pytest.raises(KeyError, match=f"case 'q7' has no expected '{key}'"):
        score(scorer, Case("q7", {}, {}), echo(1))


# --- json_schema ----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def test_json_schema_accepts_a_valid_dict():
    """A dict that fits the schema passes."""
    assert Score(1.0, True) == score(
        wf.evals.json_schema("out", SCHEMA), Case("c1", {}), echo({"name": "Ada", "age": 36})
    )


def test_json_schema_rejects_an_invalid_dict_naming_the_path():
    """A dict that breaks the schema fails with the offending path and jsonschema's message."""
    result = score(wf.evals.json_schema("out", SCHEMA), Case("c1", {}), echo({"name": "Ada", "age": "old"}))
    assert Score(0.0, False, "age: 'old' is not of type 'integer'") == result


def test_json_schema_reports_a_missing_required_key_at_the_root():
    """A missing required property is reported at '(root)'."""
    result = score(wf.evals.json_schema("out", SCHEMA), Case("c1", {}), echo({"name": "Ada"}))
    assert Score(0.0, False, "(root): 'age' is a required property") == result


def test_json_schema_parses_json_text():
    """JSON text in the state is decoded before validation."""
    scorer = wf.evals.json_schema("out", SCHEMA)
    assert score(scorer, Case("c1", {}), echo('{"name": "Ada", "age": 36}')).passed
    assert not score(scorer, Case("c2", {}), echo('{"name": "Ada", "age": 36.5}')).passed


def test_json_schema_fails_on_invalid_json_text():
    """Text that is not JSON fails with 'not JSON' in the detail."""
    result = score(wf.evals.json_schema("out", SCHEMA), Case("c1", {}), echo("{name: Ada"))
    assert not result.passed
    assert 0.0 == result.value
    assert result.detail.startswith("not JSON: ")


def test_json_schema_fails_on_a_missing_field():
    """A state without the field fails and says so."""
    result = score(wf.evals.json_schema("nope", SCHEMA), Case("c1", {}), echo({}))
    assert Score(0.0, False, "no 'nope' in the state") == result


def test_json_schema_refuses_an_invalid_schema_up_front():
    """A malformed schema is refused when the scorer is built, before any run."""
    with pytest.raises(jsonschema.SchemaError):
        wf.evals.json_schema("out", {"type": "no-such-type"})


# --- numeric --------------------------------------------------------------------------------


def test_numeric_absolute_tolerance():
    """Within the absolute tolerance passes; beyond it fails with the difference allowed."""
    case = Case("c1", {}, {"out": 3})
    assert score(wf.evals.numeric("out", tolerance=0.1), case, echo(3.05)).passed
    assert Score(0.0, False, "3.2 differs from 3.0 by more than 0.1") == score(
        wf.evals.numeric("out", tolerance=0.1), case, echo(3.2)
    )


def test_numeric_relative_tolerance_scales_with_the_expected_value():
    """relative=True allows tolerance x |expected|: 1% of 1000 is 10."""
    case = Case("c1", {}, {"out": 1000})
    assert score(wf.evals.numeric("out", tolerance=0.01, relative=True), case, echo(1009)).passed
    result = score(wf.evals.numeric("out", tolerance=0.01, relative=True), case, echo(1020))
    assert Score(0.0, False, "1020.0 differs from 1000.0 by more than 10") == result


def test_numeric_default_tolerance_is_tight():
    """Without a tolerance only (nearly) the exact number passes."""
    assert score(wf.evals.numeric("out", 0.1), Case("c1", {}), echo(0.1)).passed
    assert not score(wf.evals.numeric("out", 0.1), Case("c1", {}), echo(0.1001)).passed


def test_numeric_accepts_numeric_text():
    """A number held as text is read as that number."""
    assert score(wf.evals.numeric("out", 2.5), Case("c1", {}), echo("2.5")).passed


@pytest.mark.parametrize(("value", "shown"), [("many", '"many"'), (None, "null"), ([1], "[1]")])
def test_numeric_fails_on_non_numbers(value: Any, shown: str):
    """A value that is not a number fails with 'is not a number' rather than raising."""
    result = score(wf.evals.numeric("out", 1), Case("c1", {}), echo(value))
    assert Score(0.0, False, f"out={shown} is not a number") == result


def test_numeric_fails_on_a_missing_field():
    """A field the state lacks is not a number."""
    result = score(wf.evals.numeric("nope", 1), Case("c1", {}), echo(1))
    assert Score(0.0, False, "nope=(missing) is not a number") == result


# --- route_taken, tools_used ----------------------------------------------------------------


def test_route_taken_passes_when_the_run_went_through_the_step():
    """route_taken passes when the expected step is on the run's path."""
    run = routed_flow().run({"query": "Python list sorting"})
    assert ["classify", "code_search"] == run.path()
    assert Score(1.0, True) == score(wf.evals.route_taken(), Case("c1", {}, {"route": "code_search"}), run)


def test_route_taken_fails_showing_the_path():
    """route_taken fails with the path the run took and the step it missed."""
    run = routed_flow().run({"query": "capital of France"})
    result = score(wf.evals.route_taken(), Case("c1", {}, {"route": "code_search"}), run)
    assert Score(0.0, False, "path classify > web_search misses 'code_search'") == result


def test_route_taken_with_another_key():
    """route_taken reads the expected step from the key it is given."""
    run = routed_flow().run({"query": "capital of France"})
    assert score(wf.evals.route_taken("branch"), Case("c1", {}, {"branch": "web_search"}), run).passed


def test_tools_used_passes_on_the_tools_the_route_bound_in_any_order():
    """tools_used compares the tools bound to the expected step, ignoring their order."""
    run = routed_flow().run({"query": "Python list sorting"})
    case = Case("c1", {}, {"route": "code_search", "tools": ["code_interpreter", "web_search"]})
    assert Score(1.0, True) == score(wf.evals.tools_used(), case, run)


def test_tools_used_fails_on_other_tools():
    """tools_used fails when the step ran with other tools, showing both sets."""
    run = routed_flow().run({"query": "capital of France"})
    case = Case("c1", {}, {"route": "web_search", "tools": ["web_search", "code_interpreter"]})
    result = score(wf.evals.tools_used(), case, run)
    assert (
        Score(0.0, False, "web_search had tools ['web_search'], expected ['code_interpreter', 'web_search']") == result
    )


def test_tools_used_fails_when_the_step_never_ran():
    """tools_used fails when the expected step is not in the run at all."""
    run = routed_flow().run({"query": "capital of France"})
    case = Case("c1", {}, {"route": "code_search", "tools": ["web_search", "code_interpreter"]})
    result = score(wf.evals.tools_used(), case, run)
    assert Score(0.0, False, "code_search had tools None, expected ['code_interpreter', 'web_search']") == result


# --- latency_budget, cost_budget ------------------------------------------------------------


def sleepy_flow(seconds: float) -> wf.Workflow:
    """Two steps, the second sleeping ``seconds``."""
    flow = wf.Workflow("sleepy")

    @flow.step
    def first(state: Any) -> dict[str, Any]:
        return {"started": True}

    @flow.step
    async def nap(state: Any) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    flow.edge("first", "nap")
    return flow


def test_latency_budget_passes_a_fast_run():
    """A run well within its budget passes, the detail giving time spent of the budget."""
    result = score(wf.evals.latency_budget(5.0), Case("c1", {}), sleepy_flow(0.01).run({}))
    assert result.passed
    assert 1.0 == result.value
    assert result.detail.endswith(" s of 5.0 s")


def test_latency_budget_fails_a_slow_run():
    """A run whose steps take longer than the budget fails, the detail showing the time spent."""
    result = score(wf.evals.latency_budget(0.05), Case("c1", {}), sleepy_flow(0.12).run({}))
    assert not result.passed
    assert 0.0 == result.value
    spent = float(result.detail.split(" s of ")[0])
    assert spent >= 0.12
    assert result.detail.endswith(" s of 0.05 s")


def test_latency_budget_takes_a_timedelta():
    """A budget given as a datetime.timedelta is its seconds, as a step's timeout is: it failed every
    case's comparison, each case unscored ("scorer error: TypeError: '<=' not supported ...")."""
    import datetime as dt

    result = score(wf.evals.latency_budget(dt.timedelta(seconds=5)), Case("c1", {}), sleepy_flow(0.01).run({}))
    assert result.passed
    assert result.detail.endswith(" s of 5.0 s")


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: wf.evals.latency_budget("2"),
            TypeError,
            "latency_budget('2'): the budget is the longest a run may "
            "take, in seconds (or a datetime.timedelta), a number, got '2' (str): e.g. latency_budget(2.0)",
        ),
        (
            lambda: wf.evals.latency_budget(float("nan")),
            ValueError,
            "latency_budget(nan): the budget is the longest a "
            "run may take, in seconds (or a datetime.timedelta), a finite number above 0, got nan, which would score "
            "every case alike: e.g. latency_budget(2.0)",
        ),
        (lambda: wf.evals.latency_budget(0), ValueError, "a finite number above 0, got 0"),
        (lambda: wf.evals.latency_budget(float("inf")), ValueError, "a finite number above 0, got inf"),
        (
            lambda: wf.evals.cost_budget(-0.01),
            ValueError,
            "cost_budget(-0.01): the budget is the most a run may cost, "
            "in US dollars, a finite number 0 or more, got -0.01, which would score every case alike",
        ),
        (lambda: wf.evals.cost_budget(float("nan")), ValueError, "cost_budget(nan): "),
        (
            lambda: wf.evals.numeric("y", tolerance=-1),
            ValueError,
            "numeric('y', tolerance=-1): the tolerance is how "
            "far a number may be from the expected one, a finite number 0 or more",
        ),
        (
            lambda: wf.evals.llm_judge("r", pass_at=6),
            ValueError,
            "llm_judge(pass_at=6): pass_at is the lowest grade "
            "that passes, in [0, 1] (the judge's N of 10, divided by 10), so no case would pass: for 6 of 10 write "
            "pass_at=0.6",
        ),
        (lambda: wf.evals.llm_judge("r", pass_at=float("nan")), ValueError, "llm_judge(pass_at=nan): "),
    ],
)
def test_a_scorer_bound_that_would_score_every_case_alike_is_refused_when_built(
    build: Any, error: type[Exception], message: str
) -> None:
    """A NaN, negative or infinite budget, tolerance or pass mark, or one of the wrong type, is refused
    when the scorer is built, saying what it is and what to write: it used to fail (or pass) every
    case, read as the workflow's result, or leave every case unscored with a TypeError."""
    with pytest.raises(error, match=re.escape(message)):
        build()


def costly_flow() -> wf.Workflow:
    """Two steps recording model cost: 0.003 + 0.002 in the first, 0.004 in the second."""
    flow = wf.Workflow("costly")

    @flow.step
    def draft(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        ctx.record(model="m", cost_usd=0.003)
        ctx.record(cost_usd=0.002)
        return {"draft": "x"}

    @flow.step
    def polish(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        ctx.record(cost_usd=0.004)
        return {"answer": "y"}

    flow.edge("draft", "polish")
    return flow


def test_cost_budget_sums_the_recorded_cost_of_every_step():
    """cost_budget passes within budget and reports the run's total cost."""
    assert Score(1.0, True, "$0.00900 of $0.01") == score(
        wf.evals.cost_budget(0.01), Case("c1", {}), costly_flow().run({})
    )


def test_cost_budget_fails_over_budget():
    """cost_budget fails when the recorded cost exceeds the budget."""
    assert Score(0.0, False, "$0.00900 of $0.005") == score(
        wf.evals.cost_budget(0.005), Case("c1", {}), costly_flow().run({})
    )


def test_cost_budget_of_a_run_without_cost_is_zero():
    """A run that records no cost spends $0 and passes any budget."""
    assert Score(1.0, True, "$0.00000 of $0.0") == score(wf.evals.cost_budget(0.0), Case("c1", {}), echo(1))


# USD per 1,000 tokens: "a b c" asks 4 tokens and "yes" answers 1, so a priced-1 call costs $0.006.
PRICED = {"priced-1": wf.llm.Price(1.0, 2.0)}  # taken as written, though dearer than any model
PRICE_IT = "which no price table knows: give it a price (ChatClient(..., prices=...) or wf.llm.PRICES.register)"


def calling(*steps: tuple[str, list[str]], prices: dict[str, Any] = PRICED) -> wf.Run:
    """A real run of a chain of steps, each ``(name, models)`` calling its models in turn through
    ``ctx.llm``, a ChatClient on the simulated model priced by ``prices`` (local-llama is in no table)."""
    flow = wf.Workflow("calling")

    def caller(models: list[str]) -> Any:
        async def call(state: Any, ctx: wf.StepContext) -> None:
            for model in models:
                await ctx.llm.complete("a b c", model=model)

        return call

    for name, models in steps:
        flow.step(caller(models), name=name)
    flow.chain(*(name for name, _ in steps))
    model = wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes")
    return flow.run({}, llm=wf.llm.ChatClient(transport=model, model="priced-1", prices=prices))


def unscored(result: Score) -> tuple[bool, bool, str]:
    """(value is NaN, passed, detail): a NaN Score equals no other, so its fields are compared."""
    return result.value != result.value, result.passed, result.detail


def test_cost_budget_of_priced_calls_is_their_exact_sum():
    """Two priced-1 calls through ChatClient: $0.012, within $0.02 and over $0.01."""
    run = calling(("ask", ["priced-1"]), ("answer", ["priced-1"]))
    assert Score(1.0, True, "$0.01200 of $0.02") == score(wf.evals.cost_budget(0.02), Case("c1", {}), run)
    assert Score(0.0, False, "$0.01200 of $0.01") == score(wf.evals.cost_budget(0.01), Case("c1", {}), run)


def test_cost_budget_of_a_run_that_called_an_unpriced_model_is_unscored_saying_which():
    """A run that called local-llama, which no price table knows, is not within $1 (it always
    passed, counting that call $0): unscored, neither passed nor 0, the detail naming the step and
    the model and how to price it, and what the priced attempts spent."""
    run = calling(("ask", ["priced-1"]), ("answer", ["local-llama"]))
    assert (
        True,
        False,
        f"cost unknown: step 'answer' called model 'local-llama', {PRICE_IT}, then evaluate again; "
        "$0.00600 of $1.0 in the attempts whose every call was priced",
    ) == unscored(score(wf.evals.cost_budget(1.0), Case("c1", {}), run))


def test_cost_budget_names_the_unpriced_model_of_an_attempt_that_called_a_priced_one_last():
    """One attempt called local-llama, then priced-1 (the row's model): the detail names
    local-llama, and the attempt's priced call is not counted as its cost."""
    run = calling(("ask", ["local-llama", "priced-1"]))
    assert (
        True,
        False,
        f"cost unknown: step 'ask' called model 'local-llama', {PRICE_IT}, then evaluate again; "
        "$0.00000 of $1.0 in the attempts whose every call was priced",
    ) == unscored(score(wf.evals.cost_budget(1.0), Case("c1", {}), run))


def test_cost_budget_fails_a_run_whose_priced_calls_alone_are_over():
    """$0.006 priced is over $0.005 whatever the unpriced call cost: the run fails, saying both."""
    run = calling(("ask", ["priced-1"]), ("answer", ["local-llama"]))
    assert Score(
        0.0,
        False,
        "$0.00600 of $0.005 in the attempts whose every call was priced, the others' cost unknown: step 'answer' "
        f"called model 'local-llama', {PRICE_IT}",
    ) == score(wf.evals.cost_budget(0.005), Case("c1", {}), run)


def test_cost_budget_names_every_unpriced_model_and_scores_once_they_are_priced():
    """Two unpriced models are both named ("give them a price"); priced by the client, the same
    calls cost their exact sum: 4 x 0.5 + 1 x 0.5 = $0.0025 each."""
    steps = (("ask", ["local-llama"]), ("answer", ["mistral-local"]))
    assert (
        True,
        False,
        "cost unknown: step 'ask' called model 'local-llama' and step 'answer' called model 'mistral-local', "
        "which no price table knows: give them a price (ChatClient(..., prices=...) or wf.llm.PRICES.register), "
        "then evaluate again; $0.00000 of $1.0 in the attempts whose every call was priced",
    ) == unscored(score(wf.evals.cost_budget(1.0), Case("c1", {}), calling(*steps)))
    priced = calling(*steps, prices={"local-llama": (0.5, 0.5), "mistral-local": (0.5, 0.5)})
    assert Score(1.0, True, "$0.00500 of $1.0") == score(wf.evals.cost_budget(1.0), Case("c1", {}), priced)


def test_cost_budget_of_tokens_recorded_with_no_model_nor_cost_says_to_record_the_cost():
    """A client of one's own recording tokens alone (no model, no cost): the cost is unknown, and
    the detail says which step and to record its cost_usd=, beside the model no table knows."""
    flow = wf.Workflow("own-client")

    @flow.step
    def count(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(tokens_in=3, tokens_out=1)

    @flow.step
    def local(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="local-llama", tokens_in=3)

    flow.edge("count", "local")
    assert (
        True,
        False,
        f"cost unknown: step 'local' called model 'local-llama', {PRICE_IT}; step 'count' recorded tokens with "
        "no model and no cost: record its cost_usd= with them, then evaluate again; $0.00000 of $1.0 in the "
        "attempts whose every call was priced",
    ) == unscored(score(wf.evals.cost_budget(1.0), Case("c1", {}), flow.run({})))


def test_cost_budget_names_calls_with_no_usage_apart_from_unpriced_ones_and_fails_a_run_over_already():
    """Calls whose servers sent no token usage (a client of one's own says so with ``no_usage=True``;
    ``ctx.llm`` does by itself) are named with what to do, apart from the model no table prices; a
    run whose priced calls alone are over the budget fails it all the same."""
    flow = wf.Workflow("proxied")

    @flow.step
    async def ask(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c", model="local-llama")
        await ctx.llm.complete("a b c")  # priced-1: $0.006, in an attempt whose cost is unknown

    @flow.step
    def gateway(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="proxied", no_usage=True)

    @flow.step
    def relay(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="relayed", no_usage=True)

    @flow.step
    async def answer(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c")  # priced-1: $0.006

    flow.chain("ask", "gateway", "relay", "answer")
    model = wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes")
    run = flow.run({}, llm=wf.llm.ChatClient(transport=model, model="priced-1", prices=PRICED))
    why = (
        f"step 'ask' called model 'local-llama', {PRICE_IT}; step 'gateway' called model 'proxied' and step "
        "'relay' called model 'relayed', whose servers sent no token usage with their replies, so there was "
        "nothing to price: use an endpoint or proxy that reports usage (a stream's server may ignore "
        "stream_options.include_usage: use one that honours it, or client.complete(...))"
    )
    assert (
        True,
        False,
        f"cost unknown: {why}, then evaluate again; $0.00600 of $1.0 in the attempts whose every call was priced",
    ) == unscored(score(wf.evals.cost_budget(1.0), Case("c1", {}), run))
    assert Score(
        0.0, False, f"$0.00600 of $0.005 in the attempts whose every call was priced, the others' cost unknown: {why}"
    ) == score(wf.evals.cost_budget(0.005), Case("c1", {}), run)


def test_a_custom_scorer_may_say_it_cannot_judge_with_a_nan_score_and_why():
    """Score(nan, False, why) leaves a case unscored; a NaN that passed, or says not why, is refused
    saying how a scorer says it cannot judge."""
    why = wf.evals.custom(lambda case, run: Score(float("nan"), False, "no reference"), name="why")
    assert (True, False, "no reference") == unscored(score(why, Case("c1", {}), echo(1)))
    refused = "a score's value is a number in \\[0, 1\\], got nan; a scorer that cannot judge a case returns "
    for bad in (Score(float("nan"), True, "no reference"), Score(float("nan"), False, "")):
        scorer = wf.evals.custom(lambda case, run, bad=bad: bad, name="bad")
        with pytest.raises(ValueError, match=refused + "Score\\(float\\('nan'\\), False, 'why'\\), which leaves it"):
            score(scorer, Case("c1", {}), echo(1))


# --- runs that did not succeed --------------------------------------------------------------


def crashing_flow() -> wf.Workflow:
    """classify writes the route's answer, then answer reads a key the inputs misspell and crashes."""
    flow = wf.Workflow("crashing")

    @flow.step
    def classify(state: Any) -> dict[str, Any]:
        return {"out": "refund"}

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        return {"label": state["query"]}

    flow.edge("classify", "answer")
    return flow


FAILED = (
    "run failed at step 'answer' (attempt 1): StateKeyError: the state has no field 'query': it holds ['out', "
    "'qeury'] (did you mean 'qeury'?); pass it in the run's inputs, return it from a step that runs before this "
    "one, or, if it is optional, read it with state.get('query')"
)
EXPECTED = {"out": "refund", "route": "classify", "tools": []}


@pytest.mark.parametrize(
    "scorer",
    [
        wf.evals.latency_budget(1.0),
        wf.evals.cost_budget(0.01),
        wf.evals.route_taken(),
        wf.evals.tools_used(),
        wf.evals.exact_match("out"),
        wf.evals.contains("out"),
        wf.evals.regex("out", "ref"),
        wf.evals.json_schema("out", {"type": "string"}),
        wf.evals.numeric("out", 1.0),
        wf.evals.llm_judge("is it a refund?", field="out", reference_key="out"),
    ],
    ids=lambda scorer: scorer.name,
)
def test_a_failed_run_fails_every_builtin_scorer_saying_why(scorer: Any):
    """A run that crashed after writing the right answer through the right route, in a millisecond
    and for $0, fails each built-in scorer (a crash is not "within budget"), the detail naming the
    step, the attempt and the step's error."""
    run = crashing_flow().run({"qeury": "refund"}, raise_on_error=False)
    assert "failed" == run.status
    assert Score(0.0, False, FAILED) == score(scorer, Case("c1", {}, EXPECTED), run)


def test_a_timed_out_run_fails_a_budget_naming_the_deadline():
    """A run past its deadline fails latency_budget, the detail saying it timed out where and why."""
    run = sleepy_flow(0.5).run({}, raise_on_error=False, timeout=0.05)
    assert "timed_out" == run.status
    result = score(wf.evals.latency_budget(10.0), Case("c1", {}), run)
    detail = "run timed out at step 'nap' (attempt 1): RunTimeoutError: the run's deadline of 0.05 s passed"
    assert Score(0.0, False, detail) == result


def test_a_run_halted_at_a_gate_fails_a_budget_as_unfinished():
    """A run waiting for approval has not finished: cost_budget fails it and says it is waiting."""
    flow = wf.Workflow("gated")
    flow.step(lambda state: {"paid": True}, name="pay", approval="Refunds need a human")
    run = flow.run({})
    assert "waiting_approval" == run.status
    assert Score(0.0, False, "run did not finish: it is waiting_approval") == score(
        wf.evals.cost_budget(1.0), Case("c1", {}), run
    )


def test_a_failed_run_with_a_missing_expectation_still_names_the_case():
    """A case without the expectation a scorer needs is a dataset error even when its run failed."""
    run = crashing_flow().run({}, raise_on_error=False)
    with pytest.raises(KeyError, match="case 'q7' has no expected 'route'"):
        score(wf.evals.route_taken(), Case("q7", {}), run)


def test_a_long_failure_is_cut_to_300_characters_with_an_ellipsis():
    """A step error with a very long message gives a detail of 300 characters ending in '...'."""
    flow = wf.Workflow("wordy")

    @flow.step
    def talk(state: Any) -> dict[str, Any]:
        raise ValueError("x" * 1000)

    result = score(wf.evals.cost_budget(1.0), Case("c1", {}), flow.run({}, raise_on_error=False))
    assert result.detail.startswith("run failed at step 'talk' (attempt 1): ValueError: xxx")
    assert (300, "...") == (len(result.detail), result.detail[-3:])


def test_a_custom_scorer_sees_a_failed_run_as_it_is():
    """custom scorers decide for themselves: one passing any run that ended passes a failed one."""
    run = crashing_flow().run({}, raise_on_error=False)
    ended = wf.evals.custom(lambda case, run: run.done(), name="ended")
    assert Score(1.0, True, "") == score(ended, Case("c1", {}), run)


# --- custom ---------------------------------------------------------------------------------


def test_custom_sync_function_returning_a_bool():
    """A sync function's bool becomes 1/0 with the pass flag, named after the function."""

    def is_even(case: Case, run: wf.Run) -> bool:
        return run.state["out"] % 2 == 0

    scorer = wf.evals.custom(is_even)
    assert "is_even" == scorer.name
    assert Score(1.0, True) == score(scorer, Case("c1", {}), echo(4))
    assert Score(0.0, False) == score(scorer, Case("c1", {}), echo(5))


def test_a_custom_scorer_taking_run_then_case_is_told_the_order_it_is_called_in():
    """fn(run, case), the other order, fails on each case reading run.state of the Case: the
    detail, and so check(), now say how scorers are called, where they said only "'Case' object
    has no attribute 'state'" and to fix the scorer or the dataset."""
    suite = wf.evals.Suite(
        name="swapped",
        dataset=[{"id": "c1", "inputs": {"value": 1}, "expected": {"out": 1}}],
        workflow=echo_flow,
        scorers=[wf.evals.custom(lambda run, case: run.state["out"] == case.expected["out"], name="same")],
    )
    result = wf.evals.evaluate(suite, progress=False, store=False)
    order = "(a scorer is called as fn(case, run): the first argument is the Case, the second the Run)"
    detail = f"scorer error: AttributeError: 'Case' object has no attribute 'state' {order}"
    assert [detail] == list(result.cases["detail"])
    assert [f"default: same could not score 1 of 1 cases (c1: {detail}); fix the scorer or the dataset, and evaluate "
            "again"] == result.check()  # fmt: skip


def test_a_custom_scorer_misspelling_a_case_attribute_gets_no_word_on_the_order():
    """An attribute neither a Case nor a Run has (a typo) is the scorer's own error, left as it is."""
    scorer = wf.evals.custom(lambda case, run: case.expectd["out"], name="typo")
    with pytest.raises(AttributeError) as caught:
        score(scorer, Case("c1", {}), echo(1))
    assert "fn(case, run)" not in str(caught.value)


def test_custom_float_passes_at_one_half():
    """A float is the value; it passes from 0.5 up."""
    scorer = wf.evals.custom(lambda case, run: run.state["out"], name="share")
    assert "share" == scorer.name
    assert Score(0.5, True) == score(scorer, Case("c1", {}), echo(0.5))
    assert Score(0.25, False) == score(scorer, Case("c1", {}), echo(0.25))


def test_custom_async_function_returning_a_score():
    """An async function is awaited and its Score kept as is."""

    async def judged(case: Case, run: wf.Run) -> Score:
        await asyncio.sleep(0)
        ok = run.state["out"] == case.expected["out"]
        return Score(0.9 if ok else 0.1, ok, "checked asynchronously")

    assert Score(0.9, True, "checked asynchronously") == score(
        wf.evals.custom(judged), Case("c1", {}, {"out": "a"}), echo("a")
    )
    assert Score(0.1, False, "checked asynchronously") == score(
        wf.evals.custom(judged), Case("c1", {}, {"out": "a"}), echo("b")
    )


def test_custom_numpy_scalars_score_as_the_python_numbers_they_hold():
    """A numpy bool (``np.isclose``, a comparison of pandas values) or float32 (an embedding's
    cosine similarity) scores as the bool or float it holds: they were refused as "not a Score, a
    float or a bool", so every case of such a scorer was unscored."""
    import numpy as np

    same = wf.evals.custom(lambda case, run: np.isclose(run.state["out"], 0.5), name="close")
    assert Score(1.0, True) == score(same, Case("c1", {}), echo(0.5))
    assert Score(0.0, False) == score(same, Case("c1", {}), echo(0.7))
    cosine = wf.evals.custom(lambda case, run: np.float32(run.state["out"]), name="cosine")
    assert Score(0.75, True) == score(cosine, Case("c1", {}), echo(0.75))
    assert Score(1.0, True) == score(wf.evals.custom(lambda case, run: np.int64(1)), Case("c1", {}), echo(1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score(wf.evals.custom(lambda case, run: np.float64("nan")), Case("c1", {}), echo(1))
    with pytest.raises(TypeError, match="a scorer returns a Score, a float in"):  # an array is no one score
        score(wf.evals.custom(lambda case, run: np.array([0.5])), Case("c1", {}), echo(1))


@pytest.mark.parametrize("bad", ["yes", None, [1.0], {"value": 1}])
def test_custom_bad_return_type_is_a_type_error(bad: Any):
    """A custom scorer returning something other than a Score, a float or a bool raises TypeError."""
    with pytest.raises(TypeError, match="a scorer returns a Score, a float in"):
        score(wf.evals.custom(lambda case, run: bad), Case("c1", {}), echo(1))


def test_custom_out_of_range_float_is_refused():
    """A float outside [0, 1] (say a 0-10 grade) is refused, as the scorer contract says [0, 1]."""
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score(wf.evals.custom(lambda case, run: 5), Case("c1", {}), echo(1))


# --- llm_judge ------------------------------------------------------------------------------


def test_llm_judge_offline_scores_a_close_answer_high():
    """The offline judge (simulated model, word overlap) passes an answer close to the reference."""
    case = Case("c1", {}, {"answer": "Your refund has been processed."})
    flow = wf.Workflow("answerer")

    @flow.step
    def reply(state: Any) -> dict[str, Any]:
        return {"answer": state["text"]}

    exact = score(wf.evals.llm_judge("Same meaning?"), case, flow.run({"text": "Your refund has been processed."}))
    assert Score(1.0, True, "Score: 10") == exact
    close = score(wf.evals.llm_judge("Same meaning?"), case, flow.run({"text": "your refund was processed"}))
    assert Score(0.6, True, "Score: 6") == close


def test_llm_judge_offline_scores_an_unrelated_answer_low():
    """The offline judge fails an answer sharing no words with the reference."""
    flow = wf.Workflow("answerer")

    @flow.step
    def reply(state: Any) -> dict[str, Any]:
        return {"answer": "The weather in Lisbon is sunny today."}

    case = Case("c1", {}, {"answer": "Your refund has been processed."})
    assert Score(0.0, False, "Score: 0") == score(wf.evals.llm_judge("Same meaning?"), case, flow.run({}))


def test_llm_judge_offline_scores_a_missing_field_zero():
    """A run without the graded field gives the judge an empty answer, which scores 0."""
    case = Case("c1", {}, {"answer": "Your refund has been processed."})
    assert Score(0.0, False, "Score: 0") == score(wf.evals.llm_judge("Same meaning?"), case, echo("x"))


def test_llm_judge_reads_another_field_and_reference_key():
    """field and reference_key choose what is graded against what."""
    case = Case("c1", {}, {"reply": "use the reset link"})
    judge = wf.evals.llm_judge("Helpful?", field="out", reference_key="reply")
    assert score(judge, case, echo("Please use the reset link we sent")).passed


def test_llm_judge_with_a_chat_client_score_three_is_point_three():
    """A judge model replying 'Score: 3' gives 0.3, which does not pass at pass_at=0.6."""
    client = wf.llm.ChatClient(transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=0, reply="Score: 3"))
    judge = wf.evals.llm_judge("Polite?", field="out", client=client, pass_at=0.6)
    assert Score(0.3, False, "Score: 3") == score(judge, Case("c1", {}, {"answer": "hello"}), echo("hello"))


def test_llm_judge_pass_at_is_inclusive():
    """A score equal to pass_at passes."""
    client = wf.llm.ChatClient(transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=0, reply="Score: 3"))
    judge = wf.evals.llm_judge("Polite?", field="out", client=client, pass_at=0.3)
    assert score(judge, Case("c1", {}), echo("hello")).passed


def judge_replying(reply: str) -> Any:
    """An llm_judge whose model (simulated, offline) always replies ``reply``."""
    client = wf.llm.ChatClient(transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=0, reply=reply))
    return wf.evals.llm_judge("Polite?", field="out", client=client)


def test_llm_judge_reads_the_score_the_reply_gives_not_its_first_number():
    """A judge reasoning before its score ("On a scale of 0 to 10 ... Score: 7") gives 0.7: the
    first number of the reply was read, 0, a failing case. A reply of a number alone, or N/10, is
    that number."""
    case = Case("c1", {})
    reasoned = "On a scale of 0 to 10, it greets the user in 2 words. Score: 7"
    assert 0.7 == score(judge_replying(reasoned), case, echo("hello")).value
    assert 0.8 == score(judge_replying("8/10"), case, echo("hello")).value
    assert 0.6 == score(judge_replying(" 6 "), case, echo("hello")).value


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("I cannot grade this.", r"the judge gave no score \('Score: N', N from 0 to 10\): 'I cannot grade this\.'"),
        ("Score: 85", r"the judge's score 85 is not from 0 to 10: 'Score: 85'"),
    ],
)
def test_llm_judge_reply_without_a_score_from_0_to_10_scores_nothing(reply: str, why: str):
    """A judge reply with no score, or one off the 0-10 scale (a judge grading out of 100), is the
    judge's failure, not the workflow's: the scorer raises, so an eval leaves the case unscored
    (NaN, the reply in its detail). The first scored 0, a failing case; the second 1.0, a pass."""
    with pytest.raises(ValueError, match=why):
        score(judge_replying(reply), Case("c1", {}), echo("hello"))
    suite = wf.evals.Suite(
        name="judged", dataset=[{"id": "c1", "value": "hi"}], workflow=echo_flow(), scorers=[judge_replying(reply)]
    )
    summary = wf.evals.evaluate(suite, progress=False, store=False).summary.iloc[0]
    assert [1, 1] == summary[["cases", "unscored"]].tolist()


def test_scorer_names_and_reprs():
    """Every scorer has a stable default name (used as the results' scorer column) and a repr."""
    names = [
        wf.evals.exact_match("a").name,
        wf.evals.contains("a").name,
        wf.evals.regex("a", "x").name,
        wf.evals.json_schema("a", {}).name,
        wf.evals.numeric("a").name,
        wf.evals.route_taken().name,
        wf.evals.tools_used().name,
        wf.evals.latency_budget(1).name,
        wf.evals.cost_budget(1).name,
        wf.evals.llm_judge("r").name,
        wf.evals.exact_match("a", name="mine").name,
    ]
    assert [
        "exact_match:a",
        "contains:a",
        "regex:a",
        "json_schema:a",
        "numeric:a",
        "route_taken",
        "tools_used",
        "latency_budget",
        "cost_budget",
        "llm_judge",
        "mine",
    ] == names
    assert "<scorer route_taken>" == repr(wf.evals.route_taken())


def test_contains_leaves_a_case_whose_expected_text_is_empty_unscored(tmp_path: Any) -> None:
    """A sheet's empty ``expected.out`` cell is the empty text, which every answer contains: that
    case passed whatever the workflow said. It is now left unscored (NaN, not passed) saying why,
    the others scored as before; and ``contains(field, expected="")`` is refused when it is built."""
    path = tmp_path / "cases.csv"
    path.write_text("id,value,expected.out\nq1,refund due,refund\nq2,anything at all,\nq3,no luck,refund\n")
    suite = wf.evals.Suite(name="sheet", dataset=path, workflow=echo_flow(), scorers=[wf.evals.contains("out")])
    cases = wf.evals.evaluate(suite, progress=False, store=False).cases.set_index("case_id")
    assert [1.0, 0.0] == cases.loc[["q1", "q3"], "value"].tolist()
    q2 = cases.loc["q2"]
    assert (True, False) == (q2["value"] != q2["value"], q2["passed"])  # NaN: unscored, not a pass
    assert q2["detail"].startswith(
        "case 'q2' expects 'out' to contain '', which every text does, so nothing was checked"
    )
    with pytest.raises(ValueError, match=r"contains\('out', expected=''\) passes any text: give the text to look for"):
        wf.evals.contains("out", "")
