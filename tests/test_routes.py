"""Unit tests for wfkit.model._routes: structured route conditions, go(), Route and Router."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wfkit.model._errors import ConditionError, WfkitError
from wfkit.model._routes import (
    END,
    OPERATORS,
    All,
    Any_,
    Compare,
    Condition,
    Go,
    Not,
    Route,
    Router,
    condition_from_dict,
    go,
    when,
)

# --- construction -------------------------------------------------------------------------


def test_when_builds_a_compare_with_the_given_parts():
    """when() returns a Compare holding exactly the field, operator and value it was given."""
    cond = when("query_type", "eq", "code")

    assert isinstance(cond, Compare)
    assert ("query_type", "eq", "code") == (cond.field, cond.op, cond.value)


def test_when_value_defaults_to_none():
    """The value argument of when() is optional and defaults to None."""
    assert when("x", "exists").value is None


def test_operators_lists_every_supported_operator():
    """OPERATORS names exactly the nine documented operators, in documented order."""
    expected = ("eq", "ne", "gt", "ge", "lt", "le", "contains", "in", "exists")
    assert expected == OPERATORS


@pytest.mark.parametrize("op", OPERATORS)
def test_every_documented_operator_is_accepted(op):
    """Every operator listed in OPERATORS can be used to build a condition."""
    value = [1, 2] if op == "in" else 1
    assert op == when("x", op, value).op


def test_unknown_operator_raises_condition_error_listing_valid_operators():
    """An unknown operator raises ConditionError that names it and lists the valid ones."""
    with pytest.raises(ConditionError, match=r"unknown operator 'equals'.*use one of eq, ne"):
        when("x", "equals", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("symbol", "op"), [(">", "gt"), (">=", "ge"), ("<", "lt"), ("<=", "le"), ("==", "eq"), ("!=", "ne")]
)
def test_a_comparison_symbol_is_told_its_operator(symbol: str, op: str) -> None:
    """`when("score", ">", 5)`, the first thing a person types, was told only the list of operators:
    it names the one that means the symbol."""
    with pytest.raises(
        ConditionError,
        match=rf"unknown operator '{symbol}' in condition on 'score' \(for '{symbol}' write '{op}'\); use one of",
    ):
        when("score", symbol, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["", None, 3])
def test_field_must_be_a_non_empty_string(field):
    """A missing, empty or non-string field raises ConditionError saying what is needed."""
    with pytest.raises(ConditionError, match="field must be a non-empty string"):
        when(field, "eq", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [5, 2.5, None, object()])
def test_in_operator_rejects_a_non_collection_value(value):
    """Operator 'in' with a value that is not a collection raises ConditionError asking for one."""
    with pytest.raises(ConditionError, match=r"operator 'in' on 'x' needs a collection value"):
        when("x", "in", value)


@pytest.mark.parametrize("value", ["no", "false", "yes", 2, [False], {"x": 1}])
def test_exists_refuses_a_value_that_is_no_flag(value):
    """exists takes True or False (or nothing): "no" would print as `x missing` yet hold when the
    field is present (read by its truth), so it is refused, saying what the operator takes."""
    with pytest.raises(ConditionError, match=r"operator 'exists' on 'x' takes True \(present, the default\) or False"):
        when("x", "exists", value)


@pytest.mark.parametrize(
    ("value", "text"), [(None, "x exists"), (True, "x exists"), (1, "x exists"), (False, "x missing"), (0, "x missing")]
)
def test_exists_flags_print_as_they_evaluate(value, text):
    """Every value exists accepts prints as what it tests."""
    cond = when("x", "exists", value)
    assert (text, text == "x exists") == (str(cond), cond.evaluate({"x": 1}))


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le"])
def test_ordering_operator_without_a_value_is_refused(op):
    """An ordering operator with no value (a spec's condition missing ``value``) could never hold:
    it is refused when built, not when a run first evaluates it."""
    with pytest.raises(ConditionError, match=rf"operator '{op}' on 'n' needs a value to compare with"):
        when("n", op)
    with pytest.raises(ConditionError, match=rf"operator '{op}' on 'n' needs a value to compare with"):
        condition_from_dict({"field": "n", "op": op})


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le"])
@pytest.mark.parametrize("blank", ["", "  "])
def test_ordering_operator_with_a_blank_value_is_refused(op, blank):
    """``lt ""`` (a builder's value box left empty) is no bound: a number fails the run when the route
    is first tried, and no string is below it. It is refused when built, as a missing value is."""
    expected = rf"operator '{op}' on 'n' needs a value to compare with, got the blank string {blank!r}; give one"
    with pytest.raises(ConditionError, match=expected):
        when("n", op, blank)
    with pytest.raises(ConditionError, match=expected):
        condition_from_dict({"field": "n", "op": op, "value": blank})
    assert when("n", "eq", "").evaluate({"n": ""})  # equality with the empty string stays a test


@pytest.mark.parametrize(
    ("written", "meant"),
    [("$100", "100"), ("1,000", "1000"), ("1,5", "1.5"), ("5%", "5"), ("€ 2.50", "2.50")],
)
def test_an_ordering_bound_written_as_a_number_in_text_is_refused(written, meant):
    """`amount gt "1,000"` (a number written as a person writes it, in text) orders as text: "900" is
    above it and the number 900 fails the run when the route is first tried. It is refused when
    built, saying the number to give instead."""
    expected = (
        f"operator 'gt' on 'amount' compares with the text {written!r}, which orders as text, not as the "
        f"number it reads as: give the number, {meant} (when('amount', 'gt', {meant}), or value: {meant} in a spec)"
    )
    with pytest.raises(ConditionError) as info:
        condition_from_dict({"field": "amount", "op": "gt", "value": written})
    assert expected == str(info.value)


@pytest.mark.parametrize(
    ("written", "letters"), [("10k", "k"), ("2.5M", "M"), ("$3bn", "bn"), ("100 rows", "rows"), ("10 K", "K")]
)
def test_an_ordering_bound_written_with_letters_is_refused_without_a_number_guessed(written, letters):
    """`amount gt "10k"` is refused as text, as "1,000" is, but letters hide the number meant (10k is
    10000, not 10): the error says to write that number in digits alone, and offers none. It
    offered "give the number, 10", which a user who took it would have run with, wrong."""
    expected = (
        f"operator 'gt' on 'amount' compares with the text {written!r}, which orders as text, not as a number: "
        f"write the number it stands for in digits alone, without {letters!r} (when('amount', 'gt', <that "
        f"number>), or value: <that number> in a spec)"
    )
    with pytest.raises(ConditionError) as info:
        condition_from_dict({"field": "amount", "op": "gt", "value": written})
    assert expected == str(info.value)


@pytest.mark.parametrize("text", ["m", "2024-01-01", "12:30", "v2", "1.2", "10"])
def test_an_ordering_bound_of_text_that_is_no_written_number_stays_text(text):
    """Text compared in order (names, ISO dates, times, a number in quotes) is a test as it is."""
    assert when("x", "lt", text).value == text


def test_condition_error_is_a_wfkit_and_value_error():
    """ConditionError can be caught as WfkitError and as ValueError."""
    with pytest.raises(WfkitError):
        when("x", "nope", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        when("x", "nope", 1)  # type: ignore[arg-type]


def test_compare_is_immutable():
    """A Compare is frozen: assigning to one of its fields raises."""
    cond = when("x", "eq", 1)
    with pytest.raises(AttributeError):
        cond.value = 2  # type: ignore[misc]


def test_equal_conditions_compare_equal():
    """Two conditions built from the same parts are equal; different parts are not."""
    assert when("x", "eq", 1) == when("x", "eq", 1)
    assert when("x", "eq", 1) != when("x", "eq", 2)
    assert when("x", "eq", 1) != when("x", "ne", 1)


# --- each operator --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [({"x": "code"}, True), ({"x": "chat"}, False), ({"x": None}, False), ({}, False)],
)
def test_eq(state, expected):
    """eq holds only when the field is present and equal to the value."""
    assert expected == when("x", "eq", "code").evaluate(state)


@pytest.mark.parametrize(
    ("state", "expected"),
    [({"x": "code"}, False), ({"x": "chat"}, True), ({"x": None}, True), ({}, True)],
)
def test_ne(state, expected):
    """ne holds when the field differs from the value, including when it is None or missing."""
    assert expected == when("x", "ne", "code").evaluate(state)


@pytest.mark.parametrize(
    ("op", "actual", "expected"),
    [
        ("gt", 6, True),
        ("gt", 5, False),
        ("gt", 4, False),
        ("ge", 6, True),
        ("ge", 5, True),
        ("ge", 4, False),
        ("lt", 6, False),
        ("lt", 5, False),
        ("lt", 4, True),
        ("le", 6, False),
        ("le", 5, True),
        ("le", 4, True),
    ],
)
def test_ordering_operators_against_five(op, actual, expected):
    """gt, ge, lt and le compare the field's value with the condition's value as Python does."""
    assert expected == when("score", op, 5).evaluate({"score": actual})


def test_ordering_works_on_floats_and_strings():
    """Ordering operators work on any mutually comparable values, not only ints."""
    assert when("p", "ge", 0.5).evaluate({"p": 0.75})
    assert when("name", "lt", "m").evaluate({"name": "alice"})
    assert not when("name", "lt", "m").evaluate({"name": "zed"})


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le"])
def test_ordering_is_false_for_missing_field(op):
    """An ordering comparison on a missing field is false rather than an error."""
    assert not when("score", op, 5).evaluate({})


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le"])
def test_ordering_is_false_for_none_value(op):
    """An ordering comparison on a field holding None is false rather than an error."""
    assert not when("score", op, 5).evaluate({"score": None})


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"tags": ["urgent", "billing"]}, True),
        ({"tags": ["billing"]}, False),
        ({"tags": "an urgent request"}, True),
        ({"tags": {"urgent": 1}}, True),
        ({"tags": None}, False),
        ({}, False),
    ],
)
def test_contains(state, expected):
    """contains holds when the value is an element (or substring, or key) of the field."""
    assert expected == when("tags", "contains", "urgent").evaluate(state)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"tier": "gold"}, True),
        ({"tier": "silver"}, True),
        ({"tier": "bronze"}, False),
        ({"tier": None}, False),
        ({}, False),
    ],
)
def test_in(state, expected):
    """in holds when the field's value is one of the given collection."""
    assert expected == when("tier", "in", ["gold", "silver"]).evaluate(state)


def test_in_accepts_sets_tuples_and_strings():
    """Any container works as the value of 'in': a set, a tuple or a string."""
    assert when("x", "in", {"a", "b"}).evaluate({"x": "a"})
    assert when("x", "in", ("a", "b")).evaluate({"x": "b"})
    assert when("x", "in", "abc").evaluate({"x": "bc"})


@pytest.mark.parametrize(
    ("state", "expected"),
    [({"x": 0}, True), ({"x": ""}, True), ({"x": False}, True), ({"x": None}, False), ({}, False)],
)
def test_exists(state, expected):
    """exists holds when the field is present and not None, even for falsy values."""
    assert expected == when("x", "exists").evaluate(state)


@pytest.mark.parametrize(("state", "expected"), [({"x": 1}, True), ({"x": None}, False), ({}, False)])
def test_exists_true_is_the_same_as_exists(state, expected):
    """exists with value True behaves like plain exists."""
    assert expected == when("x", "exists", True).evaluate(state)


@pytest.mark.parametrize(("state", "expected"), [({"x": 1}, False), ({"x": None}, True), ({}, True)])
def test_exists_false_means_missing(state, expected):
    """exists with value False holds when the field is missing or None."""
    assert expected == when("x", "exists", False).evaluate(state)


# --- missing fields, None values, dotted paths ------------------------------------------------


@pytest.mark.parametrize(("op", "value"), [("eq", None), ("contains", None), ("in", [None]), ("gt", 0), ("le", 0)])
def test_missing_field_equals_nothing(op, value):
    """On a missing field every operator but ne and exists is false, even against None."""
    assert not when("absent", op, value).evaluate({"other": 1})


def test_eq_none_distinguishes_none_from_missing():
    """eq None holds for a field set to None but not for a field that is absent."""
    cond = when("x", "eq", None)
    assert cond.evaluate({"x": None})
    assert not cond.evaluate({})


def test_dotted_path_reads_nested_mappings():
    """A dotted field reads through nested mappings."""
    state = {"user": {"profile": {"tier": "gold"}}}
    assert when("user.profile.tier", "eq", "gold").evaluate(state)
    assert not when("user.profile.tier", "eq", "silver").evaluate(state)


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"user": None},
        {"user": "gold"},
        {"user": ["tier"]},
        {"user": {}},
        {"user": {"profile": 3}},
    ],
)
def test_dotted_path_through_missing_or_non_mapping_is_missing(state):
    """A dotted path that hits a missing key or a non-mapping counts as a missing field."""
    assert not when("user.profile.tier", "exists").evaluate(state)
    assert not when("user.profile.tier", "eq", None).evaluate(state)
    assert when("user.profile.tier", "ne", "gold").evaluate(state)


