"""The exceptions wfkit raises, all under one root.

    WfkitError
    ├── WorkflowDefinitionError (ValueError)   a workflow that cannot be built; lists every problem
    │   └── FlowSpecError                      a flow spec that cannot be loaded; each problem with its JSON path
    ├── ConditionError (ValueError)            a route condition that cannot be evaluated
    ├── StateConflictError (ValueError)        two parallel steps wrote one field with no merge rule
    ├── StateValueError (ValueError)           a step returned something that is not a dict of updates,
    │                                          or wrote to its read-only state
    ├── StateKeyError (KeyError)               a step read a field its state lacks (args[0] is the field)
    ├── StepTimeoutError (TimeoutError)        one attempt ran past its step timeout
    ├── MapItemError                           an item of a map step failed for good (index, cause)
    ├── SubflowError                           a sub-workflow's child run ended badly (child_run_id, cause)
    ├── StoreCorruptError                      the run store is damaged, truncated or not wfkit's
    ├── ProcessCrashedError                    an attempt's process died before it settled (found on resume)
    ├── WorkspaceNotFoundError (FileNotFoundError) a read found no workspace (reads never create one)
    ├── TicketError (ValueError)               unknown, closed or conflicting approval decision
    ├── DecisionsFileError (ValueError)        a decisions file that is unreadable, malformed, ambiguous,
    │                                          or names a gate its workflow does not have
    ├── SuiteFileError (TypeError)             a suite file (wfkit eval) that defines no `suite = wf.evals.Suite(...)`
    ├── LLMError                               a chat call failed (wfkit.llm)
    │   ├── LLMStatusError                     HTTP 4xx/5xx: status_code, retry_after
    │   ├── LLMTimeoutError (TimeoutError)     connect/read/write/pool timeout
    │   ├── LLMConnectionError (ConnectionError)
    │   ├── LLMResponseError (ValueError)      not chat-completions JSON (permanent)
    │   └── CassetteMissError (ValueError)     replay found no recorded request
    ├── ToolNotBoundError (ValueError)         a step called a tool its route did not bind
    ├── UnknownToolError (ValueError)          a bound tool no registry provides
    ├── ExecutorError                          work sent to Dask could not be done (wfkit._dask)
    │   ├── SchedulerUnreachableError (ConnectionError)  no scheduler answers at the address
    │   ├── SchedulerLostError (ConnectionError)  the scheduler went away while a job ran; carries job
    │   ├── DatasetUnreachableError (OSError)  a worker cannot see the dataset it must write to
    │   └── PartitionError                     a partition failed on every attempt; carries partition
    └── RunError                               a run ended badly; carries run_id (and step, attempt)
        ├── StepFailedError                    a step failed and had no fallback route
        ├── VisitLimitError                    a loop reached a step's visit bound
        ├── RunTimeoutError (TimeoutError)     the run's deadline passed
        ├── ApprovalRejectedError              a reviewer rejected a step with no on_reject route
        ├── ApprovalRequiredError              a gate met the headless policy "fail"
        ├── LeaseError                         another live process is executing the run, or took it over
        └── WorkflowChangedError (ValueError)  resuming would skip or lose completed steps

Errors raised by a step's own code keep their type: they reach the run through `raise ... from`.

Every error pickles, as a Dask worker sends it to its driver: one whose constructor takes more
than its message rebuilds itself from its constructor's arguments (its ``__reduce__``). The
``err.run`` a failed run's error carries (a step's own error too) is a ``DetachedRun`` in the
copy: the run's id, workflow, status and state, its live handle left behind.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from wfkit.model._retry import NOT_RETRIED


class WfkitError(Exception):
    """Root of every error wfkit raises itself."""

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self.args, self.__getstate__()

    def __getstate__(self) -> dict[str, Any]:
        """The attributes a pickled copy is given: all of them (``run``, the handle that
        ``Run.raise_for_status`` attaches, pickles itself as a ``DetachedRun``: it cannot leave its
        process)."""
        return dict(vars(self))


Location = tuple[str | int, ...]
"""Where a problem is, as keys into the workflow's spec (``("routes", "classify", "routes", 0, "go")``);
``()`` when it concerns the whole workflow. The flow spec prints it as a JSON path and the visual
builder marks the step or edge it names."""


Facts = dict[str, Any]
"""What a problem is, as data (``{"kind": "unreachable", "step": "lookup", "entry": "classify"}``);
``{}`` when it has no kind. A problem's message tells a programmer the fix in code; the visual
builder words the same problem from its facts, in terms of what its user sees and clicks."""


class WorkflowDefinitionError(WfkitError, ValueError):
    """A workflow that cannot run. `problems` lists each defect with how to fix it; `locations`
    says, for each, where in the definition it is (see :data:`Location`); `facts`, what it is
    (see :data:`Facts`)."""

    def __init__(
        self,
        workflow: str,
        problems: list[str],
        locations: list[Location] | None = None,
        facts: list[Facts] | None = None,
    ) -> None:
        self.workflow = workflow
        self.problems = list(problems)
        self.locations: list[Location] = list(locations) if locations is not None else [()] * len(self.problems)
        self.facts: list[Facts] = list(facts) if facts is not None else [{} for _ in self.problems]
        if not len(self.locations) == len(self.facts) == len(self.problems):
            raise ValueError(
                f"{len(self.problems)} problems but {len(self.locations)} locations and {len(self.facts)} facts"
            )
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"workflow {workflow!r} has {len(self.problems)} {noun}:\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.workflow, self.problems, self.locations, self.facts), self.__getstate__()


class FlowSpecError(WorkflowDefinitionError):
    """A flow spec (YAML/JSON) that cannot be loaded: each problem starts with its JSON path
    (``$.routes.classify.routes[1].go: ...``) and says how to fix it; `locations` holds the same
    paths as keys."""


class ConditionError(WfkitError, ValueError):
    """A route condition that is malformed or cannot compare the values it meets."""


class StateConflictError(WfkitError, ValueError):
    """Two steps running at the same time wrote the same state field, which has no merge rule."""

    def __init__(self, field: str, first: str, second: str) -> None:
        self.field, self.first, self.second = field, first, second
        super().__init__(
            f"steps {first!r} and {second!r} ran in parallel and both wrote state field {field!r}; "
            f"write different fields, or declare how values merge, e.g. "
            f"Workflow(..., merge={{{field!r}: wfkit.append}})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.field, self.first, self.second), self.__getstate__()


class StateValueError(WfkitError, ValueError):
    """A step returned something other than a mapping of state updates, or wrote to the read-only
    state it was given (``state[k] = v``): its cause is Python's own error."""


