"""The step cache: hits across runs keyed by code and what the step read, TTLs, keys, clearing."""

from __future__ import annotations

import time
from typing import Any

import pytest

import wfkit as wf
from wfkit.engine._cache import ReadRecorder, clear_memory


@pytest.fixture(autouse=True)
def _fresh_memory_cache() -> None:
    """In-memory entries live in the process: every test starts without any."""
    clear_memory()


def _flow(calls: list[str], cache: Any = True) -> wf.Workflow:
    flow = wf.Workflow("cached")

    @flow.step(cache=cache)
    def lookup(state: Any) -> dict[str, Any]:
        calls.append(state["query"])
        return {"hits": [state["query"].upper()]}

    return flow


@pytest.mark.parametrize("workspace", [False, None], ids=["memory", "durable"])
def test_a_second_run_with_the_same_inputs_is_served_from_the_cache(workspace: Any) -> None:
    """The step's body runs once; the second run's event has status `cached` and the same state."""
    calls: list[str] = []
    flow = _flow(calls)
    first = flow.run({"query": "q"}, workspace=workspace)
    second = flow.run({"query": "q"}, workspace=workspace)
    assert ["q"] == calls
    assert first.state == second.state
    assert ["ok"] == [e.status for e in first.events]
    assert ["cached"] == [e.status for e in second.events]
    assert ["lookup"] == second.path()


def test_a_change_in_a_field_the_step_read_misses_and_one_it_did_not_read_hits() -> None:
    """The key is what the step read: `query` changes miss, an unread field changes nothing."""
    calls: list[str] = []
    flow = _flow(calls)
    flow.run({"query": "q", "noise": 1})
    flow.run({"query": "q", "noise": 2})
    flow.run({"query": "other", "noise": 2})
    assert ["q", "other"] == calls


def test_changed_step_code_misses_the_cache() -> None:
    """Redefining the step with other code starts from an empty cache for it."""
    calls: list[str] = []
    _flow(calls).run({"query": "q"})
    flow = wf.Workflow("cached")

    @flow.step(cache=True)
    def lookup(state: Any) -> dict[str, Any]:
        calls.append("new code")
        return {"hits": [state["query"].lower()]}

    assert {"query": "q", "hits": ["q"]} == flow.run({"query": "q"}).state
    assert ["q", "new code"] == calls


def test_entries_expire_after_their_ttl() -> None:
    """With ttl=0.2 s a run after 0.3 s runs the step again."""
    calls: list[str] = []
    flow = _flow(calls, wf.Cache(ttl=0.2))
    flow.run({"query": "q"})
    flow.run({"query": "q"})
    time.sleep(0.3)
    flow.run({"query": "q"})
    assert ["q", "q"] == calls


def test_a_user_key_function_is_part_of_the_key() -> None:
    """key=lambda s: s['day'] keeps days apart even though the step never reads `day`."""
    calls: list[str] = []
    flow = _flow(calls, wf.Cache(key=lambda s: s["day"]))
    flow.run({"query": "q", "day": "mon"})
    flow.run({"query": "q", "day": "mon"})
    flow.run({"query": "q", "day": "tue"})
    assert ["q", "q"] == calls


def test_map_items_are_cached_by_item() -> None:
    """A second map over [1, 2, 3] runs only the new item 3; the others are `cached` rows."""
    ran: list[int] = []
    flow = wf.Workflow("cached-map", inputs=["xs"])

    @flow.map(over="xs", into="ys", cache=True)
    def square(x: int) -> int:
        ran.append(x)
        return x * x

    flow.run({"xs": [1, 2]})
    run = flow.run({"xs": [1, 2, 3]})
    assert [1, 2, 3] == ran
    assert [1, 4, 9] == run.state["ys"]
    assert ["cached", "cached", "ok"] == [
        e.status for e in sorted((e for e in run.events if e.map_index is not None), key=lambda e: e.map_index or 0)
    ]


def test_a_cached_step_that_read_a_non_json_value_fails_clearly() -> None:
    """An object JSON cannot hash (nor state keep) is refused before a cached step could read it."""
    flow = wf.Workflow("cached-object")

    @flow.step(cache=True)
    def use(state: Any) -> dict[str, Any]:
        return {"n": len(state["thing"].items)}

    class Thing:
        def __init__(self) -> None:
            self.items = [1, 2]

    # An object state cannot keep never reaches the step: inputs follow the state rule in memory too.
    with pytest.raises(wf.StateValueError, match=r"the run's inputs: state field 'thing' = .*Thing"):
        flow.run({"thing": Thing()}, workspace=False)


def test_clearing_the_workspace_cache_makes_the_next_run_run_the_step() -> None:
    """Workspace.clear_cache drops the entries; the count of dropped entries is returned."""
    calls: list[str] = []
    flow = _flow(calls)
    flow.run({"query": "q"})
    assert 1 == wf.Workspace().clear_cache(workflow="cached")
    flow.run({"query": "q"})
    assert ["q", "q"] == calls


def test_read_recorder_notes_reads_gets_membership_and_iteration() -> None:
    """Indexing, get, `in` note one field each; iterating notes every field."""
    seen = ReadRecorder({"a": 1, "b": 2, "c": 3})
    assert 1 == seen["a"]
    assert None is seen.get("zz")
    assert "b" in seen
    assert {"a", "b", "zz"} == seen.read
    list(seen)
    assert {"a", "b", "c", "zz"} == seen.read


def test_cache_rejects_a_bad_ttl_and_a_key_that_is_not_a_function() -> None:
    """ttl must be seconds > 0 or a timedelta; key must be callable."""
    with pytest.raises(ValueError, match="ttl"):
        wf.Cache(ttl=0)
    # Infinity was taken: no expiry is None, and flow.save wrote `.inf`, which the spec loader refuses.
    with pytest.raises(ValueError, match=r"\(None: no expiry\), got inf"):
        wf.Cache(ttl=float("inf"))
    with pytest.raises(TypeError, match="key"):
        wf.Cache(key="day")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"cache= takes True or wfkit\.Cache"):
        wf.Workflow("x").step(lambda s: None, name="s", cache="yes")  # type: ignore[call-overload]
