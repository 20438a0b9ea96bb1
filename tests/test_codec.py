"""The state encoding: every type a step may reasonably return comes back as it went in, the rest
is refused (in memory and durable alike), and big values warn once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid
import warnings
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wfkit as wf
from wfkit.store._codec import check_state, decode_state, encode_state, state_type


def round_trip(values: dict[str, Any]) -> Any:
    return decode_state(encode_state("test wrote", values))


# Values a step may return: scalars, dates, decimals, bytes, and containers of them (keys of every
# hashable kind). NaN is left out only because it never equals itself.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=20)
    | st.dates()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.times()
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.uuids()
)
_keys = st.text() | st.integers() | st.tuples(st.integers(), st.text()) | st.booleans() | st.none()
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_keys, inner, max_size=4)
        | st.frozensets(st.integers() | st.text(), max_size=4)
        | st.sets(st.integers() | st.text() | st.tuples(st.integers()), max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text().filter(lambda k: k != "__wf__"), _values, max_size=5))
def test_state_round_trips_with_its_types(values: dict[str, Any]) -> None:
    """Whatever a step returns of these types decodes equal, with the same types all the way down."""
    back = round_trip(values)
    assert values == back
    assert _types(values) == _types(back)


def _types(value: Any) -> Any:
    """The type tree of a value (equality alone would let a tuple pass for a list)."""
    if isinstance(value, dict):
        return ("dict", sorted((repr(_types(k)), repr(_types(v))) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_types(v) for v in value])
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted(repr(_types(v)) for v in value))
    if isinstance(value, dt.datetime):
        return ("datetime", str(value.utcoffset()))
    return type(value).__name__


def test_the_cases_the_issue_names_keep_their_types() -> None:
    """A tuple stays a tuple, {1: 'a'} keeps its int key, an aware datetime keeps its zone."""
    when = dt.datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Paris"))
    values = {
        "pair": (1, "a"),
        "by_id": {1: "a"},
        "when": when,
        "day": dt.date(2026, 1, 2),
        "price": decimal.Decimal("19.90"),
        "blob": b"\x00\xff",
        "tags": {"a", "b"},
        "id": uuid.UUID(int=7),
        "tricky": {"__wf__": "not a tag"},
    }
    back = round_trip(values)
    assert values == back
    assert (tuple, int, "Europe/Paris") == (
        type(back["pair"]),
        type(next(iter(back["by_id"]))),
        back["when"].tzinfo.key,
    )


@state_type
@dataclasses.dataclass(frozen=True)
class Order:
    """A dataclass allowed in state."""

    id: int
    placed: dt.date
    lines: tuple[str, ...]


@dataclasses.dataclass
class NotAllowed:
    """A dataclass nobody registered."""

    x: int


def test_an_allowed_dataclass_round_trips() -> None:
    """A dataclass registered with wf.state_type is stored by its fields and rebuilt on decode."""
    order = Order(7, dt.date(2026, 1, 2), ("a", "b"))
    assert {"order": order} == round_trip({"order": order})


def test_a_dataclass_nobody_allowed_is_refused_saying_how() -> None:
    """An unregistered dataclass is refused with the field, the class and @wfkit.state_type as the fix."""
    with pytest.raises(wf.StateValueError, match=r"state field 'x' = .*NotAllowed.*@wfkit.state_type"):
        encode_state("step 'a' wrote", {"x": NotAllowed(1)})


def test_decoding_a_class_this_process_has_not_allowed_says_so() -> None:
    """State naming a class that is not registered here is refused on decode, naming it."""
    text = '{"o": {"__wf__": "dataclass", "type": "elsewhere:Gone", "v": {}}}'
    with pytest.raises(wf.StateValueError, match=r"elsewhere:Gone.*@wfkit.state_type"):
        decode_state(text)


def test_state_type_takes_only_dataclasses_and_models() -> None:
    """state_type refuses a plain class with a TypeError."""
    with pytest.raises(TypeError, match="dataclass or a pydantic model"):
        state_type(int)


def test_a_value_of_an_unknown_type_is_refused_before_the_step_is_accepted_in_memory_too() -> None:
    """The same rule in memory as durable: the step fails naming its field, its state is unchanged."""
    flow = wf.Workflow("refuse-everywhere")
    flow.step(lambda s: {"fine": 1}, name="a")
    flow.step(lambda s: {"bad": object()}, name="b")
    flow.chain("a", "b")
    for workspace in (None, False):
        run = flow.run({}, workspace=workspace, raise_on_error=False)
        assert ("failed", {"fine": 1}) == (run.status, run.state)
        assert "step 'b' wrote state field 'bad' = builtins.object" in str(run.error.__cause__)  # type: ignore[union-attr]


def test_typed_state_survives_a_resume(workspace: Path) -> None:
    """A durable run halted at a gate resumes with a tuple, an int-keyed dict and a datetime intact."""
    flow = wf.Workflow("typed-resume")
    seen: list[Any] = []

    @flow.step
    def make(state: Any) -> dict[str, Any]:
        return {"pair": (1, 2), "by_id": {1: "a"}, "at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)}

    @flow.step(approval="check")
    def use(state: Any) -> None:
        seen.append((state["pair"], state["by_id"], state["at"]))

    flow.chain("make", "use")
    run = flow.run({}, policy="halt")
    wf.Workspace().approve(run.tickets()[0], by="ana", resume=False)
    flow.resume(run.run_id)
    assert [((1, 2), {1: "a"}, dt.datetime(2026, 1, 2, tzinfo=dt.UTC))] == seen


def test_a_large_value_warns_once_with_its_field_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over $WFKIT_STATE_WARN_BYTES a field warns once (naming it and its size), not on every write."""
    monkeypatch.setenv("WFKIT_STATE_WARN_BYTES", "1000")
    with pytest.warns(wf.StateSizeWarning, match=r"step 'big' wrote state field 'blob' of 4.9 KB.*WFKIT_STATE_WARN"):
        encode_state("step 'big' wrote", {"blob": "x" * 5000, "small": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_state("step 'big' wrote", {"blob": "y" * 5000})
        check_state("step 'big' wrote", {"blob": "y" * 5000})


def test_a_large_value_warns_in_memory_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The size warning follows the same rule for runs kept in memory."""
    monkeypatch.setenv("WFKIT_STATE_WARN_BYTES", "1000")
    with pytest.warns(wf.StateSizeWarning, match="state field 'huge'"):
        check_state("step 'memory' wrote", {"huge": ["z" * 600, "z" * 600]})


def test_a_bad_size_setting_says_what_it_wants(monkeypatch: pytest.MonkeyPatch) -> None:
    """$WFKIT_STATE_WARN_BYTES that is not a number is a ValueError naming the variable."""
    monkeypatch.setenv("WFKIT_STATE_WARN_BYTES", "lots")
    with pytest.raises(ValueError, match="WFKIT_STATE_WARN_BYTES must be a number"):
        encode_state("step 'x' wrote", {"a": 1})


def test_garbage_is_a_value_error() -> None:
    """Text that is not the encoding raises ValueError (the store turns it into StoreCorruptError)."""
    with pytest.raises(ValueError):
        decode_state('{"a": 1,, }')
    with pytest.raises(ValueError, match="unknown tag 'martian'"):
        decode_state('{"a": {"__wf__": "martian", "v": 1}}')


# JSON as json.dumps writes it: the encoders made once must not change a byte of what is stored.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
@settings(max_examples=300, deadline=None)
def test_an_encoder_made_once_writes_what_json_dumps_writes(value: Any) -> None:
    """Compact, ASCII or not, keys sorted or not, NaN and infinities allowed: the same text."""
    import json

    from wfkit.store._codec import json_encoder

    for options in (
        {"separators": (",", ":")},
        {"separators": (",", ":"), "ensure_ascii": False},
        {"separators": (", ", ": "), "sort_keys": True, "default": repr},
    ):
        assert json.dumps(value, **options) == json_encoder(**options)(value)  # type: ignore[arg-type]


def test_an_encoder_made_once_refuses_what_json_refuses() -> None:
    """A value JSON cannot hold is the TypeError json.dumps raises; with ``default`` it is what that makes of it."""
    from wfkit.store._codec import json_encoder

    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        json_encoder()({"x": object()})
    assert '{"x": "<wf>"}' == json_encoder(separators=(", ", ": "), default=lambda v: "<wf>")({"x": object()})


def test_without_json_speedups_the_encoder_is_jsons_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter whose json has no C encoder (or another signature for it) gets the same text."""
    import json

    from wfkit.store._codec import json_encoder

    value = {"b": [1, 2.5, float("nan"), None], "a": "é"}
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    assert json.dumps(value, sort_keys=True, default=repr) == json_encoder(
        separators=(", ", ": "), sort_keys=True, default=repr
    )(value)


def test_the_parameters_hash_of_inputs_is_the_one_earlier_versions_stored() -> None:
    """Runs are compared by the hash of their inputs across versions: its text must never change."""
    from wfkit.engine._workflow import _parameters_hash

    inputs = {"question": "why é?", "n": 3, "ratio": 0.1, "tags": ["a", "b"], "nested": {"z": None, "a": True}}
    assert "36a8018d05aeb122" == _parameters_hash(inputs)  # sha256 of json.dumps(inputs, sort_keys=True, default=repr)


def test_inputs_that_refer_to_themselves_are_refused_before_they_are_hashed() -> None:
    """A cycle in a run's inputs is a StateValueError naming it, in memory and durable alike."""
    inputs: dict[str, Any] = {"a": []}
    inputs["a"].append(inputs)
    flow = wf.Workflow("cyclic-inputs")
    flow.step(lambda s: None, name="only")
    for workspace in (False, None):
        with pytest.raises(wf.StateValueError, match="refers to itself"):
            flow.run(inputs, workspace=workspace)


def test_a_setting_reads_the_environment_as_it_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """``setting`` is ``os.environ.get``: a variable set, changed or removed is seen at once."""
    import os

    from wfkit.model._environ import setting

    monkeypatch.delenv("WFKIT_TEST_SETTING", raising=False)
    assert setting("WFKIT_TEST_SETTING") is None
    monkeypatch.setenv("WFKIT_TEST_SETTING", "12 é")
    assert "12 é" == setting("WFKIT_TEST_SETTING") == os.environ.get("WFKIT_TEST_SETTING")
    monkeypatch.setenv("WFKIT_TEST_SETTING", "13")
    assert "13" == setting("WFKIT_TEST_SETTING")
    monkeypatch.delenv("WFKIT_TEST_SETTING")
    assert setting("WFKIT_TEST_SETTING") is None


@pytest.mark.parametrize("durable", [False, True])
def test_a_call_not_awaited_is_named_as_such(durable: bool, workspace: Path) -> None:
    """`reply = ctx.llm.complete(...)` without await (in an async step, or in a plain def step, which
    cannot await) put a coroutine in the state, refused as "builtins.coroutine, which run state cannot
    keep ...; return plain data", and Python warned "coroutine ... was never awaited" besides. The
    refusal now says it is a call not awaited and how to write it; the coroutine is closed."""
    flow = wf.Workflow("forgetful")

    @flow.step
    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        reply = ctx.llm.complete("Classify: refund")
        return {"reply": reply}

    plain = wf.Workflow("plain-forgetful")

    @plain.step(tools=["web_search"])
    def look(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"hits": [ctx.tool("web_search", query="x")]}

    said = (
        "step '{step}' wrote state field '{field}'{at} = a coroutine of {call}(), a call it did not await: write "
        "`await` before the call, in a step written as `async def` (a plain `def` step cannot await), and store "
        "what it returns"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine ... was never awaited" either
        run = flow.run({}, workspace=None if durable else False, raise_on_error=False)
        found = plain.run(
            {}, workspace=None if durable else False, raise_on_error=False, tools=wf.llm.example_registry()
        )
        import gc

        gc.collect()
    assert said.format(step="ask", field="reply", at="", call="BoundChatClient.complete") in str(run.error)
    assert said.format(step="look", field="hits", at=" at hits[0]", call="StepContext.tool") in str(found.error)


def test_a_large_value_a_step_wrote_warns_at_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the step's function, the size warning points at its def (decorators, partials and
    objects with __call__ seen through), and at the caller's line for what has no Python code."""
    import functools
    import inspect

    from wfkit.model._warn import site_of

    monkeypatch.setenv("WFKIT_STATE_WARN_BYTES", "1000")

    def fetch(state: Any, page: int = 1) -> dict[str, Any]:
        return {}

    with pytest.warns(wf.StateSizeWarning) as caught:
        encode_state("step 'fetch' wrote", {"pages": "x" * 5000}, fetch)
    (warned,) = caught
    assert (__file__, inspect.getsourcelines(fetch)[1]) == (warned.filename, warned.lineno)

    class Caller:
        def __call__(self, state: Any) -> dict[str, Any]:
            return {}

    assert site_of(functools.partial(fetch, page=2)) == site_of(fetch)
    assert site_of(Caller())[:2] == (__file__, inspect.getsourcelines(Caller.__call__)[1])  # type: ignore[index]
    assert site_of(len) is None
    assert site_of(lambda state: {})[1] == inspect.currentframe().f_lineno  # type: ignore[index,union-attr]
