"""The handle on one run: its status, state, events and error, awaitable until it ends or halts,
and the way to decide its approval gates and resume it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypedDict

from wfkit.engine._engine import Execution
from wfkit.engine._loops import background_loop, running_loop, woken_by_signals
from wfkit.model._approvals import ApprovalPolicy, Ticket, warn_already_decided
from wfkit.model._context import ChatModel, ToolProvider, check_chat_model
from wfkit.model._errors import TicketError
from wfkit.model._events import Sink, StepEvent, TokenChunk
from wfkit.model._seconds import Seconds, as_timeout
from wfkit.model._status import RunStatus
from wfkit.model._suggest import closest, unexpected_keywords
from wfkit.store._workspace import decision_event
from wfkit.store._writer import WriteOp

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from wfkit.model._graph import Graph

# Runs launched in this process and not awaited yet, for drain(). Strong references: a notebook
# often starts a run without keeping its handle, and drain() must still wait for it.
_started: set[Run] = set()

# The newest handle of each stored run in this process, while someone holds it: a decision made
# elsewhere (the pending panel, a Workspace, the ticket) resumes the run through the handle its
# owner holds, so that handle, and the live view drawn from it, follow the run instead of staying
# "waiting_approval" while a second handle nobody holds runs it to the end.
_handles: weakref.WeakValueDictionary[str, Run] = weakref.WeakValueDictionary()


def held_handle(run_id: str) -> Run | None:
    """The handle of a stored run someone in this process still holds, if any."""
    return _handles.get(run_id)


def under_way_here(run_id: str) -> bool:
    """Whether a handle this process holds of a stored run is driving it now (a resume or a decision
    launched it; the run may not have claimed its lease yet)."""
    held = _handles.get(run_id)
    if held is None:
        return False
    driving = held._task if held._task is not None else held._cfuture
    return driving is not None and not driving.done()


# Runs a decision continued (run.approve, or a decision made elsewhere), so an explicit resume of
# one waits for it instead of refusing (the decision and the resume are often two lines of one script).
_resumed_by_decision: dict[str, Run] = {}


def resumed_by_decision(run: Run) -> None:
    """Note that a decision resumed ``run``."""
    for done in [r for r, other in _resumed_by_decision.items() if other.done()]:
        del _resumed_by_decision[done]  # their owners never asked: forget them
    _resumed_by_decision[run.run_id] = run


def take_resumed_by_decision(run_id: str) -> Run | None:
    """The run a decision resumed, if one did and nobody asked for it yet."""
    return _resumed_by_decision.pop(run_id, None)


RunRenderer: TypeAlias = "Callable[[Run], dict[str, Any]]"
"""Draws a run for a notebook: returns a MIME bundle that always holds ``text/plain``."""

# Handed in by the package's composition root (wfkit/__init__), so the engine never imports the
# notebook layer that draws it.
_renderer: RunRenderer | None = None


def set_renderer(renderer: RunRenderer | None) -> None:
    """Choose how runs draw themselves in a notebook (``None``: plain text only)."""
    global _renderer
    _renderer = renderer


class RunSource(Protocol):
    """What a run handle needs of its workflow (``Workflow`` is one): its graph, and a way to
    rebuild the execution of a stopped run. Named here so the handle never imports ``Workflow``."""

    def validate(self) -> Graph: ...

    def _resumed_execution(self, run_id: str, o: _Options) -> Execution: ...

    async def _aresumed_execution(self, run_id: str, o: _Options) -> Execution: ...

    def _forked_execution(
        self, source: Execution, at: str, update: Mapping[str, Any], visit: int | None, run_id: str | None, o: _Options
    ) -> Execution: ...

    def _fork_on_loop(
        self, source: Execution, at: str, update: Mapping[str, Any], visit: int | None, run_id: str | None, o: _Options
    ) -> tuple[Execution, _Options, Callable[[], Awaitable[None]]]: ...


WorkspaceArg: TypeAlias = "str | os.PathLike[str] | Literal[False] | None"


class _EveryRunOptions(TypedDict, total=False):
    """What every way of running takes: who decides gates, where events go, what ``ctx`` lends."""

    policy: str | ApprovalPolicy | None
    """Who decides approval gates when nobody is there: "halt", "approve", "reject", "fail", or a decisions file."""
    sinks: Iterable[Sink]
    """Where each step event goes besides the run's own list (callables or objects with ``emit``)."""
    llm: ChatModel | None
    """The chat client ``ctx.llm`` hands to steps (default: the seeded simulated model, offline)."""
    tools: ToolProvider | None
    """The tool registry ``ctx.tool`` calls into (default: the workflow's own)."""
    mode: str | None
    """"interactive" or "headless"; detected when None."""


