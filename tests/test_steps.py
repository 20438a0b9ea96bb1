"""Unit tests for wfkit.model._steps: make_spec and StepSpec."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest

from wfkit.model._retry import NO_RETRY, RetryPolicy, classify_error
from wfkit.model._steps import StepSpec, code_hash, make_spec


def spec(fn: Any, **overrides: Any) -> StepSpec:
    """make_spec with every option at its Workflow.step default unless overridden."""
    options: dict[str, Any] = {
        "name": None,
        "retry": None,
        "timeout": None,
        "max_visits": None,
        "fallback": None,
        "classifier": None,
        "tools": (),
    }
    options.update(overrides)
    return make_spec(fn, **options)


def sync_one(state):
    """Classify the query."""
    return {}


def sync_two(state, ctx):
    return {}


async def async_one(state):
    return {}


async def async_two(state, ctx):
    return {}


# --- sync / async and arity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "is_async", "takes_context"),
    [(sync_one, False, False), (sync_two, False, True), (async_one, True, False), (async_two, True, True)],
    ids=["sync-state", "sync-state-ctx", "async-state", "async-state-ctx"],
)
def test_detects_async_and_context(fn, is_async, takes_context):
    """make_spec tells sync from async functions and (state) from (state, ctx) ones."""
    s = spec(fn)
    assert (is_async, takes_context) == (s.is_async, s.takes_context)
    assert fn is s.fn


def test_optional_parameters_do_not_count():
    """Parameters with defaults are not required, so (state, ctx=None) takes only the state."""

    def step(state, ctx=None, *, verbose=False):
        return {}

    assert not spec(step).takes_context


def test_keyword_only_parameters_do_not_count():
    """A keyword-only parameter beside (state, ctx) does not change the arity."""

    def step(state, ctx, *, extra=1):
        return {}

    assert spec(step).takes_context


def test_bound_method_arity_ignores_self():
    """A bound method's self is not counted: (self, state, ctx) is the full form."""

    class Agent:
        def run(self, state, ctx):
            return {}

        def plain(self, state):
            return {}

    agent = Agent()
    assert spec(agent.run).takes_context
    assert not spec(agent.plain).takes_context


def test_partial_arity_counts_remaining_arguments():
    """A functools.partial counts only the arguments it leaves unbound."""

    def step(prompt, state, ctx):
        return {}

    s = spec(functools.partial(step, "You are terse."), name="answer")
    assert s.takes_context
    assert not s.is_async


def test_async_partial_is_async():
    """A functools.partial of an async function is detected as async."""
    s = spec(functools.partial(async_two), name="answer")
    assert s.is_async


def test_callable_object_with_name():
    """A callable object is a valid step when given a name; its __call__ arity is used."""

    class Classifier:
        def __call__(self, state):
            return {}

    s = spec(Classifier(), name="classify")
    assert ("classify", False, False) == (s.name, s.is_async, s.takes_context)


def test_callable_object_with_async_call_is_async():
    """An object whose __call__ is async is detected as an async step."""

    class AsyncClassifier:
        async def __call__(self, state):
            return {}

    assert spec(AsyncClassifier(), name="classify").is_async


@pytest.mark.parametrize("arity", [0, 3, 4])
def test_wrong_arity_rejected_with_clear_message(arity):
    """A function taking neither (state) nor (state, ctx) raises TypeError saying what it takes."""
    names = ", ".join(f"a{i}" for i in range(arity))
    namespace: dict[str, Any] = {}
    exec(f"def summarise({names}):\n    return {{}}", namespace)
    with pytest.raises(
        TypeError,
        match=rf"step 'summarise' must take \(state\) or \(state, ctx\), but its function takes "
        rf"{arity} required positional arguments",
    ):
        spec(namespace["summarise"])


