"""Unit tests for wfkit.model._merge: per-field merge rules."""

from __future__ import annotations

from functools import reduce
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wfkit.model._merge import add, append, check_merges, extend, union

# --- append -----------------------------------------------------------------------------------


def test_append_to_none_starts_a_list():
    """append with no current value makes a one-element list."""
    assert [1] == append(None, 1)


def test_append_adds_the_update_at_the_end():
    """append puts the update after the existing values, in order."""
    assert ["a", "b", "c"] == append(["a", "b"], "c")


def test_append_keeps_a_list_update_as_one_element():
    """append adds a list update as a single element, not its items."""
    assert [[1], [2, 3]] == append([[1]], [2, 3])


def test_append_does_not_mutate_current():
    """append returns a new list and leaves the current one untouched."""
    current = [1, 2]
    merged = append(current, 3)
    assert [1, 2] == current
    assert merged is not current


def test_append_accepts_a_tuple_current():
    """append turns a tuple current value into a list with the update appended."""
    assert [1, 2, 3] == append((1, 2), 3)


def test_append_none_update_is_kept():
    """append records a None update as a value like any other."""
    assert [None] == append(None, None)


def test_append_folds_several_writes_in_order():
    """Folding several writes with append collects them in completion order."""
    merged = None
    for value in ("first", "second", "third"):
        merged = append(merged, value)
    assert ["first", "second", "third"] == merged


# --- extend -----------------------------------------------------------------------------------


def test_extend_none_current_copies_the_update():
    """extend with no current value gives a new list of the update's items."""
    update = [1, 2]
    merged = extend(None, update)
    assert [1, 2] == merged
    assert merged is not update


def test_extend_concatenates():
    """extend concatenates the update's items after the current ones."""
    assert [1, 2, 3, 4] == extend([1, 2], [3, 4])


def test_extend_with_empty_update_copies_current():
    """extend with an empty update returns a copy of the current list."""
    current = [1]
    merged = extend(current, [])
    assert [1] == merged
    assert merged is not current


def test_extend_does_not_mutate_current():
    """extend leaves the current list untouched."""
    current = ["a"]
    extend(current, ["b"])
    assert ["a"] == current


def test_extend_accepts_any_iterable_update():
    """extend takes the items of any iterable update, such as a tuple or generator."""
    assert [0, 1, 2, 3] == extend([0], (i for i in range(1, 4)))


# --- add ----------------------------------------------------------------------------------------


def test_add_none_current_returns_update():
    """add with no current value returns the update itself."""
    assert 5 == add(None, 5)


def test_add_sums_numbers():
    """add sums the current value and the update."""
    assert 7 == add(3, 4)
    assert 0.75 == pytest.approx(add(0.5, 0.25))


def test_add_keeps_a_zero_current():
    """add treats a current value of 0 as a number, not as missing."""
    assert -2 == add(0, -2)


def test_add_folds_costs():
    """Folding several cost updates with add gives their sum."""
    total = None
    for cost in (0.01, 0.02, 0.03):
        total = add(total, cost)
    assert 0.06 == pytest.approx(total)


# --- union --------------------------------------------------------------------------------------


def test_union_none_current_returns_update():
    """union with no current value returns the update."""
    assert {"a": 1} == union(None, {"a": 1})
    assert {1, 2} == union(None, {1, 2})


def test_union_merges_dicts_with_later_keys_winning():
    """union of dicts keeps every key and takes the update's value on a clash."""
    assert {"a": 1, "b": 20, "c": 3} == union({"a": 1, "b": 2}, {"b": 20, "c": 3})


def test_union_dict_does_not_mutate_current():
    """union of dicts returns a new dict and leaves the current one untouched."""
    current = {"a": 1}
    merged = union(current, {"b": 2})
    assert {"a": 1} == current
    assert {"a": 1, "b": 2} == merged


def test_union_accepts_any_mapping_current():
    """union treats any mapping (e.g. a read-only view) as a dict to merge into."""
    merged = union(MappingProxyType({"a": 1}), {"b": 2})
    assert {"a": 1, "b": 2} == merged
    assert isinstance(merged, dict)