def test_dotted_path_none_leaf_is_present_but_not_existing():
    """A nested field set to None equals None yet does not count as existing."""
    state = {"user": {"tier": None}}
    assert when("user.tier", "eq", None).evaluate(state)
    assert not when("user.tier", "exists").evaluate(state)


def test_path_splits_on_dots():
    """Compare.path is the field split on dots."""
    assert ("a", "b", "c") == when("a.b.c", "eq", 1).path


def test_path_is_worked_out_once_and_follows_a_replaced_field():
    """Compare.path is stored at construction, and dataclasses.replace works it out again."""
    cond = when("a.b", "eq", 1)
    assert cond.path is cond.path
    moved = dataclasses.replace(cond, field="c.d.e")
    assert (("c", "d", "e"), ("a", "b")) == (moved.path, cond.path)
    assert moved.evaluate({"c": {"d": {"e": 1}}})


def test_path_is_not_a_constructor_argument_nor_part_of_repr_or_equality():
    """The stored path stays derived: Compare still takes field/op/value, prints and compares as before."""
    cond = when("user.tier", "eq", "gold")
    assert "Compare(field='user.tier', op='eq', value='gold')" == repr(cond)
    assert ("field", "op", "value") == Compare.__match_args__
    assert hash(when("user.tier", "eq", "gold")) == hash(cond)
    with pytest.raises(TypeError):
        Compare("x", "eq", 1, ("y",))  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.path = ("x",)  # type: ignore[misc]


