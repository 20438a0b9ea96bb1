"""Sub-workflows: a step that runs another workflow as a child run (``ChildRuns``).

The child is a run of its own (its own id, checkpoints, tickets), driven inside the parent step's
attempt, so the step's timeout and retries apply to the child run as a whole. Its events and
streamed chunks reach the parent's observers, tagged with both run ids. A child that halts for an
approval halts the parent: the parent step is parked, and when the parent resumes, the step runs
again and picks up the same child run where it stopped (a finished child is never run twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from wfkit.model._approvals import ApprovalPolicy
from wfkit.model._context import ChatModel
from wfkit.model._errors import StateValueError, SubflowError, WfkitError
from wfkit.model._events import StepEvent, TokenChunk
from wfkit.model._retry import classify_error
from wfkit.model._status import RunStatus
from wfkit.model._steps import StepSpec
from wfkit.model._suggest import did_you_mean
from wfkit.store._store import Store


def _closest(names: list[str], fields: Mapping[str, Any]) -> str:
    """`` (did you mean 'text'?)`` for the first of ``names`` a field of ``fields`` is close to."""
    for name in names:
        hint = did_you_mean(name, [str(f) for f in fields])
        if hint:
            return hint if len(names) == 1 else hint.replace("(did you mean", f"({name!r}: did you mean", 1)
    return ""


class ParentServices(Protocol):
    """Where the parent's chat client is (made on its first ``ctx.llm``) and who hears its streamed text."""

    @property
    def llm(self) -> ChatModel | None: ...

    @property
    def chunk_observers(self) -> list[Callable[[TokenChunk], object]]: ...


class ParentViews(Protocol):
    """Who watches the parent run live: they hear the child's events too."""

    @property
    def observers(self) -> list[Callable[[StepEvent | None], object]]: ...


class ChildRun(Protocol):
    """What the parent needs of a child run (an ``Execution``)."""

    run_id: str
    status: str
    state: dict[str, Any]
    error: BaseException | None
    observers: list[Callable[[StepEvent | None], object]]
    chunk_observers: list[Callable[[TokenChunk], object]]

    async def drive(self) -> None: ...


class ParentRun(Protocol):
    """What a sub-workflow's child run inherits from its parent: where it is stored, how its
    gates are decided, its model, seed and sinks."""

    @property
    def run_id(self) -> str: ...

    @property
    def store(self) -> Store | None: ...

    @property
    def policy(self) -> ApprovalPolicy: ...

    @property
    def llm(self) -> ChatModel | None: ...

    @property
    def seed(self) -> int | None: ...

    @property
    def user_sinks(self) -> tuple[Callable[[StepEvent], object], ...]: ...


class ChildSource(Protocol):
    """What the parent needs of a sub-workflow (``Workflow`` is one): its child run for a step visit."""

    async def _achild_execution(
        self, parent: ParentRun, step: str, visit: int, inputs: Mapping[str, Any]
    ) -> ChildRun | dict[str, Any]: ...


class ChildHalted(Exception):
    """The child run halted (waiting for approval or reconciliation): the parent step parks."""

    def __init__(self, child_run_id: str, status: str) -> None:
        self.child_run_id, self.status = child_run_id, status
        super().__init__(f"sub-workflow run {child_run_id} is {status}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.child_run_id, self.status), vars(self)


class ChildRuns:
    """Runs the child run of a parent's sub-workflow steps (one per parent run; a ``ParentRun``).

    Given what a child inherits (store, policy, model via the run's services, seed, sinks) and
    where the parent's live views are, never the parent run itself.
    """

    __slots__ = ("_services", "_views", "policy", "run_id", "seed", "store", "user_sinks")

    def __init__(
        self,
        run_id: str,
        *,
        store: Store | None,
        policy: ApprovalPolicy,
        services: ParentServices,
        views: ParentViews,
        seed: int | None,
        user_sinks: tuple[Callable[[StepEvent], object], ...],
    ) -> None:
        self.run_id = run_id
        self.store = store
        self.policy = policy
        self.seed = seed
        self.user_sinks = user_sinks
        # Holders, not their lists: the Run handle swaps in its own lists after the run is built.
        self._services = services
        self._views = views

    @property
    def llm(self) -> ChatModel | None:
        return self._services.llm

    async def run(self, spec: StepSpec, state: Mapping[str, Any], visit: int) -> dict[str, Any]:
        """Run (or resume) the child of ``spec`` and return the parent's updates from its final state."""
        sub = spec.subflow
        assert sub is not None
        missing = [parent for _, parent in sub.inputs if parent not in state]
        if missing:
            raise StateValueError(
                f"sub-workflow step {spec.name!r} maps the parent's field(s) {missing} into workflow "
                f"{sub.workflow.name!r}, but the state has no such field here (it holds {sorted(state)})"
                f"{_closest(missing, state)}; a step before it must write them, or fix the name in inputs="
            )
        inputs = {child: state[parent] for child, parent in sub.inputs}
        source: ChildSource = sub.workflow  # type: ignore[assignment]  # a Workflow; the model names it by a Protocol
        child = await source._achild_execution(self, spec.name, visit, inputs)
        if not isinstance(child, dict):
            child.observers.append(self._forward_event)
            child.chunk_observers.append(self._forward_chunk)
            await child.drive()
            if child.status in RunStatus.HALTED:
                raise ChildHalted(child.run_id, child.status)
            if child.status != RunStatus.SUCCEEDED:
                error = SubflowError(spec.name, sub.workflow.name, child.run_id, child.status, child.error)
                # The kind the child's failing step was given (by its own classify=, if any)
                # decides whether a retry may help; else that of the step's own exception.
                kind = getattr(child.error, "error_kind", None)
                if kind is None:
                    inner: BaseException | None = child.error
                    while isinstance(inner, WfkitError) and inner.__cause__ is not None:
                        inner = inner.__cause__
                    if inner is not None and inner is not child.error:
                        kind = classify_error(inner)
                error.error_kind = kind
                raise error
            final: Mapping[str, Any] = child.state
        else:
            final = child
        absent = [name for _, name in sub.outputs if name not in final]
        if absent:
            raise StateValueError(
                f"sub-workflow step {spec.name!r}: workflow {sub.workflow.name!r} ended without the "
                f"field(s) {absent} that outputs= maps back (its final state holds {sorted(final)})"
                f"{_closest(absent, final)}; map fields its steps write"
            )
        return {parent: final[name] for parent, name in sub.outputs}

    def _forward_event(self, event: StepEvent | None) -> None:
        if event is not None:  # the child's end is not the parent's
            for observer in self._views.observers:
                observer(event)

    def _forward_chunk(self, chunk: TokenChunk) -> None:
        for observer in self._services.chunk_observers:
            observer(chunk)