class StateKeyError(WfkitError, KeyError):
    """A step read a field its state lacks (``state["topic"]``). ``args[0]`` is the field, as in
    Python's own ``KeyError``; the message says what the state holds and how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(field)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.field, self.message), self.__getstate__()


class RunError(WfkitError):
    """A run that ended badly. `run_id`, `step` and `attempt` say where."""

    def __init__(self, message: str, *, run_id: str, step: str | None = None, attempt: int | None = None) -> None:
        self.run_id, self.step, self.attempt = run_id, step, attempt
        self._message = message  # without the "run X, step Y" its message starts with
        where = f"run {run_id}"
        if step is not None:
            where += f", step {step!r}"
        if attempt is not None:
            where += f", attempt {attempt}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = partial(type(self), run_id=self.run_id, step=self.step, attempt=self.attempt)
        return rebuild, (self._message,), self.__getstate__()


class StepFailedError(RunError):
    """A step failed (retries exhausted or a permanent error) and declared no fallback route.
    ``error_kind`` is the kind its last attempt's error was classified as (by the step's
    ``classify=`` if it has one): what a sub-workflow step running this run retries on."""

    error_kind: object = None  # an ErrorKind, set by the engine


class VisitLimitError(RunError):
    """A loop came back to a step more often than its `max_visits` allows."""


class RunTimeoutError(RunError, TimeoutError):
    """The run's deadline (`Workflow.run(..., timeout=...)`) passed before it finished."""