def test_a_map_function_of_the_wrong_arity_is_told_it_takes_an_item() -> None:
    """@flow.map over a (state, doc, ctx) function was told it "must take (state) or (state, ctx)",
    which is a plain step's form: a map's function takes (item) or (item, ctx), and reads the state
    as ctx.state. So it says, in code and in a flow spec."""
    import wfkit as wf

    flow = wf.Workflow("mapper", inputs=["docs"])
    said = (
        r"map step 'summarise' must take \(item\) or \(item, ctx\), but its function takes 3 required "
        r"positional arguments \(state, doc, ctx\); it is called once per item of the list it maps over, "
        r"and reads the state as ctx.state"
    )

    def summarise(state: Any, doc: Any, ctx: Any) -> Any:
        return doc

    with pytest.raises(TypeError, match=said):
        flow.map(summarise, over="docs", into="summaries")
    with pytest.raises(TypeError, match=r"step 'summarise' must take \(state\) or \(state, ctx\)"):
        flow.step(summarise)
    spec_data = {
        "wfkit_flow": 1,
        "name": "mapper",
        "inputs": ["docs"],
        "entry": "summarise",
        "steps": {"summarise": {"fn": "summarise", "map": {"over": "docs", "into": "summaries"}}},
    }
    with pytest.raises(wf.WorkflowDefinitionError, match=r"\$\.steps\.summarise: " + said):
        wf.Workflow.from_spec(spec_data, steps={"summarise": summarise})

    def upper(doc: Any) -> Any:
        return doc.upper()

    flow.map(upper, over="docs", into="uppers")
    assert ["A", "B"] == flow.run({"docs": ["a", "b"]}, workspace=False).state["uppers"]


def test_three_argument_function_rejected():
    """A (state, ctx, extra) function raises TypeError naming the step and the expected forms."""

    def route(state, ctx, extra):
        return {}

    with pytest.raises(TypeError, match=r"step 'route' must take \(state\) or \(state, ctx\)"):
        spec(route)


def test_three_argument_function_with_default_is_accepted():
    """A third parameter with a default is fine: only required ones count."""

    def route(state, ctx, extra=None):
        return {}

    assert spec(route).takes_context


def test_arity_error_uses_the_given_name():
    """The arity error names the step by the name it was given, not the function's."""

    def helper(a, b, c):
        return {}

    with pytest.raises(TypeError, match=r"step 'pick_tool' must take"):
        spec(helper, name="pick_tool")


def test_builtin_without_signature_is_assumed_to_take_context():
    """A callable whose signature cannot be read is assumed to take (state, ctx)."""
    s = spec(max, name="biggest")  # inspect.signature(max) raises ValueError
    assert ("biggest", True, False) == (s.name, s.takes_context, s.is_async)


# --- names --------------------------------------------------------------------------------------


def test_name_defaults_to_function_name():
    """Without name= the step is named after its function."""
    assert "sync_one" == spec(sync_one).name


def test_explicit_name_wins():
    """name= overrides the function's own name."""
    assert "classify" == spec(sync_one, name="classify").name


def test_lambda_without_name_rejected():
    """A lambda without name= raises TypeError asking for name='...'."""
    with pytest.raises(TypeError, match=r"a step needs a name: pass name='...' for lambdas"):
        spec(lambda state: {})


def test_lambda_with_name_accepted():
    """A lambda with name= is a valid step."""
    s = spec(lambda state: {"n": 1}, name="count")
    assert ("count", False) == (s.name, s.takes_context)


def test_nameless_callable_rejected():
    """A callable object without __name__ and without name= raises TypeError asking for one."""

    class Step:
        def __call__(self, state):
            return {}

    with pytest.raises(TypeError, match=r"pass name='...' for lambdas and callables"):
        spec(Step())


def test_empty_name_rejected_for_nameless_callable():
    """name='' counts as no name."""
    with pytest.raises(TypeError, match="a step needs a name"):
        spec(lambda state: {}, name="")


@pytest.mark.parametrize("fn", ["classify", None, 3])
def test_non_callable_rejected(fn):
    """Something that is not callable raises TypeError saying a step must be a function."""
    with pytest.raises(TypeError, match=r"a step must be a function, got"):
        spec(fn, name="x")


# --- options ------------------------------------------------------------------------------------


def test_defaults():
    """Without options a step has no retries, no timeout, no visit bound and no fallback."""
    s = spec(sync_one)
    assert NO_RETRY is s.retry
    assert (None, None, None, None, ()) == (s.timeout, s.max_visits, s.fallback, s.classifier, s.tools)


def test_options_are_kept():
    """Given options are stored on the spec unchanged."""
    policy = RetryPolicy(max_retries=2)
    s = spec(
        sync_two,
        retry=policy,
        timeout=1.5,
        max_visits=3,
        fallback="apologise",
        classifier=classify_error,
        tools=("search",),
    )
    assert (policy, 1.5, 3, "apologise", classify_error, ("search",)) == (
        s.retry,
        s.timeout,
        s.max_visits,
        s.fallback,
        s.classifier,
        s.tools,
    )


