"""The statuses a run goes through."""

from __future__ import annotations


class RunStatus:
    """The values of ``Run.status`` (and of ``wfkit runs``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    WAITING_APPROVAL = "waiting_approval"
    NEEDS_RECONCILIATION = "needs_reconciliation"
    # Read from a store only: the run was cut off (its process died, or a resume was killed after
    # the last reconciliation) and nothing runs it now. Resume it.
    INTERRUPTED = "interrupted"

    FINISHED = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED})
    HALTED = frozenset({WAITING_APPROVAL, NEEDS_RECONCILIATION})
    ALL = (
        PENDING,
        RUNNING,
        SUCCEEDED,
        FAILED,
        TIMED_OUT,
        CANCELLED,
        WAITING_APPROVAL,
        NEEDS_RECONCILIATION,
        INTERRUPTED,
    )