def test_union_of_sets():
    """union of sets returns their set union."""
    assert {1, 2, 3} == union({1, 2}, {2, 3})


def test_union_of_frozensets():
    """union of frozensets returns a frozenset union."""
    merged = union(frozenset({"a"}), frozenset({"b"}))
    assert frozenset({"a", "b"}) == merged
    assert isinstance(merged, frozenset)


def test_union_set_does_not_mutate_current():
    """union of sets leaves the current set untouched."""
    current = {1}
    union(current, {2})
    assert {1} == current


# --- check_merges -------------------------------------------------------------------------------


def test_check_merges_returns_a_plain_dict_copy():
    """check_merges accepts a valid mapping and returns an equal, separate dict."""
    rules = {"notes": append, "cost": add, "seen": union, "items": extend}
    checked = check_merges(rules)
    assert rules == checked
    assert checked is not rules
    assert isinstance(checked, dict)


def test_check_merges_accepts_any_callable():
    """Any callable taking (current, update) is a valid merge rule, including lambdas."""
    checked = check_merges(MappingProxyType({"m": lambda c, u: max(c or 0, u)}))
    assert 5 == checked["m"](3, 5)


def test_check_merges_accepts_empty_mapping():
    """An empty mapping is valid and gives an empty dict."""
    assert {} == check_merges({})


@pytest.mark.parametrize("rule", ["append", None, 3, ["append"]])
def test_check_merges_rejects_non_callable_rule(rule):
    """A rule that is not callable raises TypeError showing the expected form."""
    with pytest.raises(
        TypeError,
        match=r"merge rules map a field name to a function \(current, update\) -> merged, "
        r"e.g. \{'notes': wfkit.append\}; got 'notes': ",
    ):
        check_merges({"notes": rule})


def test_check_merges_rejects_non_string_field():
    """A field name that is not a string raises TypeError naming the bad key."""
    with pytest.raises(TypeError, match=r"got 3: <function append"):
        check_merges({3: append})


def test_check_merges_reports_the_offending_entry():
    """Among several rules, the error names the one that is wrong."""
    with pytest.raises(TypeError, match=r"got 'cost': 'sum'"):
        check_merges({"notes": append, "cost": "sum"})


# ---- properties: merge rules whatever order parallel steps finish in --------------------------------


@given(st.lists(st.integers() | st.text(max_size=3), max_size=6))
def test_append_keeps_every_write_in_order(writes: list[object]) -> None:
    """Folding writes with append gives exactly the writes, in completion order."""
    assert writes == reduce(append, writes, None) or ([] == writes and reduce(append, writes, None) is None)


@given(st.lists(st.lists(st.integers(), max_size=3), max_size=5))
def test_extend_folds_to_the_concatenation(writes: list[list[int]]) -> None:
    """Folding lists with extend equals their concatenation."""
    folded = reduce(extend, writes, None)
    assert [x for w in writes for x in w] == ([] if folded is None else folded)


@given(st.lists(st.integers(), min_size=1, max_size=6), st.randoms())
def test_add_is_order_independent(writes: list[int], rng: object) -> None:
    """add sums the writes whatever order they arrive in."""
    shuffled = list(writes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert reduce(add, writes, None) == reduce(add, shuffled, None) == sum(writes)


@given(st.lists(st.frozensets(st.integers(0, 9)), min_size=1, max_size=5), st.randoms())
def test_union_of_sets_is_order_independent(writes: list[frozenset[int]], rng: object) -> None:
    """union of sets is the same set whatever order parallel writes arrive in."""
    shuffled = list(writes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert reduce(union, writes, None) == reduce(union, shuffled, None) == frozenset().union(*writes)


@given(st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=3), min_size=1, max_size=5))
def test_union_of_dicts_lets_later_keys_win(writes: list[dict[str, int]]) -> None:
    """union of dicts equals applying the writes in order (later keys win)."""
    expected: dict[str, int] = {}
    for w in writes:
        expected.update(w)
    assert expected == reduce(union, writes, None)