def test_description_is_first_docstring_line():
    """The description is the first line of the function's docstring, or empty without one."""

    def step(state):
        """Pick a tool.

        Longer explanation.
        """
        return {}

    assert "Pick a tool." == spec(step).description
    assert "" == spec(sync_two).description


@pytest.mark.parametrize("timeout", [0, -1, -0.5, float("nan")])
def test_non_positive_timeout_rejected(timeout):
    """A timeout that is not > 0 raises ValueError naming the step and the rule."""
    with pytest.raises(ValueError, match=r"step 'sync_one': timeout must be > 0 seconds, got"):
        spec(sync_one, timeout=timeout)


def test_non_numeric_timeout_rejected_with_clear_message():
    """A non-numeric timeout raises an error naming the step and the timeout option."""
    with pytest.raises((TypeError, ValueError), match=r"step 'sync_one': timeout must be"):
        spec(sync_one, timeout="5")


@pytest.mark.parametrize(
    ("timeout", "hint"),
    [
        ("5", r"got '5' \(str\): pass timeout=5 \(a number of seconds, not a string\)"),
        ("0.5", r"got '0.5' \(str\): pass timeout=0.5 "),
        ("soon", r"got 'soon' \(str\)$"),
        (True, r"got True \(bool\): a bool is no duration; pass seconds \(timeout=1 for one second\)"),
        (False, r"got False \(bool\)"),
    ],
)
def test_a_string_or_bool_timeout_is_a_type_error_saying_what_to_pass(timeout: Any, hint: str) -> None:
    """A step's `timeout="5"` was refused as a ValueError "must be > 0" only by chance (the comparison
    failed), and `timeout=True` likewise: both are now a TypeError naming the step and saying to pass
    seconds as a number or a timedelta."""
    with pytest.raises(TypeError, match=r"^step 'sync_one': timeout must be seconds, as a number or a "
                       r"datetime.timedelta, " + hint):  # fmt: skip
        spec(sync_one, timeout=timeout)


def test_an_infinite_timeout_is_refused_saying_to_leave_it_unset() -> None:
    """`timeout=float("inf")` was taken, and `flow.save` then wrote `.inf` to the spec, which the spec
    loader refuses: it is now refused where it is given, saying how to ask for no limit."""
    with pytest.raises(ValueError, match=r"^step 'sync_one': timeout must be a finite number of seconds, got inf: "
                       r"leave the timeout unset \(None\) for no time limit$"):  # fmt: skip
        spec(sync_one, timeout=float("inf"))
    assert spec(sync_one, timeout=None).timeout is None


@pytest.mark.parametrize("max_visits", [0, -1, 1.5, "3"])
def test_bad_max_visits_rejected(max_visits):
    """max_visits that is not an int >= 1 raises ValueError naming the step and the rule."""
    with pytest.raises(ValueError, match=r"step 'sync_one': max_visits must be an int >= 1, got"):
        spec(sync_one, max_visits=max_visits)


def test_max_visits_one_is_valid():
    """max_visits=1 (run once, never loop back) is allowed."""
    assert 1 == spec(sync_one, max_visits=1).max_visits


@pytest.mark.parametrize("retry", [3, {"max_retries": 3}, "3"])
def test_bad_retry_type_rejected(retry):
    """retry that is not a RetryPolicy raises TypeError asking for wfkit.RetryPolicy."""
    with pytest.raises(TypeError, match=r"step 'sync_one': retry must be a wfkit.RetryPolicy, got"):
        spec(sync_one, retry=retry)


# --- StepSpec -----------------------------------------------------------------------------------


def test_describe_gives_behaviour_as_plain_data():
    """describe() lists the behaviour-defining options as plain data."""
    policy = RetryPolicy(
        max_retries=2,
        base_delay=0.5,
        max_delay=5.0,
        backoff_factor=3.0,
        jitter=0.1,
        max_elapsed=None,
        max_unknown_retries=0,
    )
    s = spec(
        async_two,
        name="answer",
        retry=policy,
        timeout=10.0,
        max_visits=4,
        fallback="sorry",
        tools=("search", "calc"),
    )
    expected = {
        "name": "answer",
        "async": True,
        "retry": [2, 0.5, 5.0, 3.0, 0.1, None, 0],
        "timeout": 10.0,
        "max_visits": 4,
        "fallback": "sorry",
        "tools": ["search", "calc"],
        "approval": None,
        "irreversible": False,
        "code": code_hash(async_two),
    }
    assert expected == s.describe()


