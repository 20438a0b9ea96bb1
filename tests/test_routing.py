"""Unit tests for wfkit._routing: go(), Route and Router."""

from __future__ import annotations

import dataclasses

import pytest

from wfkit._conditions import when
from wfkit._routing import END, Go, Route, Router, go

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