class ResumeOptions(_EveryRunOptions, total=False):
    """How a stored run continues: the keywords :meth:`Workflow.resume` and ``aresume`` take."""

    workspace: WorkspaceArg
    """The folder that keeps the run (default ``$WFKIT_HOME`` or ``./.wfkit``); ``False``: memory only."""


class BatchRunOptions(_EveryRunOptions, total=False):
    """How each run of a batch executes: the keywords :meth:`Workflow.run_many` hands to every run
    (the batch itself names the runs, seeds them and keeps them in its workspace)."""

    timeout: Seconds | None
    """The run's deadline in seconds (or a timedelta), which survives pauses and resumes."""
    count_approval_wait: bool
    """Whether time halted for approval counts against ``timeout``."""


class RunOptions(ResumeOptions, BatchRunOptions, total=False):
    """How a new run executes: the keywords :meth:`Workflow.run`, ``arun`` and ``start`` share."""

    run_id: str | None
    """Choose the run's id (default: a fresh random one)."""
    seed: int | None
    """Seeds ``ctx.rng``, retry jitter and the simulated model, so a run can be replayed."""


_RESUME_KEYS = frozenset(ResumeOptions.__optional_keys__)
_RUN_KEYS = frozenset(RunOptions.__optional_keys__)
_BATCH_KEYS = frozenset(BatchRunOptions.__optional_keys__)


@dataclass(frozen=True, slots=True)
class _Options:
    """How a run was asked to execute; kept so that resuming it behaves the same."""

    timeout: float | None = None
    sinks: tuple[Sink, ...] = ()
    seed: int | None = None
    workspace: WorkspaceArg = None
    policy: str | ApprovalPolicy | None = None
    count_approval_wait: bool = False
    llm: ChatModel | None = None
    tools: ToolProvider | None = None
    mode: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, call: str, options: Mapping[str, Any], allowed: frozenset[str] = _RUN_KEYS) -> _Options:
        """Check the keywords a user passed (a TypedDict checks nothing at run time) and build."""
        if not options:  # every run asks: the defaults, made once (frozen, so shared safely)
            return _DEFAULTS
        unknown = [] if options.keys() <= allowed else sorted(set(options) - allowed)
        if unknown:
            raise unexpected_keywords(call, unknown, allowed)
        values = dict(options)
        values["sinks"] = tuple(values.get("sinks") or ())
        if "timeout" in values:
            values["timeout"] = as_timeout(values["timeout"], f"{call}(timeout=...): a run's timeout")
        if values.get("llm") is not None:
            values["llm"] = check_chat_model(values["llm"], f"{call}(llm=...)")
        return cls(**values)


_DEFAULTS = _Options()


class DetachedRun:
    """What a :class:`Run` is in another process, once pickled (see ``Run.__reduce__``): the facts
    it had then (``run_id``, ``workflow``, ``status``, a copy of its ``state``); anything else a
    live handle does (events, approve, resume, await...) raises an AttributeError saying where the
    handle stayed and how to reach the run from here (its workspace, by its id)."""

    __slots__ = ("run_id", "state", "status", "workflow")

    def __init__(self, run_id: str, workflow: str, status: str, state: dict[str, Any]) -> None:
        self.run_id, self.workflow, self.status, self.state = run_id, workflow, status, state

    def __reduce__(self) -> tuple[Any, ...]:
        return DetachedRun, (self.run_id, self.workflow, self.status, self.state)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # what pickle and copy look for: not there, as on any object
            raise AttributeError(name)
        raise AttributeError(
            f"run {self.run_id} of {self.workflow!r} was pickled in another process (a Dask worker's, say), "
            f"and its live handle stayed there: this copy has run_id, workflow, status and state, not "
            f"{name!r}. Where its workspace is, wf.Workspace(PATH).run_info({self.run_id!r}) reads it and "
            f"flow.resume({self.run_id!r}) continues it"
        )

    def __repr__(self) -> str:
        return f"<DetachedRun {self.run_id} of {self.workflow!r}: {self.status} (pickled from another process)>"