class StepTimeoutError(WfkitError, TimeoutError):
    """One attempt of a step ran past its timeout (classified transient, so it may be retried)."""

    def __init__(self, step: str, timeout: float, *, started: bool = True, by_deadline: bool = False) -> None:
        """``started=False``: the run's deadline had passed before the attempt could start (a
        decision that came late, a run resumed after its deadline), so the body never ran.
        ``by_deadline``: the attempt was cut off by the run's deadline, which came before the
        step's own timeout (if it has one): ``timeout`` is what the deadline left it."""
        self.step, self.timeout, self.started, self.by_deadline = step, timeout, started, by_deadline
        # Set by the engine when the body of an irreversible plain ``def`` step, which a thread
        # runs and nothing can stop, returned normally after its timeout: it is not retried.
        self.returned_late = False
        if not started:
            super().__init__(f"step {step!r} was not started: the run's deadline had passed")
        elif by_deadline:
            # "did not finish within 0.196 s" read as a timeout of the step's, which it may not have.
            super().__init__(f"step {step!r} was cut off after {timeout:.3g} s: the run's deadline passed")
        else:
            super().__init__(f"step {step!r} did not finish within {timeout:.3g} s")

    def __reduce__(self) -> tuple[Any, ...]:
        keywords = partial(type(self), started=self.started, by_deadline=self.by_deadline)
        return keywords, (self.step, self.timeout), self.__getstate__()


class MapItemError(WfkitError):
    """An item of a map step failed for good; ``index`` says which, ``__cause__`` is its error.
    The map step then follows its fallback (``ctx.failure`` names the item) or fails the run.
    ``not_retried``: why the item's retry policy made no retry of a retryable error, if it says."""

    def __init__(self, step: str, index: int, count: int, error: BaseException, not_retried: str | None = None) -> None:
        self.step, self.index, self.count, self.not_retried = step, index, count, not_retried
        why = "" if not_retried is None else f"{NOT_RETRIED}{not_retried}"
        super().__init__(f"item {index} of {count} of map step {step!r} failed: {type(error).__name__}: {error}{why}")
        self.__cause__ = error

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.step, self.index, self.count, self.__cause__, self.not_retried)
        return type(self), args, self.__getstate__()


class SubflowError(WfkitError):
    """A sub-workflow's child run ended badly (failed, timed out, cancelled). ``child_run_id`` says
    which run, ``__cause__`` is its error; ``error_kind`` is the kind of the step failure inside it,
    so the parent step's retry policy treats a transient failure in the child as transient."""

    def __init__(self, step: str, workflow: str, child_run_id: str, status: str, error: BaseException | None) -> None:
        self.step, self.workflow, self.child_run_id, self.status = step, workflow, child_run_id, status
        self.error_kind: object = None  # set by the engine: the kind of the failure inside the child
        why = "no error recorded" if error is None else f"{type(error).__name__}: {error}"
        super().__init__(f"sub-workflow {workflow!r} (run {child_run_id}) of step {step!r} {status}: {why}")
        self.__cause__ = error

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.step, self.workflow, self.child_run_id, self.status, self.__cause__)
        return type(self), args, self.__getstate__()