def test_copied_and_pickled_conditions_keep_their_path():
    """A condition copied or pickled (as for worker processes) still reads its dotted path."""
    import copy
    import pickle

    cond = when("user.tier", "eq", "gold") & when("n", "lt", 3)
    state = {"user": {"tier": "gold"}, "n": 1}
    for twin in (copy.copy(cond), copy.deepcopy(cond), pickle.loads(pickle.dumps(cond))):
        assert cond == twin
        assert twin.evaluate(state)
        assert not twin.evaluate({"user": {"tier": "gold"}, "n": 5})


def test_undotted_key_containing_no_dot_is_read_directly():
    """A plain field name reads the top-level key of the state."""
    assert when("x", "eq", 1).evaluate({"x": 1, "x.y": 2})


def test_evaluate_accepts_any_mapping():
    """evaluate works on read-only mappings such as MappingProxyType."""
    from types import MappingProxyType

    state = MappingProxyType({"user": MappingProxyType({"tier": "gold"})})
    assert when("user.tier", "eq", "gold").evaluate(state)


class _Settings(Mapping[str, object]):
    """A Mapping that is not a dict: evaluation must still read through it."""

    def __init__(self, **values: object) -> None:
        self._values = values

    def __getitem__(self, key: str) -> object:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def test_evaluate_reads_through_mapping_subclasses_that_are_not_dicts():
    """A user-defined Mapping (no dict underneath) at the top or nested reads like a dict."""
    state = {"user": _Settings(profile=_Settings(tier="gold"))}
    assert when("user.profile.tier", "eq", "gold").evaluate(state)
    assert when("user.profile.tier", "exists").evaluate(_Settings(user=state["user"]))
    assert not when("user.profile.level", "exists").evaluate(state)
    assert when("user.profile.level", "ne", "gold").evaluate(state)
    assert (True, False, True) == (
        when("n", "lt", 3).evaluate(_Settings(n=1)),
        when("n", "exists").evaluate(_Settings(m=1)),
        when("n", "ne", 1).evaluate(_Settings()),
    )


