"""wfkit: prototype and evaluate LLM-agent workflows in Jupyter.

Workflows mix DAG fan-out and joins with state-machine loops and structured routes; steps retry
by policy with classified errors, time out per step and per run, and emit one event per attempt.
"""

from wfkit._analysis import steps
from wfkit._approvals import Approval, ApprovalPolicy, DecisionsFile, Ticket
from wfkit._conditions import Condition, when
from wfkit._context import Failure, StepContext
from wfkit._engine import RunStatus
from wfkit._errors import (
    ApprovalRejectedError,
    ApprovalRequiredError,
    ConditionError,
    LeaseError,
    RunError,
    RunTimeoutError,
    StateConflictError,
    StateValueError,
    StepFailedError,
    StepTimeoutError,
    StoreCorruptError,
    TicketError,
    VisitLimitError,
    WfkitError,
    WorkflowChangedError,
    WorkflowChangedWarning,
    WorkflowDefinitionError,
)
from wfkit._events import Status, StepEvent
from wfkit._merge import add, append, extend, union
from wfkit._pending import Pending, pending
from wfkit._processors import mark_secret, redact_secrets, truncate
from wfkit._retry import (
    ErrorKind,
    PermanentError,
    RetryPolicy,
    TransientError,
    classify_error,
    retry_after_of,
)
from wfkit._routing import END, Go, Route, go
from wfkit._run import Run, drain
from wfkit._version import __version__
from wfkit._workflow import Workflow
from wfkit._workspace import Workspace

__all__ = [
    "END",
    "Approval",
    "ApprovalPolicy",
    "ApprovalRejectedError",
    "ApprovalRequiredError",
    "Condition",
    "ConditionError",
    "DecisionsFile",
    "ErrorKind",
    "Failure",
    "Go",
    "LeaseError",
    "Pending",
    "PermanentError",
    "RetryPolicy",
    "Route",
    "Run",
    "RunError",
    "RunStatus",
    "RunTimeoutError",
    "StateConflictError",
    "StateValueError",
    "Status",
    "StepContext",
    "StepEvent",
    "StepFailedError",
    "StepTimeoutError",
    "StoreCorruptError",
    "Ticket",
    "TicketError",
    "TransientError",
    "VisitLimitError",
    "WfkitError",
    "Workflow",
    "WorkflowChangedError",
    "WorkflowChangedWarning",
    "WorkflowDefinitionError",
    "Workspace",
    "__version__",
    "add",
    "append",
    "classify_error",
    "drain",
    "extend",
    "go",
    "mark_secret",
    "pending",
    "redact_secrets",
    "retry_after_of",
    "steps",
    "truncate",
    "union",
    "when",
]
