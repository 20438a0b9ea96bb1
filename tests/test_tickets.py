"""Tickets in the store: one per step visit, decided once, listed by status and run."""

from __future__ import annotations

from pathlib import Path

import pytest

import wfkit as wf
from wfkit.model._approvals import Ticket
from wfkit.store._store import Store


def _ticket(ticket_id: str = "t1", visit: int = 1) -> Ticket:
    return Ticket(ticket_id, "r1", "flow", "gate", visit, "why", {"amount": 5}, "open", None, None, 1.0, None)


def _event(ticket: Ticket) -> wf.StepEvent:
    return wf.StepEvent(
        ticket.run_id, ticket.workflow, "v", ticket.step, ticket.visit, 0, ticket.status, started_at=1.0, ended_at=1.0
    )


def test_one_ticket_per_visit_and_decided_once(tmp_path: Path) -> None:
    """Opening twice returns the first ticket; the same decision again changes nothing; the other
    decision is refused; an unknown ticket is an error."""
    store = Store(tmp_path / "s.db")
    first = store.tickets.create(_ticket(), _event(_ticket()))
    assert first == store.tickets.create(_ticket("t2"), _event(_ticket("t2")))
    assert ["t1"] == [t.ticket_id for t in store.tickets.find()]
    decided, changed = store.tickets.decide("t1", "approve", "ann", "fine", _event)
    assert (True, "approved", "ann") == (changed, decided.status, decided.decided_by)
    assert (store.tickets.get("t1"), False) == store.tickets.decide("t1", "approve", "ann", "again", _event)
    with pytest.raises(wf.TicketError, match="already approved by ann"):
        store.tickets.decide("t1", "reject", "bob", "", _event)
    with pytest.raises(wf.TicketError, match="no approval ticket 'nope'"):
        store.tickets.get("nope")
    with pytest.raises(wf.TicketError, match="reviewer's name"):
        store.tickets.decide("t1", "approve", " ", "", _event)
    assert [] == store.tickets.find()
    assert ["t1"] == [t.ticket_id for t in store.tickets.find(status=None, run_id="r1")]
    store.close()
