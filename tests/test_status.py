"""Run statuses: finished and halted are different things."""

from __future__ import annotations

from wfkit import RunStatus


def test_finished_and_halted_do_not_overlap() -> None:
    """A halted run (waiting for a person) is not finished, and every status is one or the other
    once the run has stopped."""
    assert set() == RunStatus.FINISHED & RunStatus.HALTED
    assert {"succeeded", "failed", "timed_out", "cancelled"} == set(RunStatus.FINISHED)
    assert {"waiting_approval", "needs_reconciliation"} == set(RunStatus.HALTED)