def test_evaluate_reads_through_dict_subclasses():
    """dict subclasses (OrderedDict, defaultdict, Counter) read like dicts; defaultdict makes no entry."""
    from collections import Counter, OrderedDict, defaultdict

    nested: defaultdict[str, int] = defaultdict(int, tier=2)
    state = OrderedDict(user=nested, votes=Counter(a=3))
    assert when("user.tier", "eq", 2).evaluate(state)
    assert when("votes.a", "gt", 2).evaluate(state)
    assert not when("user.level", "exists").evaluate(state)
    assert ["tier"] == list(nested)
    top: defaultdict[str, int] = defaultdict(int, n=1)
    assert (True, False, ["n"]) == (when("n", "eq", 1).evaluate(top), when("m", "exists").evaluate(top), list(top))


@pytest.mark.parametrize("leaf", ["gold", 3, None, ["tier"], ("tier",)])
def test_a_path_stepping_into_a_non_mapping_is_missing(leaf):
    """Stepping past a value that is no Mapping (a str, a number, None, a list, a tuple) is missing."""
    state = {"user": leaf}
    assert (False, True) == (
        when("user.tier", "exists").evaluate(state),
        when("user.tier", "ne", "gold").evaluate(state),
    )


@dataclasses.dataclass
class _Ticket:
    priority: int
    owner: _Owner | None = None


@dataclasses.dataclass
class _Owner:
    team: str


def test_a_dotted_path_reads_the_fields_of_a_dataclass_in_the_state():
    """State may hold dataclasses (wfkit.state_type): a path steps into their fields as into a
    mapping's keys, nested too; a name that is no field (a method, a missing one) is missing."""
    state = {"ticket": _Ticket(3, _Owner("billing")), "plain": "text"}
    assert when("ticket.priority", "gt", 2).evaluate(state)
    assert when("ticket.owner.team", "eq", "billing").evaluate(state)
    assert not when("ticket.owner.team", "eq", "sales").evaluate(state)
    assert (False, True) == (when("ticket.due", "exists").evaluate(state), when("ticket.due", "ne", 1).evaluate(state))
    assert not when("ticket.__init__", "exists").evaluate(state)
    assert not when("plain.upper", "exists").evaluate(state)
    assert not when("ticket.owner.team", "exists").evaluate({"ticket": _Ticket(1)})


@pytest.mark.parametrize("where", ["memory", "durable"])
def test_a_route_on_a_dataclass_field_is_taken_in_a_run(where):
    """A route on `ticket.priority`, a field of a dataclass the state holds, is taken when it holds,
    in memory and durable (where the state is rebuilt from its checkpoint)."""
    import wfkit as wf

    wf.state_type(_Ticket)
    wf.state_type(_Owner)
    flow = wf.Workflow("ticket-router")
    flow.step(lambda state: {"ticket": _Ticket(state["p"], _Owner("billing"))}, name="triage")
    flow.step(lambda state: {"lane": "urgent"}, name="urgent")
    flow.step(lambda state: {"lane": "normal"}, name="normal")
    flow.route(
        "triage",
        (wf.when("ticket.priority", "ge", 3) & wf.when("ticket.owner.team", "eq", "billing")) >> wf.go("urgent"),
        default=wf.go("normal"),
    )
    workspace = None if where == "durable" else False
    lanes = [flow.run({"p": p}, workspace=workspace).state["lane"] for p in (5, 1)]
    assert ["urgent", "normal"] == lanes


# --- incomparable types -------------------------------------------------------------------


def test_incomparable_ordering_raises_condition_error_saying_how_to_fix():
    """Ordering a str against an int raises ConditionError naming the field, types and a fix."""
    with pytest.raises(
        ConditionError,
        match=r"cannot evaluate score > 5: field 'score' holds str '7'.*"
        r"store a comparable value in the state or change the condition",
    ):
        when("score", "gt", 5).evaluate({"score": "7"})


def test_incomparable_error_chains_the_original_type_error():
    """The ConditionError for incomparable values keeps the TypeError as its cause."""
    with pytest.raises(ConditionError) as info:
        when("score", "le", 5).evaluate({"score": [1]})
    assert isinstance(info.value.__cause__, TypeError)


def test_contains_on_a_non_container_raises_condition_error():
    """contains on a field whose value is not a container raises ConditionError with a fix."""
    with pytest.raises(ConditionError, match=r"field 'n' holds int 3.*change the condition"):
        when("n", "contains", "a").evaluate({"n": 3})


def test_in_with_unhashable_value_in_a_set_raises_condition_error():
    """in with an unhashable field value against a set raises ConditionError, not TypeError."""
    with pytest.raises(ConditionError, match=r"holds list \[1\].*with set"):
        when("x", "in", {1}).evaluate({"x": [1]})


def test_eq_between_different_types_is_simply_false():
    """eq and ne never raise on mismatched types: they compare unequal."""
    assert not when("x", "eq", 1).evaluate({"x": "1"})
    assert when("x", "ne", 1).evaluate({"x": "1"})


# --- composition ----------------------------------------------------------------------------


A = when("a", "eq", 1)
B = when("b", "eq", 2)
C = when("c", "eq", 3)


@pytest.mark.parametrize(
    ("state", "expected"),
    [({"a": 1, "b": 2}, True), ({"a": 1, "b": 0}, False), ({"a": 0, "b": 2}, False), ({}, False)],
)
def test_and(state, expected):
    """a & b holds only when both hold."""
    assert expected == (A & B).evaluate(state)


