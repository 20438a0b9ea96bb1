"""Sub-workflows: a step that runs another workflow as a child run. A mixin of
:class:`wfkit.engine._engine.Execution`.

The child is a run of its own (its own id, checkpoints, tickets), driven inside the parent step's
attempt, so the step's timeout and retries apply to the child run as a whole. Its events and
streamed chunks reach the parent's observers, tagged with both run ids. A child that halts for an
approval halts the parent: the parent step is parked, and when the parent resumes, the step runs
again and picks up the same child run where it stopped (a finished child is never run twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from wfkit.model._errors import StateValueError, SubflowError, WfkitError
from wfkit.model._events import StepEvent, TokenChunk
from wfkit.model._retry import classify_error
from wfkit.model._status import RunStatus
from wfkit.model._steps import StepSpec


class ChildRun(Protocol):
    """What the parent needs of a child run (an ``Execution``)."""

    run_id: str
    status: str
    state: dict[str, Any]
    error: BaseException | None
    observers: list[Callable[[StepEvent | None], object]]
    chunk_observers: list[Callable[[TokenChunk], object]]

    async def drive(self) -> None: ...


class ChildSource(Protocol):
    """What the parent needs of a sub-workflow (``Workflow`` is one): its child run for a step visit."""

    def _child_execution(
        self, parent: Any, step: str, visit: int, inputs: Mapping[str, Any]
    ) -> ChildRun | dict[str, Any]: ...


class ChildHalted(Exception):
    """The child run halted (waiting for approval or reconciliation): the parent step parks."""

    def __init__(self, child_run_id: str, status: str) -> None:
        self.child_run_id, self.status = child_run_id, status
        super().__init__(f"sub-workflow run {child_run_id} is {status}")


class Subflows:
    """Running a sub-workflow step's child run (mixed into Execution, which provides the rest)."""

    run_id: str
    observers: list[Callable[[StepEvent | None], object]]
    chunk_observers: list[Callable[[TokenChunk], object]]

    async def _run_child(self, spec: StepSpec, state: Mapping[str, Any], visit: int) -> dict[str, Any]:
        """Run (or resume) the child of ``spec`` and return the parent's updates from its final state."""
        sub = spec.subflow
        assert sub is not None
        missing = [parent for _, parent in sub.inputs if parent not in state]
        if missing:
            raise StateValueError(
                f"sub-workflow step {spec.name!r} maps the parent's field(s) {missing} into workflow "
                f"{sub.workflow.name!r}, but the state has no such field here; a step before it must write them"
            )
        inputs = {child: state[parent] for child, parent in sub.inputs}
        source: ChildSource = sub.workflow  # type: ignore[assignment]  # a Workflow; the model names it by a Protocol
        child = source._child_execution(self, spec.name, visit, inputs)
        if not isinstance(child, dict):
            child.observers.append(self._forward_event)
            child.chunk_observers.append(self._forward_chunk)
            await child.drive()
            if child.status in RunStatus.HALTED:
                raise ChildHalted(child.run_id, child.status)
            if child.status != RunStatus.SUCCEEDED:
                error = SubflowError(spec.name, sub.workflow.name, child.run_id, child.status, child.error)
                inner: BaseException | None = child.error
                while isinstance(inner, WfkitError) and inner.__cause__ is not None:
                    inner = inner.__cause__  # the step's own exception decides whether a retry may help
                if inner is not None and inner is not child.error:
                    error.error_kind = classify_error(inner)
                raise error
            final: Mapping[str, Any] = child.state
        else:
            final = child
        absent = [name for _, name in sub.outputs if name not in final]
        if absent:
            raise StateValueError(
                f"sub-workflow step {spec.name!r}: workflow {sub.workflow.name!r} ended without the "
                f"field(s) {absent} that outputs= maps back; map fields its steps write"
            )
        return {parent: final[name] for parent, name in sub.outputs}

    def _forward_event(self, event: StepEvent | None) -> None:
        if event is not None:  # the child's end is not the parent's
            for observer in self.observers:
                observer(event)

    def _forward_chunk(self, chunk: TokenChunk) -> None:
        for observer in self.chunk_observers:
            observer(chunk)
