"""wfkit: prototype and evaluate LLM-agent workflows in Jupyter.

Workflows mix DAG fan-out and joins with state-machine loops and structured routes; steps retry
by policy with classified errors, time out per step and per run, and emit one event per attempt.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from wfkit._version import __version__
from wfkit.engine._batch import BatchResult
from wfkit.engine._run import BatchRunOptions, ResumeOptions, Run, RunOptions, drain
from wfkit.engine._run import set_renderer as _set_renderer
from wfkit.engine._workflow import Workflow
from wfkit.engine._workflow import resume_decided as _resume_decided
from wfkit.logs._register import install as _install_accessor
from wfkit.logs._steplog import steps
from wfkit.logs._summaries import StepLog
from wfkit.model._approvals import Approval, ApprovalPolicy, DecisionsFile, Ticket
from wfkit.model._approvals import set_ticket_decider as _set_ticket_decider
from wfkit.model._context import ChatModel, Failure, StepContext, ToolProvider
from wfkit.model._errors import (
    AlreadyDecidedWarning,
    ApprovalRejectedError,
    ApprovalRequiredError,
    ConditionError,
    DatasetUnreachableError,
    DecisionsFileError,
    ExecutorError,
    FlowSpecError,
    LeaseError,
    MapItemError,
    PartitionError,
    ProcessCrashedError,
    RouteFieldWarning,
    RunError,
    RunTimeoutError,
    SchedulerLostError,
    SchedulerUnreachableError,
    SecretInStateWarning,
    StateConflictError,
    StateKeyError,
    StateSizeWarning,
    StateValueError,
    StepFailedError,
    StepTimeoutError,
    StoreCorruptError,
    SubflowError,
    SuiteFileError,
    TicketError,
    UnfinishedJobWarning,
    VisitLimitError,
    WfkitError,
    WorkflowChangedError,
    WorkflowChangedWarning,
    WorkflowDefinitionError,
    WorkspaceNotFoundError,
)
from wfkit.model._events import Status, StepEvent, TokenChunk
from wfkit.model._merge import add, append, extend, union
from wfkit.model._processors import mark_secret, redact_secrets, truncate
from wfkit.model._retry import (
    ErrorKind,
    PermanentError,
    RetryPolicy,
    TransientError,
    classify_error,
    retry_after_of,
)
from wfkit.model._routes import END, Condition, Go, Route, go, when
from wfkit.model._status import RunStatus
from wfkit.model._steps import Cache
from wfkit.notebook._pending import Pending, pending
from wfkit.notebook._renderer import run_bundle as _run_bundle
from wfkit.store._codec import state_type
from wfkit.store._workspace import Workspace
from wfkit.store._workspace import decide_ticket as _decide_ticket
from wfkit.store._workspace import set_decision_hook as _set_decision_hook

__all__ = [
    "END",
    "AlreadyDecidedWarning",
    "Approval",
    "ApprovalPolicy",
    "ApprovalRejectedError",
    "ApprovalRequiredError",
    "BatchResult",
    "BatchRunOptions",
    "Cache",
    "ChatModel",
    "Condition",
    "ConditionError",
    "DatasetUnreachableError",
    "DecisionsFile",
    "DecisionsFileError",
    "ErrorKind",
    "ExecutorError",
    "Failure",
    "FlowSpecError",
    "Go",
    "LeaseError",
    "MapItemError",
    "PartitionError",
    "Pending",
    "PermanentError",
    "ProcessCrashedError",
    "ResumeOptions",
    "RetryPolicy",
    "Route",
    "RouteFieldWarning",
    "Run",
    "RunError",
    "RunOptions",
    "RunStatus",
    "RunTimeoutError",
    "SchedulerLostError",
    "SchedulerUnreachableError",
    "SecretInStateWarning",
    "StateConflictError",
    "StateKeyError",
    "StateSizeWarning",
    "StateValueError",
    "Status",
    "StepContext",
    "StepEvent",
    "StepFailedError",
    "StepLog",
    "StepTimeoutError",
    "StoreCorruptError",
    "SubflowError",
    "SuiteFileError",
    "Ticket",
    "TicketError",
    "TokenChunk",
    "ToolProvider",
    "TransientError",
    "UnfinishedJobWarning",
    "VisitLimitError",
    "WfkitError",
    "Workflow",
    "WorkflowChangedError",
    "WorkflowChangedWarning",
    "WorkflowDefinitionError",
    "Workspace",
    "WorkspaceNotFoundError",
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
    "state_type",
    "steps",
    "truncate",
    "union",
    "when",
]

# Composition root: the engine's Run is handed the notebook layer's renderer, so the engine never
# imports the layer that draws it (_display itself imports nothing heavy).
_set_renderer(_run_bundle)
# ... and deciding a ticket from a Workspace (or the ticket itself) resumes its run when this process
# defines the workflow, without the store importing the engine.
_set_decision_hook(_resume_decided)
_set_ticket_decider(_decide_ticket)

# `df.wf` on any step-log frame, even one pandas read by itself, without importing pandas here:
# registered now if pandas is loaded, else right after it is (see wfkit/logs/_register.py).
_install_accessor()

# Public namespaces that pull in heavy libraries (httpx, pandas, ipywidgets, jsonschema) load on
# first use, so `import wfkit` stays light: `wf.llm.ChatClient`, `wf.evals.Suite`.
_SUBMODULES = frozenset({"evals", "examples", "llm", "testing", "widgets"})
# The visual flow builder needs anywidget (the `builder` extra): loaded when first asked for.
_BUILDER = frozenset({"edit", "FlowEditor"})


if _TYPE_CHECKING:  # what the lazy names are, for type checkers (at run time: __getattr__)
    from wfkit import evals as evals
    from wfkit import llm as llm
    from wfkit import testing as testing
    from wfkit import widgets as widgets
    from wfkit.notebook._builderwidget import FlowEditor as FlowEditor
    from wfkit.notebook._builderwidget import edit as edit


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"wfkit.{name}")
    if name in _BUILDER:
        import importlib

        return getattr(importlib.import_module("wfkit.notebook._builderwidget"), name)
    hint = ""
    if not name.startswith("_"):  # (tools probe dunders: they get the plain error, at once)
        from wfkit.model._suggest import did_you_mean

        # ``wf.Retry`` for ``wf.RetryPolicy``: Python 3.11 suggests no name past a module's __getattr__.
        hint = did_you_mean(name, [known for known in __dir__() if not known.startswith("_")])
    raise AttributeError(f"module 'wfkit' has no attribute {name!r}{hint}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES, *_BUILDER})