@pytest.mark.parametrize(
    ("state", "expected"),
    [({"a": 1, "b": 2}, True), ({"a": 1, "b": 0}, True), ({"a": 0, "b": 2}, True), ({}, False)],
)
def test_or(state, expected):
    """a | b holds when either holds."""
    assert expected == (A | B).evaluate(state)


@pytest.mark.parametrize(("state", "expected"), [({"a": 1}, False), ({"a": 0}, True), ({}, True)])
def test_invert(state, expected):
    """~a holds exactly when a does not."""
    assert expected == (~A).evaluate(state)


def test_composition_builds_all_any_not_nodes():
    """&, | and ~ build All, Any_ and Not nodes holding their operands."""
    assert All((A, B)) == A & B
    assert Any_((A, B)) == A | B
    assert Not(A) == ~A


def test_chained_and_flattens_into_one_all():
    """a & b & c builds one All of three parts rather than nesting."""
    assert All((A, B, C)) == A & B & C


def test_chained_or_flattens_into_one_any():
    """a | b | c builds one Any_ of three parts rather than nesting."""
    assert Any_((A, B, C)) == A | B | C


def test_mixed_composition_respects_python_precedence():
    """a | b & c means a | (b & c), as & binds tighter than | in Python."""
    cond = A | B & C
    assert Any_((A, All((B, C)))) == cond
    assert cond.evaluate({"a": 1})
    assert not cond.evaluate({"b": 2})
    assert cond.evaluate({"b": 2, "c": 3})


def test_double_negation_restores_the_truth_value():
    """~~a holds exactly when a holds."""
    for state in ({"a": 1}, {"a": 0}, {}):
        assert A.evaluate(state) == (~~A).evaluate(state)


def test_de_morgan_holds_for_composed_conditions():
    """~(a & b) and ~a | ~b agree on every combination of inputs."""
    for a in (0, 1):
        for b in (0, 2):
            state = {"a": a, "b": b}
            assert (~A | ~B).evaluate(state) == (~(A & B)).evaluate(state)


def test_and_short_circuits_before_an_incomparable_part():
    """All stops at the first false part, so a later incomparable part is never evaluated."""
    cond = when("ok", "eq", True) & when("n", "gt", 1)
    assert not cond.evaluate({"ok": False, "n": "x"})


def test_fields_lists_top_level_fields_read():
    """fields() reports the top-level state fields a composed condition reads."""
    cond = (when("user.tier", "eq", "gold") & when("n", "gt", 1)) | ~when("flag", "exists")
    assert {"user", "n", "flag"} == cond.fields()


@pytest.mark.parametrize("other", [True, "a == 1", 1, None, go("x")])
def test_combining_with_a_non_condition_raises_type_error(other):
    """& and | with something that is not a condition raise TypeError."""
    with pytest.raises(TypeError, match="conditions combine only with conditions"):
        A & other  # type: ignore[operator]
    with pytest.raises(TypeError, match="conditions combine only with conditions"):
        A | other  # type: ignore[operator]


def test_and_with_route_explains_precedence_mistake():
    """`a & b >> go(...)` raises TypeError telling the user to parenthesise `(a & b)`."""
    with pytest.raises(TypeError, match=r"binds tighter; write `\(a & b\) >> go\(...\)`"):
        A & B >> go("next")  # type: ignore[operator]


def test_or_with_route_explains_precedence_mistake():
    """`a | b >> go(...)` raises TypeError telling the user to parenthesise `(a | b)`."""
    with pytest.raises(TypeError, match=r"binds tighter; write `\(a \| b\) >> go\(...\)`"):
        A | B >> go("next")  # type: ignore[operator]


def test_chained_and_with_route_explains_precedence_mistake():
    """The precedence hint is also raised when the left side is already an All."""
    with pytest.raises(TypeError, match=r"write `\(a & b\) >> go"):
        (A & B) & C >> go("next")  # type: ignore[operator]


def test_parenthesised_composition_builds_a_route():
    """`(a & b) >> go(...)` builds a Route with the composed condition and the destination."""
    route = (A & B) >> go("next")
    assert isinstance(route, Route)
    assert A & B == route.condition
    assert Go("next") == route.go


def test_rshift_to_a_step_name_is_a_go_and_anything_else_is_refused():
    """`condition >> "step"` goes to that step with its own tools (it raised a TypeError before);
    anything but a name or wfkit.go(...) raises one saying what to write."""
    assert (A >> "next") == (A >> go("next"))
    with pytest.raises(TypeError, match=r"needs x = wfkit.go\('step'\) or a step's name, got 3"):
        A >> 3  # type: ignore[operator]


@pytest.mark.parametrize(
    "misuse",
    [lambda: A and B, lambda: A or B, lambda: not A, lambda: (A & B) and C, lambda: bool(~A), lambda: 1 if A else 0],
    ids=["and", "or", "not", "and-of-all", "bool", "if"],
)
def test_python_boolean_operators_on_conditions_are_refused(misuse: Any) -> None:
    """Python's and/or/not would pick one condition silently (`A and B` is B): a condition has no
    truth value, and asking for one says to use & | ~."""
    with pytest.raises(TypeError, match=r"combine conditions with & \(and\), \| \(or\) and ~ \(not\)"):
        misuse()


def test_conditions_still_compare_and_sit_in_containers_without_a_truth_value() -> None:
    """Equality, hashing, membership and `is None` checks never ask a condition for its truth."""
    assert A == when("a", "eq", 1)
    assert A in [B, A]
    assert A in {A: 1}
    assert (A & B) != (A | B)
    assert A is not None


def test_base_condition_methods_are_abstract():
    """The Condition base class leaves evaluate, fields and to_dict to subclasses."""
    base = Condition()
    with pytest.raises(NotImplementedError):
        base.evaluate({})
    with pytest.raises(NotImplementedError):
        base.fields()
    with pytest.raises(NotImplementedError):
        base.to_dict()


