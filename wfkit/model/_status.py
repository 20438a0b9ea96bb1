"""The statuses a run goes through."""

from __future__ import annotations


class RunStatus:
    """The values of ``Run.status``."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    WAITING_APPROVAL = "waiting_approval"
    NEEDS_RECONCILIATION = "needs_reconciliation"

    FINISHED = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED})
    HALTED = frozenset({WAITING_APPROVAL, NEEDS_RECONCILIATION})