class Run:
    """One run of a workflow. Returned by ``Workflow.start``, ``run``, ``arun`` and ``resume``.

    ``await run`` (or ``run.wait()`` outside a loop) waits until it ends or halts for approval,
    and raises the run's error if it failed; ``run.state`` is the state so far, ``run.events``
    one event per attempt. ``run.approve(by=...)`` decides an open gate and resumes the run.
    """

    def __getattr__(self, name: str) -> Any:
        # Called only when the usual lookup misses (a hit never comes here): name the public
        # attribute meant, `run.id` being `run.run_id`. Private names (IPython's display probes,
        # pickle's) stay plain and cheap.
        if name.startswith("_"):
            raise AttributeError(name)
        public = [a for a in dir(type(self)) if not a.startswith("_")]
        if name in public:  # a property that raised AttributeError itself: raise that error
            return object.__getattribute__(self, name)
        words = [a for a in public if name in a.split("_")]  # `id`: run_id, parent_run_id
        meant = closest(name, public) or min(words, key=len, default=None)
        hint = "" if meant is None else f" (did you mean {meant!r}?)"
        raise AttributeError(f"'Run' object has no attribute {name!r}{hint}")

    def __init__(
        self, execution: Execution, workflow: RunSource | None = None, options: _Options | None = None
    ) -> None:
        self._exec = execution
        self._workflow = workflow
        self._options = options
        self._task: asyncio.Future[None] | None = None
        self._cfuture: concurrent.futures.Future[None] | None = None
        # Live views; the list object is shared with each execution, resumed ones included.
        self._observers: list[Callable[[StepEvent | None], object]] = execution.observers
        self._chunk_observers: list[Callable[[TokenChunk], object]] = execution.chunk_observers
        if execution.store is not None:
            _handles[execution.run_id] = self

    # A live handle (its store, its loop, its observers) cannot leave its process, yet it rides
    # on the error its run raised (``err.run``, which raise_for_status sets on any error, a
    # step's own or a merge rule's included, whose pickling is Python's, not wfkit's): refusing
    # would turn a failed run on a Dask worker into a pickling failure on the driver. So a run
    # travels as a DetachedRun, which keeps what it can and says what it cannot; a copy in its
    # own process is the handle itself.
    def __reduce__(self) -> tuple[Any, ...]:
        return DetachedRun, (self.run_id, self.workflow, self.status, self.state)

    def __copy__(self) -> Run:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Run:
        return self

    # ---- what it is ----------------------------------------------------------------------------

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
    def workspace(self) -> Path | None:
        """The folder of the workspace that keeps the run; None if it keeps none (``workspace=False``)."""
        store = self._exec.store
        return None if store is None else store.path.parent

    @property
    def state(self) -> dict[str, Any]:
        """A copy of the run's state as it stands."""
        return dict(self._exec.state)

    @property
    def inputs(self) -> dict[str, Any]:
        """A copy of the inputs the run started with."""
        return dict(self._exec.inputs)

    @property
    def error(self) -> BaseException | None:
        return self._exec.error

    @property
    def events(self) -> list[StepEvent]:
        """Every attempt's event in this process so far, in emission order."""
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
        """True once the run ended or halted (waiting for approval or reconciliation), its last
        record written."""
        return self._exec.ended

    def path(self) -> list[str]:
        """The steps that completed, in order (branches and loops included; a map step once, a
        step served from the cache too)."""
        return [e.step for e in self._exec.events if e.status in ("ok", "cached") and e.map_index is None]

    @property
    def parent_run_id(self) -> str | None:
        """The run that started this one as a sub-workflow (None for a top-level run)."""
        return self._exec.parent_run_id

    @property
    def forked_from(self) -> dict[str, Any] | None:
        """Where this run was forked from: ``{"run_id", "at", "visit", "update"}``, else None."""
        return self._exec.origin

    def history(self, *, items: bool = False) -> pd.DataFrame:
        """The state after each settled step, and what each step changed, as a DataFrame.

        One row per settled step in order: ``step``, ``visit``, ``outcome`` (``ok``, ``fallback``,
        ``fork`` where a fork applied its update, ``rejected`` for a gate a reviewer or the policy
        rejected, ``item`` for map items when ``items=True``),
        ``route`` (where it went), ``wrote`` (the fields it wrote), ``updates`` (their values),
        ``map_index`` and ``state`` (the whole state after it, a dict). Durable runs include the
        steps before a resume and, for a fork, the steps it shares with its origin.
        """
        import pandas as pd

        from wfkit.engine._engine import apply_updates

        state = dict(self._exec.inputs)
        rows = []
        for seq, step, visit, outcome, updates, route, _failure, map_index in self._exec.log:
            if outcome == "ok":
                state = apply_updates(state, updates or {}, self._exec.merges)
            elif outcome == "fork":
                state = {**state, **(updates or {})}
            elif outcome == "item" and not items:
                continue  # (a step that fell back is a row: it settled, onto its fallback)
            rows.append(
                {
                    "seq": seq,
                    "step": step,
                    "visit": visit,
                    "map_index": map_index,
                    "outcome": outcome,
                    "route": route,
                    "wrote": sorted(updates or {}),
                    "updates": dict(updates or {}),
                    "state": dict(state),
                }
            )
        columns = ["seq", "step", "visit", "map_index", "outcome", "route", "wrote", "updates", "state"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["map_index"] = frame["map_index"].astype("Int64")
        return frame

    def raise_for_status(self) -> Run:
        """Raise the run's error if it failed; return the run otherwise."""
        error = self._exec.error
        if error is not None:
            if getattr(error, "run", None) is None:
                with contextlib.suppress(AttributeError):  # some builtins refuse attributes
                    error.run = self  # type: ignore[attr-defined]
            raise error
        return self

    def result(self) -> dict[str, Any]:
        """The final state of a finished run; raises its error if it failed."""
        if not self.done():
            raise RuntimeError(f"run {self.run_id} is still {self.status}; await it first")
        self.raise_for_status()
        return self.state

    @property
    def graph(self) -> Graph | None:
        """The compiled graph of the run's workflow (None for a handle without one)."""
        return None if self._workflow is None else self._workflow.validate()

    def subscribe(self, observer: Callable[[Any], object], *, chunks: bool = False) -> Callable[[], None]:
        """Call ``observer(event)`` on every step event of this run from now on, and
        ``observer(None)`` when it ends or halts; with ``chunks=True`` also ``observer(chunk)``
        for each :class:`wfkit.TokenChunk` a step streams from ``ctx.llm.stream``. A resumed run
        keeps its observers. Returns a function that unsubscribes. Observers run on the run's
        loop: keep them quick."""
        self._observers.append(observer)
        if chunks:
            self._chunk_observers.append(observer)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(observer)
            with contextlib.suppress(ValueError):
                self._chunk_observers.remove(observer)

        return unsubscribe

    async def stream(
        self, *, chunks: bool = False, raise_on_error: bool = True
    ) -> AsyncIterator[StepEvent | TokenChunk]:
        """Each step event of this run as it happens (``async for event in run.stream()``), first
        those it emitted already; with ``chunks=True`` also the text chunks steps stream from
        ``ctx.llm.stream``, as :class:`wfkit.TokenChunk`. Ends when the run ends or halts, raising
        the run's error if it failed (unless ``raise_on_error=False``)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        home = threading.get_ident()

        def push(item: Any) -> None:
            if threading.get_ident() == home:
                queue.put_nowait(item)
            else:  # a run on the background loop: hand it over to this loop's thread
                loop.call_soon_threadsafe(queue.put_nowait, item)

        unsubscribe = self.subscribe(push, chunks=chunks)
        try:
            before = self._exec.events[:]
            seen = {id(e) for e in before}
            for event in before:
                yield event
            while not (self.done() and queue.empty()):
                item = await queue.get()
                if item is None:
                    if self.done():
                        break
                    continue
                if isinstance(item, StepEvent) and id(item) in seen:
                    continue
                yield item
        finally:
            unsubscribe()
        _started.discard(self)  # its outcome reached its owner
        if raise_on_error:
            self.raise_for_status()

    def fork(
        self,
        at: str,
        update: Mapping[str, Any] | None = None,
        *,
        visit: int | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Start a new run that shares this run's checkpoints up to step ``at`` (its last visit, or
        ``visit``), applies ``update`` to the state there, and continues: ``at``'s route is chosen
        anew on the updated state. This run is untouched; the new one records where it came from
        (``forked_from``). Returns the new run's handle at once, like :meth:`Workflow.start`."""
        if self._workflow is None or self._options is None:
            raise RuntimeError("this run handle has no workflow; use Workflow.fork(run_id, at=...)")
        if running_loop() is not None and self._exec.store is not None:
            # On a running loop the fork's row and origin are written by the fork's own task, and
            # its execution rebuilt from the store there: the loop never waits for the store.
            pending, options, record = self._workflow._fork_on_loop(
                self._exec, at, update or {}, visit, run_id, self._options
            )
            forked = Run(pending, self._workflow, options)

            async def recorded() -> None:
                await record()
                await forked._reopen()

            forked._launch(before=recorded)
            return forked
        execution = self._workflow._forked_execution(self._exec, at, update or {}, visit, run_id, self._options)
        run = Run(execution, self._workflow, self._options)
        run._launch()
        return run

    # ---- approvals and resuming ----------------------------------------------------------------

    def tickets(self, *, status: Literal["open", "approved", "rejected"] | None = "open") -> list[Ticket]:
        """This run's approval tickets, and those of its sub-workflow runs (a gate inside a child
        halts the parent too): the open ones by default, ``status=None`` for all."""
        store = self._exec.store
        if store is None:
            return []
        return [
            t for run_id in store.descendant_runs(self.run_id) for t in store.tickets.find(status=status, run_id=run_id)
        ]

    def approve(self, *, by: str, comment: str = "", step: str | None = None, resume: bool = True) -> Run:
        """Approve this run's open gate (the one at ``step`` if several) and resume the run."""
        return self._decide("approve", by, comment, step, resume)

    def reject(self, *, by: str, comment: str = "", step: str | None = None, resume: bool = True) -> Run:
        """Reject this run's open gate; it routes to its ``on_reject`` step or fails the run."""
        return self._decide("reject", by, comment, step, resume)

    def _decide(
        self, decision: Literal["approve", "reject"], by: str, comment: str, step: str | None, resume: bool
    ) -> Run:
        store = self._exec.store
        if store is None:
            raise TicketError(f"run {self.run_id} keeps no workspace, so it has no tickets")
        tickets = [t for t in self.tickets(status=None) if step is None or t.step == step]
        # With no open ticket, the last decided one: deciding it again the same way is a no-op that
        # says so, and the other way is refused (a decision is applied once).
        open_ = [t for t in tickets if t.is_open] or tickets[-1:]
        if not open_:
            raise TicketError(f"run {self.run_id} has no approval ticket" + (f" at step {step!r}" if step else ""))
        if len(open_) > 1:
            steps = ", ".join(f"{t.step!r} ({t.ticket_id})" for t in open_)
            raise TicketError(f"run {self.run_id} has several open tickets: {steps}; pass step=...")
        if open_[0].run_id == self.run_id:
            version, parameters_hash = self._exec.version, self._exec.parameters_hash
        else:  # a sub-workflow's ticket, decided through its parent: the row is the child run's
            child = store.run_row(open_[0].run_id)
            version, parameters_hash = child["workflow_version"], child["parameters_hash"]
        op = store.tickets.decide_op(
            open_[0].ticket_id,
            decision,
            by,
            comment,
            lambda t: decision_event(t, version, parameters_hash),
        )
        loop = running_loop()
        # Decided the same way elsewhere (`wfkit approve` in a shell, another process) while this
        # run waits at that gate: nobody resumed it, as the decider did not define the workflow.
        # Asking for that decision again here is asking for the run to continue.
        continue_halted = resume and not open_[0].is_open and self.status == RunStatus.WAITING_APPROVAL
        if loop is not None and not open_[0].is_open:
            # Decided before: the outcome is known from what was read, no write is needed (and none
            # may keep the loop waiting). The same decision again is a no-op; the other is refused.
            done = open_[0]
            if done.status == ("approved" if decision == "approve" else "rejected"):
                continued = continue_halted and self._resumable()
                if continued:
                    self.resume()
                    resumed_by_decision(self)
                self._already(done, continued)
                return self
            raise store.tickets.refusal(done)
        if loop is not None:
            # On a running loop (a widget's click, a cell): the decision is written, and the run
            # resumed, by a task, so the loop never waits for the writer. `await run` waits for both.
            # What is under way (another gate's decision, the steps it let through, branches still
            # running beside this gate) goes first: this decision is written at once, and the run
            # resumed once that is done if it then waits at this gate.
            under_way = self._task if self._task is not None and not self._task.done() else None
            _started.add(self)
            self._cfuture = None
            self._task = loop.create_task(self._decided(op, resume, under_way), name=f"wfkit-decide-{self.run_id}")
            if resume:
                resumed_by_decision(self)
            return self
        if resume and open_[0].is_open and self._cfuture is not None and not self._cfuture.done():
            # Still running in the background (another gate's decision let it go on): as on a
            # running loop, the decision is written at once and the run resumed after it halts.
            running = self._cfuture
            self._cfuture = asyncio.run_coroutine_threadsafe(self._decided(op, resume, running), background_loop())
            resumed_by_decision(self)
            return self
        ticket, changed = store.do(op)  # the other decision made before is refused here
        continued = False
        if (changed or (continue_halted and self._resumable())) and resume and self.status in RunStatus.HALTED:
            self.resume()
            resumed_by_decision(self)
            continued = not changed
        if not changed:
            self._already(ticket, continued)
        return self

    def _already(self, ticket: Ticket, continued: bool) -> None:
        """Say that this decision, asked again of the decided ``ticket``, records nothing (and
        whether the run, which waited at that gate, continues from the decision it had)."""
        then = f"; run {self.run_id} continues from that decision" if continued else ""
        warn_already_decided(ticket, 4, then)  # (4: the user's approve()/reject() line)

    async def _decided(
        self,
        op: WriteOp[tuple[Ticket, bool]],
        resume: bool,
        under_way: asyncio.Future[None] | concurrent.futures.Future[None] | None = None,
    ) -> None:
        """Write a decision, wait for what was under way on this run, then resume the run if it
        waits at a gate."""
        assert self._exec.store is not None
        reopened = False
        try:
            _, changed = await self._exec.store.writer.submit_async(op)
            if under_way is not None:
                after = asyncio.wrap_future(under_way)
                try:
                    await asyncio.wait((after,))
                except asyncio.CancelledError:
                    after.cancel()  # run.cancel() cancels this task: the run under way ends too
                    raise
                error = None if after.cancelled() else after.exception()
                if error is not None:
                    raise error  # the earlier decision's failure is what `await run` reports
            if changed and resume and self.status in RunStatus.HALTED:
                await self._reopen()
                reopened = True
        except BaseException:
            _started.discard(self)  # refused (decided elsewhere meanwhile, a lease held): `await run` says why
            raise
        if reopened:
            await self._exec.drive()

    def _resumable(self) -> bool:
        """Whether :meth:`resume` would continue this handle's run: it knows its workflow, and the
        run stopped (halted or failed) with nothing of it still under way here."""
        return (
            self._workflow is not None
            and self._options is not None
            and self.done()
            and (self._task is None or self._task.done())
        )

    def resume(self) -> Run:
        """Continue this run from its last completed step, as :meth:`Workflow.start` would.

        In a notebook the run continues as a task on the kernel's loop (``await run`` to wait);
        from plain code it continues in the background (``run.wait()`` to block).
        """
        if self._workflow is None or self._options is None:
            raise RuntimeError("this run handle has no workflow; use Workflow.resume(run_id)")
        if not self.done() or (self._task is not None and not self._task.done()):
            raise RuntimeError(f"run {self.run_id} is still {self.status}; only a stopped run resumes")
        self._task = self._cfuture = None
        if running_loop() is not None:
            # On a running loop the lease is taken by the run's task: the loop never waits for it.
            self._launch(before=self._reopen)
            return self
        # The resumed execution starts with the whole run's journal (what this handle saw included).
        self._exec = self._workflow._resumed_execution(self.run_id, self._options)
        self._exec.observers = self._observers
        self._exec.chunk_observers = self._chunk_observers
        self._launch()
        return self

    async def _reopen(self) -> None:
        """This stopped run's execution rebuilt from the store, its lease taken (from a coroutine)."""
        assert self._workflow is not None and self._options is not None
        self._exec = await self._workflow._aresumed_execution(self.run_id, self._options)
        self._exec.observers = self._observers
        self._exec.chunk_observers = self._chunk_observers

    def _launch(self, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Drive the run as a task on the running loop (else on the background loop); ``before``
        runs first in that task (the durable writes a run needs before its first step)."""
        _started.add(self)
        loop = running_loop()
        coro = self._exec.drive() if before is None else self._drive_after(before)
        if loop is not None:
            self._task = loop.create_task(coro, name=f"wfkit-run-{self.run_id}")
        else:
            self._cfuture = asyncio.run_coroutine_threadsafe(coro, background_loop())

    async def _drive_after(self, before: Callable[[], Awaitable[None]]) -> None:
        try:
            await before()
        except BaseException:
            # Refused before it ran (a run id that exists, a lease held elsewhere): nothing for
            # drain() to wait for; `await run` raises why.
            _started.discard(self)
            raise
        await self._exec.drive()  # looked up now: ``before`` may have replaced the execution

    # ---- waiting -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel a started run: running steps are cancelled and it ends as 'cancelled'."""
        if self._task is not None:
            self._task.cancel()
        elif self._cfuture is not None:
            self._cfuture.cancel()

    def wait(self, timeout: Seconds | None = None) -> Run:
        """Block until a run started from synchronous code ends or halts (not from inside its loop);
        ``timeout`` in seconds or a timedelta (0: do not block), past which a TimeoutError says the
        run goes on."""
        if self._cfuture is None:
            if self.done():
                return self.raise_for_status()
            raise RuntimeError("this run executes on the current event loop: use `await run`")
        # Refused here, in the caller's words: "5" failed inside concurrent.futures, True, NaN and -1
        # waited not at all, and infinity overflowed a timestamp. 0 asks without blocking.
        seconds = (
            0.0 if type(timeout) in (int, float) and timeout == 0 else as_timeout(timeout, "run.wait(timeout=...)")
        )
        try:
            with contextlib.suppress(concurrent.futures.CancelledError):
                self._cfuture.result(seconds)
            # A cancelled future is done at once; the run itself ends a moment later.
            if not self._exec.finished.wait(seconds):
                raise TimeoutError
        except TimeoutError:  # concurrent.futures' own says nothing
            raise TimeoutError(
                f"run {self.run_id} did not end within {seconds:g} s; it goes on: wait again, or "
                f"run.cancel() to stop it"
            ) from None
        _started.discard(self)  # its outcome reached its owner: drain() need not report it again
        return self.raise_for_status()

    def __await__(self) -> Generator[Any, None, Run]:
        return self._wait_async().__await__()

    @woken_by_signals  # the stop button frees the awaiting cell at once (the run goes on)
    async def _wait_async(self) -> Run:
        if self._task is not None and not self._task.done():
            # shield: interrupting the awaiting cell must not kill the run; use run.cancel().
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise  # the waiter was cancelled, not the run
        elif self._cfuture is not None:
            if not self._cfuture.done():
                with contextlib.suppress(concurrent.futures.CancelledError, asyncio.CancelledError):
                    await asyncio.wrap_future(self._cfuture)
            if not self._exec.finished.is_set():
                await asyncio.to_thread(self._exec.finished.wait)
        _started.discard(self)  # its outcome reached its owner: drain() need not report it again
        return self.raise_for_status()

    # ---- display ------------------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Drawn by the renderer the notebook layer handed in (a live widget in an interactive
        notebook; HTML and text elsewhere); plain text when none was."""
        if _renderer is None:
            return {"text/plain": repr(self)}
        return _renderer(self)

    def __repr__(self) -> str:
        steps = sum(1 for e in self._exec.events if e.status == "ok")
        err = f", error={type(self.error).__name__}" if self.error is not None else ""
        return (
            f"<Run {self.run_id} of {self.workflow!r}: {self.status}, "
            f"{steps} steps done, {len(self._exec.events)} events{err}>"
        )


async def drain(*, raise_on_error: bool = True) -> list[Run]:
    """Wait for every run started in this process that nobody has awaited yet, until each ends or
    halts (``await wfkit.drain()`` as the last cell keeps a notebook from ending with a run in
    flight: its task would be lost). Raises the first failure unless ``raise_on_error=False``."""
    done: list[Run] = []
    while True:
        pending = [r for r in list(_started) if r not in done]
        if not pending:
            break
        for run in pending:
            done.append(run)
            _started.discard(run)
            try:
                await run
            except Exception:
                if raise_on_error:
                    raise
    return done