# --- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (when("x", "eq", "code"), "x == 'code'"),
        (when("x", "ne", 1), "x != 1"),
        (when("x", "gt", 1), "x > 1"),
        (when("x", "ge", 1.5), "x >= 1.5"),
        (when("x", "lt", 1), "x < 1"),
        (when("x", "le", 1), "x <= 1"),
        (when("x", "eq", None), "x == None"),
        (when("tags", "contains", "a"), "tags contains 'a'"),
        (when("tier", "in", ["gold", "silver"]), "tier in ['gold', 'silver']"),
        (when("x", "exists"), "x exists"),
        (when("x", "exists", True), "x exists"),
        (when("x", "exists", False), "x missing"),
        (when("user.tier", "eq", "gold"), "user.tier == 'gold'"),
    ],
)
def test_str_of_compare(cond, expected):
    """str() of a single comparison reads like an expression."""
    assert expected == str(cond)


def test_str_of_composition():
    """str() of a composed condition parenthesises and/or groups and prefixes not."""
    cond = (A & B) | ~C
    assert "((a == 1 and b == 2) or not c == 3)" == str(cond)


def test_str_of_flattened_chain():
    """str() of a flattened chain joins every part with the same connective."""
    assert "(a == 1 and b == 2 and c == 3)" == str(A & B & C)
    assert "(a == 1 or b == 2 or c == 3)" == str(A | B | C)


# --- serialisation ----------------------------------------------------------------------------


def test_compare_to_dict():
    """Compare.to_dict gives field, op and value as plain data."""
    assert {"field": "x", "op": "gt", "value": 3} == when("x", "gt", 3).to_dict()


def test_composed_to_dict():
    """Composed conditions serialise as nested all/any/not dicts."""
    cond = (A & B) | ~C
    expected = {
        "any": [
            {"all": [A.to_dict(), B.to_dict()]},
            {"not": {"field": "c", "op": "eq", "value": 3}},
        ]
    }
    assert expected == cond.to_dict()


@pytest.mark.parametrize(
    "cond",
    [
        when("x", "eq", "code"),
        when("x", "exists"),
        when("x", "exists", False),
        when("tier", "in", ("gold", "silver")),
        A & B & C,
        A | B,
        ~A,
        ~(A & B) | (when("user.tier", "contains", "g") & ~when("n", "le", 0.5)),
    ],
)
def test_round_trip_through_to_dict(cond):
    """condition_from_dict(c.to_dict()) rebuilds an equal condition."""
    assert cond == condition_from_dict(cond.to_dict())


def test_round_trip_through_json_keeps_behaviour():
    """A condition stored as JSON and rebuilt evaluates the same on every test state."""
    cond = (when("tier", "in", ["gold", "silver"]) & when("n", "ge", 2)) | ~when("x", "exists")
    rebuilt = condition_from_dict(json.loads(json.dumps(cond.to_dict())))
    assert cond == rebuilt
    states = [{}, {"x": 1}, {"x": 1, "tier": "gold", "n": 2}, {"x": 1, "tier": "gold", "n": 1}]
    for state in states:
        assert cond.evaluate(state) == rebuilt.evaluate(state)


def test_from_dict_without_value_defaults_to_none():
    """A stored comparison without 'value' rebuilds with value None."""
    assert when("x", "exists") == condition_from_dict({"field": "x", "op": "exists"})


@pytest.mark.parametrize("data", [{}, {"field": "x"}, {"op": "eq", "value": 1}])
def test_from_dict_missing_keys_raises_condition_error(data):
    """A dict without field/op (or all/any/not) raises ConditionError saying what it needs."""
    with pytest.raises(ConditionError, match=r"needs 'field' and 'op' \(or 'all'/'any'/'not'\)"):
        condition_from_dict(data)


def test_from_dict_validates_the_operator():
    """condition_from_dict rejects an unknown operator just as when() does."""
    with pytest.raises(ConditionError, match="unknown operator 'like'"):
        condition_from_dict({"field": "x", "op": "like", "value": "a%"})


def test_from_dict_validates_nested_parts():
    """An invalid part nested inside all/any/not is rejected too."""
    with pytest.raises(ConditionError, match="needs a collection value"):
        condition_from_dict({"all": [A.to_dict(), {"not": {"field": "x", "op": "in", "value": 3}}]})


# --- go() -----------------------------------------------------------------------------------


def test_go_builds_a_destination_without_tools():
    """go(target) names the next step and leaves tools as None (the step's own tools)."""
    assert Go("answer", None) == go("answer")


def test_go_binds_tools_as_a_tuple():
    """go(target, tools=[...]) stores the tools as a tuple in the given order."""
    assert ("web_search", "calculator") == go("answer", tools=["web_search", "calculator"]).tools


def test_go_accepts_any_iterable_of_tools():
    """tools may be any iterable of names, such as a generator or a tuple."""
    assert ("a", "b") == go("s", tools=(t for t in ["a", "b"])).tools
    assert ("a",) == go("s", tools=("a",)).tools


def test_go_with_empty_tools_binds_no_tools():
    """tools=[] binds an empty tuple, meaning no tools, which differs from None."""
    assert () == go("s", tools=[]).tools


def test_go_to_end():
    """go(END) is a valid destination that ends the branch."""
    assert END == go(END).target
    assert "__end__" == END


