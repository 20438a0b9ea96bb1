"""The durability layer alone: checkpoints, group commit, gates, replay, on a real SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.engine._activations import Activation
from wfkit.engine._durability import Admission, Durability, Recorded
from wfkit.engine._stepevents import EventMaker, Outlet
from wfkit.model._approvals import APPROVE_ALL, HALT, ApprovalPolicy
from wfkit.model._context import Failure
from wfkit.store._store import Store
from wfkit.store._workspace import open_store


def _flow() -> wf.Workflow:
    flow = wf.Workflow("durable-alone")

    @flow.step
    def fetch(state: Any) -> dict[str, Any]:
        return {"n": 1}

    @flow.step(approval="a person looks first")
    def send(state: Any) -> None:
        return None

    flow.chain("fetch", "send")
    return flow


def _store(workspace: Path, run_id: str) -> Store:
    """A real workspace store on a SQLite file, holding one run row."""
    store = open_store(workspace)
    store.create_run(
        {
            "run_id": run_id,
            "workflow": "durable-alone",
            "workflow_version": "v1",
            "fingerprint": "f",
            "definition": "{}",
            "inputs": "{}",
        }
    )
    return store


def _durability(store: Store, run_id: str, policy: ApprovalPolicy = HALT) -> tuple[Durability, EventMaker, Outlet]:
    make = EventMaker(run_id, "durable-alone", "v1", None, ())
    outlet = Outlet(())
    return Durability(store, run_id, make=make, emit=outlet.emit, policy=policy), make, outlet


def _ok_event(make: EventMaker, act: Activation) -> wf.StepEvent:
    return make.event(act.spec.name, act.visit, 1, "ok", None, None, 1_700_000_000.0, 0.01, 0.0, None, None, (), None)


def test_a_checkpoint_reaches_the_sinks_only_once_it_is_durable(workspace: Path) -> None:
    """The event is held while its checkpoint is with the writer, then delivered with its durable wait."""
    store = _store(workspace, "r1")
    durability, make, outlet = _durability(store, "r1")
    act = Activation(_flow().validate().steps["fetch"], 1, (), 0, None, {}, 0.0)

    async def go() -> tuple[int, bool, int]:
        durability.checkpoint(act, "ok", json.dumps({"n": 1}), None, _ok_event(make, act), 0.0)
        held = len(outlet.events)
        pending = durability.pending
        await durability.sync()
        return held, pending, len(outlet.events)

    assert (0, True, 1) == asyncio.run(go())
    (event,) = outlet.events
    assert event.durable_wait_s is not None
    assert event.durable_wait_s >= 0.0
    assert [("fetch", 1, "ok")] == [(row[1], row[2], row[3]) for row in store.lineage_checkpoints("r1")]


def test_a_stored_runs_checkpoints_replay_decoded_and_in_order(workspace: Path) -> None:
    """Checkpoints written by one durability layer read back, decoded, through a fresh one on the same file."""
    store = _store(workspace, "r2")
    durability, make, _outlet = _durability(store, "r2")
    steps = _flow().validate().steps
    fetch = Activation(steps["fetch"], 1, (), 0, None, {}, 0.0)
    send = Activation(steps["send"], 1, (), 0, None, {}, 0.0)
    failure = Failure("send", 2, "permanent", "ValueError", "no")

    async def go() -> None:
        durability.checkpoint(fetch, "ok", json.dumps({"n": 1}), None, _ok_event(make, fetch), 0.0)
        fell = make.event(
            "send", 1, 2, "failed", ValueError("no"), None, 1_700_000_001.0, 0.0, 0.0, None, None, (), None
        )
        durability.checkpoint(send, "fallback", None, json.dumps(dataclasses.asdict(failure)), fell, 0.0)
        await durability.sync()

    asyncio.run(go())
    fresh, _make, _outlet = _durability(store, "r2")
    recorded = list(fresh.recorded(store.lineage_checkpoints("r2")))
    assert [
        Recorded(1, "fetch", 1, "ok", {"n": 1}, None, None, None, None),
        Recorded(2, "send", 1, "fallback", None, None, failure, None, None),
    ] == [r._replace(seq=i + 1) for i, r in enumerate(recorded)]


def test_a_fork_row_rides_with_the_step_before_it() -> None:
    """An in-memory fork point is applied right after the step it forked at, never replayed as a step."""
    durability = Durability(None, "r3", make=EventMaker("r3", "w", "v", None, ()), emit=Outlet(()).emit, policy=HALT)
    rows = [(1, "a", 1, "ok", {"x": 1}, None, None, None), (2, "a", 1, "fork", {"x": 5}, None, None, None)]
    assert [Recorded(1, "a", 1, "ok", {"x": 1}, None, None, None, {"x": 5})] == list(durability.recorded(rows))


def test_a_gate_parks_under_halt_and_runs_once_a_policy_approves(workspace: Path) -> None:
    """HALT leaves the ticket open and answers park; the approve-all policy decides it and answers run."""
    store = _store(workspace, "r4")
    send = Activation(_flow().validate().steps["send"], 1, (), 0, None, {}, 0.0)
    halting, _make, halted_outlet = _durability(store, "r4")
    assert Admission("park") == asyncio.run(halting.admit(send, {}))
    assert ["waiting_approval"] == [e.status for e in halted_outlet.events]
    approving, _make, outlet = _durability(store, "r4", APPROVE_ALL)
    assert Admission("run") == asyncio.run(approving.admit(send, {}))
    assert ["approved"] == [e.status for e in outlet.events]
    ticket = store.tickets.of_visit("r4", "send", 1)
    assert ticket is not None
    assert "approved" == ticket.status


def test_after_a_crash_a_ready_step_with_no_record_was_cut_off_in_its_first_attempt(workspace: Path) -> None:
    """A step replay left ready, with nothing in the journal, counts as attempt 1 cut off by the crash."""
    store = _store(workspace, "r5")
    durability, _make, _outlet = _durability(store, "r5")
    fetch = Activation(_flow().validate().steps["fetch"], 1, (), 0, None, {}, 0.0)
    ((key, cut),) = durability.cut_offs([fetch]).items()
    assert (("fetch", 1), 1, 0, None) == (key, cut.attempt, cut.crashes, cut.not_before)
    assert cut.started_at is not None


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_finish_records_where_the_run_stopped(workspace: Path, status: str) -> None:
    """The run's last write leaves its row with the status, state and elapsed time it was given."""
    store = _store(workspace, f"r6{status}")
    durability, _make, _outlet = _durability(store, f"r6{status}")
    asyncio.run(durability.finish(status=status, state={"n": 2}, error=None, elapsed=1.5))
    row = store.run_row(f"r6{status}")
    assert (status, 1.5) == (row["status"], row["elapsed"])


def test_an_events_durable_wait_is_set_and_every_other_field_kept() -> None:
    """The checkpointed event handed to the sinks equals the settled one but for durable_wait_s."""
    from wfkit.engine._durability import _with_wait

    event = wf.StepEvent("r1", "flow", "v1", "s", 2, 3, "ok", latency_s=0.25, tools=("t",), extra={"k": 1})
    assert event._replace(durable_wait_s=0.5) == _with_wait(event, 0.5)
    assert wf.StepEvent is type(_with_wait(event, 0.5))
