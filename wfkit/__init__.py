"""wfkit: prototype and evaluate LLM-agent workflows in Jupyter.

Workflows mix DAG fan-out and joins with state-machine loops and structured routes; steps retry
by policy with classified errors, time out per step and per run, and emit one event per attempt.
"""

from wfkit._analysis import steps
from wfkit._approvals import Approval, ApprovalPolicy, DecisionsFile, Ticket
from wfkit._conditions import Condition, when
from wfkit._context import Failure, StepContext
from wfkit._errors import (
    ApprovalRejectedError,
    ApprovalRequiredError,
    ConditionError,
    FlowSpecError,
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
from wfkit._evals import EvalResult, Suite, evaluate, evaluate_async, load_dataset, load_suite
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
from wfkit._scorers import (
    Case,
    Score,
    contains,
    cost_budget,
    custom,
    exact_match,
    json_schema,
    latency_budget,
    llm_judge,
    numeric,
    regex,
    route_taken,
    tools_used,
)
from wfkit._status import RunStatus
from wfkit._version import __version__
from wfkit._workflow import Workflow
from wfkit._workspace import Workspace

__all__ = [
    "END",
    "Approval",
    "ApprovalPolicy",
    "ApprovalRejectedError",
    "ApprovalRequiredError",
    "Case",
    "Condition",
    "ConditionError",
    "DecisionsFile",
    "ErrorKind",
    "EvalResult",
    "Failure",
    "FlowSpecError",
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
    "Score",
    "StateConflictError",
    "StateValueError",
    "Status",
    "StepContext",
    "StepEvent",
    "StepFailedError",
    "StepTimeoutError",
    "StoreCorruptError",
    "Suite",
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
    "contains",
    "cost_budget",
    "custom",
    "drain",
    "evaluate",
    "evaluate_async",
    "exact_match",
    "extend",
    "go",
    "json_schema",
    "latency_budget",
    "llm_judge",
    "load_dataset",
    "load_suite",
    "mark_secret",
    "numeric",
    "pending",
    "redact_secrets",
    "regex",
    "retry_after_of",
    "route_taken",
    "steps",
    "tools_used",
    "truncate",
    "union",
    "when",
]

# The LLM layer imports httpx: its names load on first use, so `import wfkit` stays light.
_LAZY = {
    "ChatClient": "wfkit._llm",
    "Reply": "wfkit._llm",
    "LLMError": "wfkit._llm",
    "LLMStatusError": "wfkit._llm",
    "LLMTimeoutError": "wfkit._llm",
    "LLMConnectionError": "wfkit._llm",
    "LLMResponseError": "wfkit._llm",
    "SimulatedModel": "wfkit._simulated",
    "Cassette": "wfkit._cassette",
    "CassetteMissError": "wfkit._cassette",
    "Prices": "wfkit._pricing",
    "PRICES": "wfkit._pricing",
    "Price": "wfkit._pricing",
    "ToolInfo": "wfkit._tools",
    "ToolRegistry": "wfkit._tools",
    "ToolNotBoundError": "wfkit._tools",
    "Tool": "wfkit._tools",
    "UnknownToolError": "wfkit._tools",
    "example_registry": "wfkit._tools",
    "edit": "wfkit._builderwidget",
    "FlowEditor": "wfkit._builderwidget",
}
__all__ += sorted(_LAZY)


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wfkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