class StoreCorruptError(WfkitError):
    """The run store cannot be trusted: damaged, truncated, or not a wfkit store at all.

    ``path`` is the file; ``run_id``, ``row`` (the journal's seq) and ``column`` say where, when
    the damage is in one row.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        run_id: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path, self.run_id, self.row, self.column = path, run_id, row, column
        super().__init__(message)


class WorkspaceNotFoundError(WfkitError, FileNotFoundError):
    """A command that only reads was pointed at a workspace that does not exist (it is never created)."""


class TicketError(WfkitError, ValueError):
    """An approval decision that cannot be applied: unknown or closed ticket, conflicting decision."""


class DecisionsFileError(WfkitError, ValueError):
    """A decisions file (:class:`wfkit.DecisionsFile`) that cannot be replayed: unreadable, a
    malformed line, two lines deciding one gate visit differently, or a line naming a step that
    is no approval gate of its workflow. The message names the file, the line(s) and the fix."""


class SuiteFileError(WfkitError, TypeError):
    """A suite file (``wf.evals.load_suite``, ``wfkit eval``) that defines no ``suite``, or defines
    it as something other than a :class:`wfkit.evals.Suite`. The message names the file and what
    it defines; ``wfkit eval`` prints it without a traceback."""


class ApprovalRejectedError(RunError):
    """A reviewer rejected a gated step that declares no ``on_reject`` route."""


class ProcessCrashedError(WfkitError):
    """The process died (kill -9, a segfault, power loss) while an attempt of a step was running.

    Never raised by a step: resume records it as the attempt's error (kind ``unknown``), so a
    crash counts against the step's retry budget like any failure, and a step that keeps killing
    its process ends the run instead of looping for ever.
    """


class LeaseError(RunError):
    """Another live process holds the run's lease: only one process executes a run at a time. Also
    what a process stopped past its lease meets when it comes back to a run another process took
    over meanwhile: its run ends with it, and nothing of it is written after the takeover."""


class WorkflowChangedError(RunError, ValueError):
    """The workflow changed so that a resumed run would lose completed steps."""


class ApprovalRequiredError(RunError):
    """A gated step was reached under the headless policy "fail" (no human, no recorded decision)."""


class ExecutorError(WfkitError):
    """Work sent to a Dask cluster could not be done."""


class SchedulerUnreachableError(ExecutorError, ConnectionError):
    """No Dask scheduler answered at the address (or it has no workers); nothing was started."""

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.address, *self.args), self.__getstate__()


class SchedulerLostError(ExecutorError, ConnectionError):
    """The connection to the Dask scheduler closed while a job ran (the scheduler stopped, or the
    network between them failed); Dask dropped the job's work, and the job was given up."""

    def __init__(self, address: str, job: str, message: str) -> None:
        self.address, self.job = address, job
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.address, self.job, *self.args), self.__getstate__()


class DatasetUnreachableError(ExecutorError, OSError):
    """A Dask worker cannot see the dataset its partitions must be written to."""


class PartitionError(ExecutorError):
    """A partition of a job failed on every attempt Dask gave it; ``partition`` says which."""

    def __init__(self, job: str, partition: int, message: str) -> None:
        self.job, self.partition = job, partition
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.job, self.partition, *self.args), self.__getstate__()


class StateSizeWarning(UserWarning):
    """A state value large enough to slow every checkpoint and resume (warned once per field)."""


class RouteFieldWarning(UserWarning):
    """A route's condition compared a field the run's state does not hold (not an input, written by
    no step so far, declared by none): it compared false, as a misspelt name would. Warned once per
    run and field, at the line that declared the routes (``flow.route(...)``, a spec file's line),
    where Python's default filter shows it once."""


class SecretInStateWarning(UserWarning):
    """A durable run's state holds a value the redaction boundary takes out of what is stored (a
    secret, or text shaped like one): its checkpoint keeps ``[REDACTED]`` in its place, which is
    what a resumed run reads. Warned once per field as it is written (at the ``def`` of the step
    that wrote it), and again on resume."""


class UnfinishedJobWarning(UserWarning):
    """A Dask job read from a dataset has no end recorded and its driver (on this host) is gone: none
    of its rows are counted (its finished partitions stay staged) until ``wfkit doctor --repair``
    records it as ended: committed when every partition its driver planned was (its rows then
    count), else aborted. Warned once per job."""


class AlreadyDecidedWarning(UserWarning):
    """A decision asked again, the same way, of a gate already decided (``run.approve`` once more,
    a colleague's decision): it records nothing; the message says who decided it, when and why."""


class WorkflowChangedWarning(UserWarning):
    """A run is resumed with a workflow whose definition differs from the one that started it."""