@pytest.mark.parametrize("target", ["", None, 3, ["answer"]])
def test_go_rejects_a_missing_or_non_string_target(target):
    """go() with an empty or non-string target raises TypeError asking for a step name."""
    with pytest.raises(TypeError, match=r"go\(\) needs a step name, got"):
        go(target)  # type: ignore[arg-type]


def test_go_rejects_tools_given_as_a_string():
    """tools='web_search' raises TypeError instead of binding one tool per character."""
    with pytest.raises(TypeError, match=r"tools must be a list of names, got the string 'web_search'"):
        go("answer", tools="web_search")


def test_go_tools_is_keyword_only():
    """tools can only be passed by keyword."""
    with pytest.raises(TypeError):
        go("answer", ["web_search"])  # type: ignore[misc]


def test_go_is_immutable():
    """A Go is frozen: changing its target raises."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        go("a").target = "b"  # type: ignore[misc]


# --- Route --------------------------------------------------------------------------------------


def test_rshift_builds_a_route():
    """condition >> go(target) builds a Route holding both."""
    cond = when("kind", "eq", "code")
    route = cond >> go("coder", tools=["python"])
    assert Route(cond, Go("coder", ("python",))) == route


def test_route_target_is_the_destination_step():
    """Route.target is the name of the step its go() leads to."""
    assert "coder" == (when("kind", "eq", "code") >> go("coder")).target


# --- Router -------------------------------------------------------------------------------------


IS_CODE = when("kind", "eq", "code")
IS_URGENT = when("priority", "ge", 8)


def make_router() -> Router:
    """A router with two overlapping routes and a default."""
    return Router(
        routes=(IS_URGENT >> go("escalate"), IS_CODE >> go("coder", tools=["python"])),
        default=go("chat"),
    )


def test_choose_returns_the_matching_route():
    """choose returns the go() of the route whose condition holds."""
    assert Go("coder", ("python",)) == make_router().choose({"kind": "code", "priority": 1})


def test_choose_first_matching_route_wins():
    """When several routes match, the first declared one is taken."""
    assert "escalate" == make_router().choose({"kind": "code", "priority": 9}).target


def test_choose_order_follows_declaration_not_specificity():
    """Swapping the routes' order swaps which of two matching routes is taken."""
    router = Router(routes=(IS_CODE >> go("coder"), IS_URGENT >> go("escalate")), default=go("chat"))
    assert "coder" == router.choose({"kind": "code", "priority": 9}).target


def test_choose_falls_back_to_default():
    """When no route matches, choose returns the default."""
    assert Go("chat") == make_router().choose({"kind": "smalltalk", "priority": 1})


def test_choose_default_on_empty_state():
    """An empty state matches no route here, so the default is taken."""
    assert "chat" == make_router().choose({}).target


def test_router_without_routes_always_takes_default():
    """A router with no routes always chooses its default."""
    router = Router(routes=(), default=go(END))
    assert END == router.choose({"anything": 1}).target


def test_choose_stops_at_first_match():
    """Routes after the first match are not evaluated, so a later bad condition is harmless."""
    router = Router(
        routes=(IS_CODE >> go("coder"), when("priority", "gt", 5) >> go("escalate")),
        default=go("chat"),
    )
    assert "coder" == router.choose({"kind": "code", "priority": "high"}).target


def test_targets_lists_every_destination():
    """targets holds the destinations of every route and of the default."""
    assert frozenset({"escalate", "coder", "chat"}) == make_router().targets


def test_targets_excludes_end():
    """END is not a step, so it is left out of targets."""
    router = Router(routes=(IS_CODE >> go("coder"), IS_URGENT >> go(END)), default=go(END))
    assert frozenset({"coder"}) == router.targets


def test_targets_deduplicates():
    """A step reached by several routes appears once in targets."""
    router = Router(routes=(IS_CODE >> go("a"), IS_URGENT >> go("a")), default=go("a"))
    assert frozenset({"a"}) == router.targets


def test_targets_cannot_be_passed_in():
    """targets is computed, not an argument of Router."""
    with pytest.raises(TypeError):
        Router(routes=(), default=go("a"), targets=frozenset({"b"}))  # type: ignore[call-arg]


