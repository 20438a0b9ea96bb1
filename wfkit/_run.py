"""The handle on one run: its status, state, events and error, awaitable until it ends."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Generator
from typing import Any

from wfkit._engine import Execution, RunStatus
from wfkit._errors import RunError
from wfkit._events import StepEvent


class Run:
    """One run of a workflow. Returned by ``Workflow.start``, ``run`` and ``arun``.

    ``await run`` (or ``run.wait()`` outside a loop) waits for the end and raises the run's error
    if it failed; ``run.state`` is the state so far, ``run.events`` one event per attempt.
    """

    def __init__(self, execution: Execution) -> None:
        self._exec = execution
        self._task: asyncio.Future[None] | None = None
        self._cfuture: concurrent.futures.Future[None] | None = None

    @property
    def run_id(self) -> str:
        return self._exec.run_id

    @property
    def workflow(self) -> str:
        return self._exec.workflow

    @property
    def status(self) -> str:
        return self._exec.status

    @property
    def state(self) -> dict[str, Any]:
        """A copy of the run's state as it stands."""
        return dict(self._exec.state)

    @property
    def error(self) -> BaseException | None:
        return self._exec.error

    @property
    def events(self) -> list[StepEvent]:
        """Every attempt's event so far, in emission order."""
        return list(self._exec.events)

    @property
    def late_results(self) -> list[dict[str, Any]]:
        """Sync steps that finished after their timeout: their results were discarded."""
        return list(self._exec.late_results)

    @property
    def started_at(self) -> float | None:
        return self._exec.started_at

    @property
    def ended_at(self) -> float | None:
        return self._exec.ended_at

    def done(self) -> bool:
        return self._exec.status in RunStatus.FINISHED

    def path(self) -> list[str]:
        """The steps that completed, in order (branches and loops included)."""
        return [e.step for e in self._exec.events if e.status == "ok"]

    def raise_for_status(self) -> Run:
        """Raise the run's error if it failed; return the run otherwise."""
        error = self._exec.error
        if error is not None:
            if isinstance(error, RunError) and getattr(error, "run", None) is None:
                error.run = self  # type: ignore[attr-defined]
            raise error
        return self

    def result(self) -> dict[str, Any]:
        """The final state of a finished run; raises its error if it failed."""
        if not self.done():
            raise RuntimeError(f"run {self.run_id} is still {self.status}; await it first")
        self.raise_for_status()
        return self.state

    def cancel(self) -> None:
        """Cancel a started run: running steps are cancelled and it ends as 'cancelled'."""
        if self._task is not None:
            self._task.cancel()
        elif self._cfuture is not None:
            self._cfuture.cancel()

    def wait(self, timeout: float | None = None) -> Run:
        """Block until a run started from synchronous code ends (not from inside its loop)."""
        if self._cfuture is None:
            if self.done():
                return self.raise_for_status()
            raise RuntimeError("this run executes on the current event loop: use `await run`")
        with contextlib.suppress(concurrent.futures.CancelledError):
            self._cfuture.result(timeout)
        return self.raise_for_status()

    def __await__(self) -> Generator[Any, None, Run]:
        return self._wait_async().__await__()

    async def _wait_async(self) -> Run:
        if self._task is not None and not self._task.done():
            # shield: interrupting the awaiting cell must not kill the run; use run.cancel().
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise  # the waiter was cancelled, not the run
        elif self._cfuture is not None and not self._cfuture.done():
            await asyncio.wrap_future(self._cfuture)
        return self.raise_for_status()

    def __repr__(self) -> str:
        steps = sum(1 for e in self._exec.events if e.status == "ok")
        err = f", error={type(self.error).__name__}" if self.error is not None else ""
        return (
            f"<Run {self.run_id} of {self.workflow!r}: {self.status}, "
            f"{steps} steps done, {len(self._exec.events)} events{err}>"
        )