def test_spec_is_immutable():
    """A StepSpec is frozen."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec(sync_one).timeout = 3.0  # type: ignore[misc]


def test_code_hash_follows_behaviour_not_location():
    """Two functions with the same body hash alike; a changed body hashes differently."""

    def first(state):
        return {"x": 1}

    def second(state):
        return {"x": 1}

    def changed(state):
        return {"x": 2}

    assert code_hash(first) == code_hash(second)
    assert code_hash(first) != code_hash(changed)


def test_make_map_refuses_same_field_and_bad_concurrency() -> None:
    """into must differ from over; max_concurrency is an int >= 1; names are strings."""
    from wfkit.model._steps import make_map

    with pytest.raises(ValueError, match="into= must differ"):
        make_map("docs", "docs", None)
    with pytest.raises(ValueError, match="max_concurrency must be an int >= 1"):
        make_map("docs", "out", 0)
    with pytest.raises(TypeError, match="map over= takes a state field name"):
        make_map("", "out", None)
    assert "out" == make_map("docs", "out", 3).into


def test_writes_takes_field_names() -> None:
    """writes= is a list of non-empty names (a single string counts as one name)."""
    spec = make_spec(
        lambda s: None,
        name="s",
        retry=None,
        timeout=None,
        max_visits=None,
        fallback=None,
        classifier=None,
        tools=(),
        writes="docs",
    )
    assert frozenset({"docs"}) == spec.writes
    with pytest.raises(TypeError, match="writes= takes state field names"):
        make_spec(
            lambda s: None,
            name="s",
            retry=None,
            timeout=None,
            max_visits=None,
            fallback=None,
            classifier=None,
            tools=(),
            writes=[""],
        )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, False),
        ({"approval": "a human checks the refund"}, True),
        ({"irreversible": True}, True),
        ({"approval": "both", "irreversible": True}, True),
    ],
)
def test_gated_is_true_for_an_approval_or_an_irreversible_step(overrides, expected):
    """A step is gated when it has an approval or is irreversible, and only then."""
    assert expected == spec(sync_one, **overrides).gated


def test_gated_is_worked_out_again_when_the_spec_is_replaced():
    """dataclasses.replace (how the workflow adds a map or a subflow) recomputes gated."""
    plain = spec(sync_one)
    assert (True, False) == (dataclasses.replace(plain, irreversible=True).gated, plain.gated)
    gated = spec(sync_one, approval="check")
    assert (False, True) == (dataclasses.replace(gated, approval=None).gated, gated.gated)


def test_gated_is_derived_not_an_option():
    """gated cannot be passed or assigned, and stays out of repr, equality and describe()."""
    s = spec(sync_one, irreversible=True)
    with pytest.raises(TypeError):
        StepSpec(name="x", fn=sync_one, is_async=False, takes_context=False, gated=False)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.gated = False  # type: ignore[misc]
    assert "gated" not in repr(s)
    assert "gated" not in s.describe()
    assert dataclasses.replace(s) == s


# --- inline steps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "options", "inline"),
    [
        (async_one, {}, True),
        (async_one, {"retry": RetryPolicy(max_retries=2)}, True),
        (async_two, {}, False),
        (sync_one, {}, False),
        (async_one, {"timeout": 1.0}, True),
        (async_one, {"cache": True}, False),
        (async_one, {"writes": ["x"]}, False),
        (async_one, {"irreversible": True}, False),
    ],
    ids=["plain", "retried", "takes-ctx", "sync", "timeout", "cache", "writes", "irreversible"],
)
def test_inline_only_for_plain_async_steps(fn, options, inline):
    """A step is inline only when async, without a context, cache, declared writes or gate (a
    timeout it may have: the scheduler awaits it under it)."""
    assert inline == spec(fn, **options).inline


def test_inline_is_worked_out_again_by_replace():
    """dataclasses.replace of an inline spec with declared writes gives a spec that is not inline."""
    declared = dataclasses.replace(spec(async_one), writes=frozenset({"x"}))
    assert (True, False) == (spec(async_one).inline, declared.inline)