def test_router_is_immutable():
    """A Router is frozen: replacing its default raises."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_router().default = go("other")  # type: ignore[misc]


# ---- properties: conditions are data, and obey boolean algebra --------------------------------------

_FIELDS = ("a", "b", "c.d")
_numbers = st.integers(-3, 3)
_compare = st.one_of(
    st.builds(when, st.sampled_from(_FIELDS), st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]), _numbers),
    st.builds(when, st.sampled_from(_FIELDS), st.just("in"), st.lists(_numbers, max_size=3)),
    st.builds(when, st.sampled_from(_FIELDS), st.just("exists"), st.none() | st.booleans()),
)
_conditions = st.recursive(
    _compare,
    lambda inner: st.one_of(
        st.builds(lambda x, y: x & y, inner, inner),
        st.builds(lambda x, y: x | y, inner, inner),
        st.builds(lambda x: ~x, inner),
    ),
    max_leaves=6,
)
_states = st.fixed_dictionaries(
    {},
    optional={"a": _numbers | st.none(), "b": _numbers, "c": st.fixed_dictionaries({}, optional={"d": _numbers})},
)


@settings(max_examples=200, deadline=None)
@given(_conditions, _states)
def test_to_dict_round_trips_and_means_the_same(condition: Condition, state: dict[str, object]) -> None:
    """A condition rebuilt from to_dict (through JSON) equals the original and decides every state alike."""
    data = json.loads(json.dumps(condition.to_dict()))
    rebuilt = condition_from_dict(data)
    assert condition.to_dict() == rebuilt.to_dict()
    assert condition.evaluate(state) == rebuilt.evaluate(state)


@settings(max_examples=200, deadline=None)
@given(_conditions, _conditions, _states)
def test_de_morgan_holds(x: Condition, y: Condition, state: dict[str, object]) -> None:
    """~(x & y) == ~x | ~y and ~(x | y) == ~x & ~y on every state; ~~x == x."""
    assert (~(x & y)).evaluate(state) == (~x | ~y).evaluate(state)
    assert (~(x | y)).evaluate(state) == (~x & ~y).evaluate(state)
    assert (~~x).evaluate(state) == x.evaluate(state)


_PREDICATE_VALUES = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=2), st.lists(st.integers(), max_size=1))


@given(
    op=st.sampled_from(OPERATORS),
    value=_PREDICATE_VALUES,
    state=st.dictionaries(st.sampled_from(["score", "other"]), _PREDICATE_VALUES, max_size=2),
)
@settings(max_examples=300, deadline=None)
def test_predicate_and_choice_agree_with_evaluate(op, value, state):
    """A condition's predicate answers as its evaluate does, and its choice picks its first destination
    exactly then, or both raise the same ConditionError."""
    if op == "in" and not hasattr(value, "__contains__"):
        value = [value]
    if op == "exists" and value not in (None, True, False):
        value = bool(value)  # exists takes a flag only (test_exists_refuses_a_value_that_is_no_flag)
    if op in ("gt", "ge", "lt", "le") and (value is None or (isinstance(value, str) and not value.strip())):
        value = 0  # refused when built (test_ordering_operator_with_a_blank_value_is_refused)
    try:
        condition = when("score", op, value)
    except ConditionError:
        # An ordering bound of text that reads as a number written by hand ("0A", "1,5") is refused
        # when built (test_an_ordering_bound_written_as_a_number_in_text_is_refused): nothing to compare.
        assert op in ("gt", "ge", "lt", "le")
        assert isinstance(value, str)
        return

    def answer(fn):
        try:
            return fn(state)
        except ConditionError as exc:
            return str(exc)

    assert answer(condition.evaluate) == answer(condition.predicate())
    expected = answer(condition.evaluate)
    if not isinstance(expected, str):  # not an error's message: where it holds, the first destination
        expected = go("yes") if expected else go("no")
    assert expected == answer(condition.choice(go("yes"), go("no")))


def test_predicate_of_a_nested_field_or_a_mapping_state_is_evaluate() -> None:
    """A dotted field keeps evaluate itself; a state that is not a plain dict is read as evaluate reads it."""
    nested = when("user.tier", "gt", 1)
    assert nested.evaluate == nested.predicate()
    flat = when("score", "ge", 2).predicate()
    assert (True, False) == (flat(_Settings(score=2)), flat(_Settings(score=1)))


def test_router_tries_its_routes_predicates_in_order() -> None:
    """A router's tests are its routes' predicates with their destinations, in declaration order."""
    router = Router((when("x", "gt", 1) >> go("a"), when("x", "gt", 0) >> go("b")), go(END))
    assert [go("a"), go("b")] == [g for _, g in router.tests]
    assert (go("a"), go("b"), go(END)) == (router.choose({"x": 2}), router.choose({"x": 1}), router.choose({"x": 0}))


def test_choice_of_composed_nested_or_mapping_states() -> None:
    """Composed and dotted conditions, and states that are not plain dicts, choose as evaluate decides."""
    both = when("x", "gt", 1) & when("user.tier", "eq", "gold")
    choose = both.choice(go("a"), go("b"))
    assert (go("a"), go("b")) == (choose({"x": 2, "user": {"tier": "gold"}}), choose({"x": 2, "user": {}}))
    flat = when("score", "ge", 2).choice(go("a"), go("b"))
    assert (go("a"), go("b")) == (flat(_Settings(score=2)), flat(_Settings(score=1)))


def test_router_decide_is_choose_for_one_route_or_many() -> None:
    """A router's decide (one route: the condition's choice; several: tried in turn) answers as choose does."""
    one = Router((when("i", "lt", 3) >> go("work"),), go(END))
    many = Router((when("x", "gt", 1) >> go("a"), when("x", "gt", 0) >> go("b")), go(END))
    assert [go("work"), go(END), go(END)] == [one.decide({"i": i}) for i in (2, 3, None)]
    assert [go("a"), go("b"), go(END)] == [many.decide({"x": x}) for x in (2, 1, 0)]
    assert [one.choose({"i": i}) for i in (2, 3)] == [one.decide({"i": i}) for i in (2, 3)]


def test_router_decide_raises_condition_error_for_incomparable_values() -> None:
    """A single route's choice reports a value its operator cannot compare as a ConditionError, as evaluate does."""
    router = Router((when("i", "lt", 3) >> go("work"),), go(END))
    with pytest.raises(ConditionError, match="cannot evaluate i < 3"):
        router.decide({"i": "three"})


def test_holds_when_missing_names_the_fields_whose_absence_makes_a_route_hold() -> None:
    """`ne` holds on a missing field, and so does any other comparison under `~`; `ne` under `~`,
    `exists` and plain comparisons do not."""
    from wfkit.model._routes import holds_when_missing

    assert {"status"} == holds_when_missing(when("status", "ne", "done"))
    assert {"status"} == holds_when_missing(~when("status", "eq", "done"))
    assert set() == holds_when_missing(~when("status", "ne", "done") & when("n", "gt", 1))
    assert {"a", "c"} == holds_when_missing(
        (when("a", "ne", 1) | when("b", "in", [1])) & ~(when("c", "lt", 2) | when("d", "exists"))
    )
