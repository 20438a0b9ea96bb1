"""The scheduler: one run of a compiled graph, driven as one asyncio task.

``Execution`` is the run loop (activations, routing, joins, map steps, sub-workflow steps,
finishing). It asks the attempt runner (``_attempts``) to run an activation and the durability
layer (``_durability``) what a gate allows, and acts on their answers; it settles each outcome
into the state and hands the checkpoint and the step's event to the durability layer.

Following one attempt: born in ``AttemptRunner.run``; made a row by ``EventMaker``
(``_stepevents``); checkpointed by ``Durability.checkpoint`` (the store's writer thread commits
it, ``wfkit.store``); delivered by ``Outlet`` to the sinks and live views (the notebook widgets
draw it, ``wfkit.notebook``); the run's journal goes to parquet through the step-log exporter
when the run ends (``wfkit.logs``).

The scheduler keeps a queue of ready activations (a step about to run, with the tools its route
bound). A lone ready step runs inline in the scheduler's own task: a linear chain never pays for
task creation. Two or more ready steps become tasks that run concurrently, and the scheduler
sleeps until one finishes. Each finished activation is committed to the state (with conflict
checks), routed, and recorded as a step event; joins fire when no predecessor can still arrive.

In a durable run, settling a step hands its checkpoint to the store's writer thread and goes on
settling whatever else finished; before it starts any step again, the scheduler awaits every
checkpoint it handed over (``Durability.sync``). So no successor starts before its predecessor's checkpoint
is durable, while other runs (and this run's steps already in flight) keep going, and all the
checkpoints of a fan-in share one commit. A lone inline step of a durable run (an async step with
no context, in a run with no deadline; under its timeout, if it has one, on the run's ``Alarm``)
is awaited and, on a plain success, settled
and checkpointed by the scheduler itself, in the same pass that settles such a step of a run kept
in memory (``_settle_inline``). A first attempt writes no "started" record of its own:
after a crash, resume reads what was in flight from the checkpoints (``Durability.cut_offs``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import reprlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeAlias

from wfkit.engine import _collector as collector
from wfkit.engine._activations import Activation, Batch, CutOff, Fields, Outcome
from wfkit.engine._alarm import Alarm
from wfkit.engine._attempts import AttemptRunner, FirstAttempt, plain_updates, stamped, within
from wfkit.engine._cache import StepCache
from wfkit.engine._durability import Durability
from wfkit.engine._services import Services
from wfkit.engine._stepevents import HOST as _HOST
from wfkit.engine._stepevents import EventMaker, Outlet
from wfkit.engine._subflows import ChildRuns
from wfkit.model import _settings
from wfkit.model._approvals import HALT, ApprovalPolicy
from wfkit.model._context import ChatModel, Failure, ToolProvider
from wfkit.model._errors import (
    LeaseError,
    MapItemError,
    RouteFieldWarning,
    RunError,
    RunTimeoutError,
    StateConflictError,
    StateValueError,
    StepFailedError,
    VisitLimitError,
    WorkflowChangedError,
)
from wfkit.model._events import Status, StepEvent, TokenChunk
from wfkit.model._graph import Graph
from wfkit.model._merge import Merge
from wfkit.model._processors import DEFAULT_PROCESSORS, Processor
from wfkit.model._retry import ErrorKind
from wfkit.model._routes import END, FLOW_SPEC_MODULE, Go, Router
from wfkit.model._status import RunStatus
from wfkit.model._steps import StepSpec
from wfkit.model._suggest import did_you_mean
from wfkit.model._warn import warn_at
from wfkit.store._journal import encode_updates
from wfkit.store._store import Store

_FINISH_LOCK = threading.Lock()
_new_tuple = tuple.__new__

# Stored runs with an execution in this process, from the moment it is built (a resume takes the
# lease before its task starts) until it ends or halts. The store's lease is per store object, so
# it cannot tell two executions of one process apart: this can.
_executing: set[str] = set()


def claim(run_id: str) -> None:
    """Mark a stored run as executing here; refuse a second execution of it in this process."""
    with _FINISH_LOCK:
        if run_id in _executing:
            raise LeaseError(
                "it is already executing in this process; wait for it (await run, or run.wait()) "
                "instead of resuming it again",
                run_id=run_id,
            )
        _executing.add(run_id)


def unclaim(run_id: str) -> None:
    with _FINISH_LOCK:
        _executing.discard(run_id)


def executing_here(run_id: str) -> bool:
    return run_id in _executing


Checkpoint: TypeAlias = tuple[int, str, int, str, Any, "str | None", Any, "int | None"]
"""A settled step as replay reads it: (seq, step, visit, outcome, updates, route, failure,
map_index). ``outcome`` is ok, fallback, item (a map item; updates hold its result) or fork (a
fork point; updates hold the fork's update). Updates and failure are JSON text when read from
the store, a dict and a Failure when kept in memory."""


def apply_updates(state: dict[str, Any], updates: Mapping[str, Any], merges: Mapping[str, Merge]) -> dict[str, Any]:
    """A new state: ``state`` with a step's updates committed (merge rules applied)."""
    out = dict(state)
    for key, value in updates.items():
        merge = merges.get(key)
        out[key] = merge(out.get(key), value) if merge is not None else value
    return out


def _optional_field(router: Router | None, name: str) -> str:
    """How to declare an optional field a route compares, in the words of where the routes are
    written: a flow spec's YAML, or Python."""
    site = None if router is None else router.declared_at
    if site is not None and site[2] == FLOW_SPEC_MODULE:
        return f"(writes: [{name}] on it, in the spec) or test it with {{field: {name}, op: exists}}"
    return f"(@flow.step(writes=[{name!r}])) or test it with wfkit.when({name!r}, 'exists')"


def _warn_at_route(router: Router | None, warning: RouteFieldWarning) -> None:
    """Warn of a route's field at the line that declared the routes (``flow.route(...)``, a flow
    spec's line), the user's, not the engine's (see :mod:`wfkit.model._warn`)."""
    warn_at(warning, None if router is None else router.declared_at, stacklevel=3)


class Execution:
    """The mutable inside of one run, and its scheduler. ``Run`` is its public handle.

    It owns the run's state and schedule, and composes the parts it asks for decisions: an
    :class:`AttemptRunner` (one activation's attempts), a :class:`Durability` (checkpoints,
    journal, gates, leases, replay: the store), an :class:`EventMaker` and :class:`Outlet` (rows,
    and who hears of them), :class:`Services` (what ``ctx`` lends a step) and :class:`ChildRuns`
    (sub-workflow steps). None of them holds a reference back to the execution.
    """

    # Slots: with 47 attributes (past the 30 an instance dict shares keys for) each of ten thousand
    # concurrent runs kept a 1.5 KB dict of its own.
    __slots__ = (
        "_active",
        "_done",
        "_durability",
        "_ended",
        "_failed",
        "_finished",
        "_held",
        "_joins",
        "_make",
        "_map_done",
        "_missing",
        "_onward",
        "_outlet",
        "_ready",
        "_replaying",
        "_resumed",
        "_runner",
        "_services",
        "_settling",
        "_tasks",
        "_unsure_warned",
        "_version",
        "_view",
        "_view_version",
        "_visits",
        "_wake",
        "_wall",
        "_writers",
        "count_waiting",
        "elapsed_before",
        "ended_at",
        "error",
        "graph",
        "inputs",
        "log",
        "merges",
        "origin",
        "parameters_hash",
        "parked",
        "policy",
        "run_id",
        "seed",
        "started_at",
        "state",
        "status",
        "store",
        "timeout",
        "unreconciled",
        "user_sinks",
        "version",
        "workflow",
    )

    def __init__(
        self,
        graph: Graph,
        merges: Mapping[str, Merge],
        run_id: str,
        inputs: Mapping[str, Any],
        *,
        version: str,
        timeout: float | None,
        sinks: tuple[Callable[[StepEvent], object], ...],
        seed: int | None,
        parameters_hash: str | None,
        store: Store | None = None,
        policy: ApprovalPolicy = HALT,
        count_waiting: bool = False,
        elapsed_before: float = 0.0,
        llm: ChatModel | None = None,
        tool_registry: ToolProvider | None = None,
        processors: tuple[Processor, ...] = DEFAULT_PROCESSORS,
        parent_run_id: str | None = None,
    ) -> None:
        settings = _settings.current()
        self.graph = graph
        self.merges = merges
        self.run_id = run_id
        self.workflow = graph.name
        self.version = version
        self.inputs: dict[str, Any] = dict(inputs)
        self.state: dict[str, Any] = dict(inputs)
        self.origin: dict[str, Any] | None = None  # where a forked run came from
        # Every settled step (and map item, and fork point) in order: what history() and an
        # in-memory fork read. Durable runs rebuild it from their checkpoints on resume.
        self.log: list[Checkpoint] = []
        self.status = RunStatus.PENDING
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.timeout = timeout
        self.parameters_hash = parameters_hash
        self.user_sinks = sinks  # handed on to sub-workflow runs
        self.seed = seed if seed is not None else settings.seed  # handed on to sub-workflow runs
        self.store = store
        self.policy = policy
        self.count_waiting = count_waiting
        self.elapsed_before = elapsed_before
        # The schedule: state version and who wrote each field (conflict checks), visits, active
        # activations per step, arrivals at joins, the ready queue and the running tasks.
        self._version = 0
        self._writers: dict[str, tuple[int, str]] = {}
        self._onward = graph.onward  # what follows each step's success (read per settled step)
        # Absent route fields warned of, once per run: made by the first warning (only a run with
        # a misspelt field gives one), not an empty set in each of ten thousand runs in flight.
        self._unsure_warned: set[str] | None = None
        # Visits and active activations per step, every step's count there from the start (a
        # subscript is cheaper than dict.get, every activation).
        self._visits: dict[str, int] = dict(graph.zeros)
        self._active: dict[str, int] = dict(graph.zeros)
        # Active activations are counted only for joins to read (_fire_joins): in a graph
        # with no join (a chain, a routed loop) the hot paths skip the two counter updates every
        # step, so there the counts are meaningless (rarer paths may still decrement them).
        self._joins = bool(graph.join_blockers)
        # Joins some predecessor arrived at: the predecessors that have not arrived yet.
        self._missing: dict[str, set[str]] = {}
        self._ready: deque[Activation] = deque()
        self._tasks: dict[Activation, asyncio.Task[None]] = {}  # running activations, their tasks
        # Finished activations the scheduler has not settled yet (made when a first task starts).
        # Each (act, updates or Outcome or exception, t0, body_end): see _run_reported.
        self._done: deque[tuple[Activation, Outcome | dict[str, Any] | BaseException, float, float]] | None = None
        self._wake: asyncio.Future[None] | None = None
        # The state as steps see it, shared by activations until a commit changes the state.
        self._view: Mapping[str, Any] | None = None
        self._view_version = -1
        # time.time() - time.perf_counter() when the run (re)started: an inline step's started_at
        # is this plus its perf_counter start, one clock read per step less (see drive).
        self._wall = 0.0
        self._failed = False
        self._ended = False  # set at the very end of drive(); `finished` turns it into an Event
        self._finished: threading.Event | None = None
        # Rare, so tuples (no list per run): waiting for an approval decision; irreversible steps
        # cut off mid-flight.
        self.parked: tuple[Activation, ...] = ()
        self.unreconciled: tuple[Activation, ...] = ()
        self._resumed = False
        self._replaying = False  # rebuilding from checkpoints: nothing is written or emitted
        self._settling = False  # rows recorded while settling a step wait in _held (made on demand)
        self._held: list[StepEvent] | None = None
        self._map_done: dict[tuple[str, int], dict[int, Any]] = {}  # items finished before a resume
        # The parts. Events pass through the processors before the journal and any sink.
        self._make = EventMaker(run_id, graph.name, version, parameters_hash, processors, parent_run_id)
        self._outlet = Outlet((*sinks, *settings.extra_sinks), self._make.ok)
        self._services = Services(run_id, llm, tool_registry, self.seed, graph)
        self._durability = Durability(store, run_id, make=self._make, emit=self._outlet, policy=policy)
        # The step cache and the sub-workflow runner only for graphs that have such steps: ten
        # thousand concurrent runs pay for every object a run keeps (memory, and the collector's
        # passes over them).
        children = None
        if graph.subflows:
            children = ChildRuns(
                run_id,
                store=store,
                policy=policy,
                services=self._services,
                views=self._outlet,
                seed=self.seed,
                user_sinks=sinks,
            )
        self._runner = AttemptRunner(
            run_id,
            graph.name,
            make=self._make,
            journal=self._durability,
            services=self._services,
            cache=StepCache(graph.name, store) if graph.caches else None,
            run_child=None if children is None else children.run,
            seed=self.seed,
            encode=store is not None,
            sleep=settings.sleep,
            sleeps=not settings.testing,
        )

    # ---- what the Run handle and sub-workflows read -------------------------------------------------

    @property
    def events(self) -> list[StepEvent]:
        """Every event of the run so far, in the order the sinks heard them."""
        return self._outlet.events

    @property
    def observers(self) -> list[Callable[[StepEvent | None], object]]:
        """Live views; None = the run's status changed."""
        return self._outlet.observers

    @observers.setter
    def observers(self, observers: list[Callable[[StepEvent | None], object]]) -> None:
        self._outlet.observers = observers

    @property
    def chunk_observers(self) -> list[Callable[[TokenChunk], object]]:
        """Who hears streamed LLM text, as it arrives."""
        return self._services.chunk_observers

    @chunk_observers.setter
    def chunk_observers(self, observers: list[Callable[[TokenChunk], object]]) -> None:
        self._services.chunk_observers = observers

    @property
    def late_results(self) -> list[dict[str, Any]]:
        """Sync steps that finished after their timeout: their results were discarded."""
        return self._runner.late_results or []

    @property
    def llm(self) -> ChatModel | None:
        """The run's chat client (None until a step asks for the default one)."""
        return self._services.llm

    @property
    def parent_run_id(self) -> str | None:
        """Set when this run is a sub-workflow of another."""
        return self._make.parent_run_id

    @parent_run_id.setter
    def parent_run_id(self, run_id: str | None) -> None:
        self._make.parent_run_id = run_id

    @property
    def ended(self) -> bool:
        """True once the run ended or halted and its last record is written (its status may say
        so a moment earlier, while that write is under way)."""
        return self._ended

    @property
    def finished(self) -> threading.Event:
        """Set once the run has ended or halted. Built on demand: most runs are never waited
        for from another thread, and an Event per run costs 10k-run batches real time."""
        with _FINISH_LOCK:
            if self._finished is None:
                self._finished = threading.Event()
                if self._ended:
                    self._finished.set()
            return self._finished

    # ---- driving -------------------------------------------------------------------------

    async def drive(self) -> None:
        """Run until the end or a halt. Never raises for a failed step: see status and error.

        The scheduler's loop is written out here, not in a coroutine of its own: each of ten
        thousand concurrent runs sleeping in a step would keep that extra frame alive (memory,
        and the collector's passes over it)."""
        self.status = RunStatus.RUNNING
        self.started_at = self.started_at or time.time()
        t_start = time.monotonic()
        if self.timeout is not None:
            self._runner.deadline = t_start + max(self.timeout - self.elapsed_before, 0.0)
        self._durability.started(self.elapsed_before, t_start)
        counted = False
        alarm: Alarm | None = None  # the timeouts of the lone steps awaited here, made at the first
        try:
            collector.run_started()  # many runs in flight: the collector's passes kept out of their way
            counted = True
            if not self._resumed:
                self._activate(self.graph.steps[self.graph.entry], None, None, time.perf_counter())
            else:
                await self._durability.mark_running()
            # No bound method kept in a local: it would be one more live object per sleeping run.
            ready, tasks, durability, runner = self._ready, self._tasks, self._durability, self._runner
            durable = self.store is not None  # a run kept in memory has nothing to sync
            loop = asyncio.get_running_loop()
            # Tasks made directly, skipping loop.create_task's checks per step or map item, unless
            # the loop has a task factory of its own: then it makes them, as its owner expects.
            plain_tasks = loop.get_task_factory() is None
            # Inline steps (StepSpec.inline) skip the attempt runner on the way in when the run has
            # no deadline (the runner runs a body under the time left) and is not resuming (a
            # resumed attempt that counts attempts made before or cut off by a crash is not a
            # first one). A lone one is awaited by this loop itself, in memory or durable (then
            # checkpointed from here: _settle_inline).
            lone_inline = runner.deadline is None and not runner.attempts_before and not runner.cut_off
            # Parallel branches await theirs in their own tasks (_run_reported), in memory only: a
            # durable branch settles through the runner, whose Outcome the checkpoint is made from.
            inline = lone_inline and not durable
            # An inline step's started_at is this run's wall clock at its start plus the step's
            # perf_counter offset: the same instant within the clocks' drift over one run (NTP
            # slews by at most half a millisecond a second), and rows stay in the run's order even
            # if the wall clock is stepped meanwhile. One clock read per step instead of two.
            self._wall = time.time() - time.perf_counter()
            perf_counter = time.perf_counter
            while not self._failed:
                if not tasks and len(ready) == 1:
                    act = ready.popleft()
                    spec = act.spec
                    if lone_inline and spec.inline:
                        # The body awaited right here: no attempt runner, no Outcome, one frame
                        # less per sleeping run. Anything but a plain success goes to the runner.
                        t0 = perf_counter()
                        try:
                            if spec.timeout is None:
                                result = await spec.fn(act.view)
                            else:  # one timer per run, not one per step (see _alarm)
                                if alarm is None:
                                    alarm = Alarm(loop)
                                result = await alarm.within(spec.name, spec.fn(act.view), spec.timeout)
                        except BaseException as exc:  # the runner classifies, retries or re-raises it
                            # (Not kept in a local: the error's traceback holds this frame, a cycle.)
                            self._settle(
                                act,
                                await runner.run(
                                    act, FirstAttempt(None, exc, self._wall + t0, t0, perf_counter()), alarm
                                ),
                            )
                        else:
                            body_end = perf_counter()
                            # (A run in memory settles a plain success and goes on at once: the
                            # path of every step of an in-memory chain, kept to the fewest checks.)
                            if durable:  # the checkpoint's JSON, or None: not a dict the codec keeps
                                encoded = self._encoded(spec.name, result, spec.fn)
                                plain = encoded is not None
                                if encoded is not None:
                                    self._settle_inline(act, result or {}, t0, body_end, encoded)
                            elif result is None:
                                self._settle_inline(act, {}, t0, body_end)
                                continue
                            elif type(result) is dict and (not result or plain_updates(result)):
                                self._settle_inline(act, result, t0, body_end)
                                continue
                            else:
                                plain = False
                            if not plain:  # the runner judges it, and says what is wrong
                                attempt = FirstAttempt(result, None, self._wall + t0, t0, body_end)
                                self._settle(act, await runner.run(act, attempt, alarm))
                                del attempt  # holds the result: not kept alive through the next step
                            result = None
                        if durable and durability.pending:
                            await durability.sync()  # the successor waits for the checkpoint
                        continue
                    if spec.gated and not await self._admitted(act):
                        continue
                    if spec.map is not None and act.batch is None:
                        self._expand(act)
                        continue
                    if alarm is None and (spec.timeout is not None or runner.deadline is not None):
                        alarm = Alarm(loop)
                    self._settle(act, await runner.run(act, None, alarm))
                    if durable and durability.pending:
                        await durability.sync()
                    continue
                done = self._done
                if done is None:
                    done = self._done = deque()
                while ready and not self._failed:
                    act = ready.popleft()
                    if act.spec.gated and not await self._admitted(act):
                        continue
                    if act.spec.map is not None and act.batch is None:
                        self._expand(act)
                        continue
                    # The task reports its own outcome (_run_reported): no done callback, so no
                    # extra hop through the event loop per finished step or map item.
                    reported = self._run_reported(act, inline)
                    tasks[act] = asyncio.Task(reported, loop=loop) if plain_tasks else loop.create_task(reported)
                if not tasks:
                    if ready:
                        continue  # admitting queued more (a rejection routed elsewhere)
                    break
                if not done:
                    # One wake-up for everything that finishes before this task runs again: a
                    # whole batch of map items settles in one pass.
                    self._wake = loop.create_future()
                    await self._wake
                    self._wake = None
                # Everything that finished is settled, even once one of them failed the run: a
                # sibling that finished in the same turn ran, and its row and checkpoint say so.
                while done:
                    act, out, t0, body_end = done.popleft()
                    del tasks[act]
                    if isinstance(out, dict):  # an inline step's plain success: its updates
                        self._settle_inline(act, out, t0, body_end)
                    elif isinstance(out, Outcome):
                        self._settle(act, out)
                    else:
                        raise out  # a bug in the attempt runner: the run fails with it
                if durable and durability.pending:
                    await durability.sync()  # successors start only once their predecessors are durable
            if tasks:  # a failed step left siblings running (no coroutine made per run otherwise)
                await self._cancel_tasks()
        except asyncio.CancelledError:
            self._fail(RunError("cancelled", run_id=self.run_id), RunStatus.CANCELLED)
            await self._cancel_tasks()
            raise
        except Exception as exc:  # a bug or a failing sink: the run fails loudly, with the cause
            self._fail(exc, RunStatus.FAILED)
            await self._cancel_tasks()
        finally:
            if alarm is not None:
                alarm.close()
            self.ended_at = time.time()
            if not self._failed:
                if self.parked:
                    self.status = RunStatus.WAITING_APPROVAL
                elif self.unreconciled:
                    self.status = RunStatus.NEEDS_RECONCILIATION
                else:
                    self.status = RunStatus.SUCCEEDED
            try:
                await self._durability.finish(
                    status=self.status,
                    state=self.state,
                    error=self.error,
                    elapsed=self.elapsed_before + time.monotonic() - t_start,
                )
            except LeaseError as exc:
                # Another process took the run over while this one was stopped (the lease fence
                # refused its last writes): the run's record is that process's now, and this
                # execution ends with the error that says so, whatever it had reached.
                self._failed, self.error, self.status = True, exc, RunStatus.FAILED
            finally:
                with _FINISH_LOCK:
                    _executing.discard(self.run_id)
                    self._ended = True
                    if self._finished is not None:
                        self._finished.set()
                if counted:
                    collector.run_ended()
                self._outlet.status_changed()

    async def _run_reported(self, act: Activation, inline: bool) -> None:
        """Run ``act`` as a task of its own and hand its outcome (or the exception of a bug, or
        the cancellation) to the scheduler, waking it if it sleeps. ``inline``: the run may await
        inline steps' bodies itself (see drive); a plain success is handed over as its updates
        (a dict, with the body's start and end), for ``_settle_inline``, with no attempt runner,
        no Outcome and no :class:`FirstAttempt`: what the scheduler pops is ``(act, updates or
        Outcome or exception, t0, body_end)``, the times set for updates only."""
        cancelled = None
        out: Outcome | dict[str, Any] | BaseException
        t0 = body_end = 0.0
        try:
            spec = act.spec
            if inline and spec.inline:  # as in drive's lone-step path
                t0 = time.perf_counter()
                try:
                    if spec.timeout is None:
                        result = await spec.fn(act.view)
                    else:
                        result = await within(spec.name, spec.fn(act.view), spec.timeout)
                except BaseException as exc:  # the runner classifies, retries or re-raises it
                    # (Not kept in a local: the error's traceback holds this frame, a cycle.)
                    out = await self._runner.run(act, FirstAttempt(None, exc, self._wall + t0, t0, time.perf_counter()))
                else:
                    body_end = time.perf_counter()
                    if result is None:
                        out = {}
                    elif type(result) is dict and (not result or plain_updates(result)):
                        out = result
                    else:
                        out = await self._runner.run(act, FirstAttempt(result, None, self._wall + t0, t0, body_end))
            else:
                out = await self._runner.run(act)
        except asyncio.CancelledError as exc:  # the body cancelled itself: the run is cancelled
            out = cancelled = exc
        except Exception as exc:  # not a step's failure (that is an Outcome): a bug, raised by drive
            out = exc
        done = self._done
        assert done is not None  # made before the first task
        done.append((act, out, t0, body_end))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        if cancelled is not None:
            raise cancelled

    async def _cancel_tasks(self) -> None:
        pending = [t for t in self._tasks.values() if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    def _fail(self, error: BaseException, status: str) -> None:
        if not self._failed:
            self._failed = True
            self.error = error
            self.status = status

    def _newly_absent(self, fields: tuple[str, ...]) -> list[str]:
        """Of ``fields``, those absent from the state that no warning of this run named yet (now
        counted as named: a run warns of a field once)."""
        state, warned = self.state, self._unsure_warned
        absent = [f for f in fields if f not in state and (warned is None or f not in warned)]
        if absent:
            if warned is None:
                warned = self._unsure_warned = set()
            warned.update(absent)
        return absent

    def _warn_absent(self, step: str, fields: tuple[str, ...], chosen: Go) -> None:
        """Warn (once per run and field) of a field the routes after ``step`` compared, and none
        held, that neither the inputs nor any step so far put in the state, and no step declares it
        writes: such a field compares false, so a misspelt name silently sends every run to the
        default. (Only then: a route that held, `amount >= 10 | user.tier in [...]` without a user,
        was decided by what is there.)"""
        absent = self._newly_absent(fields)
        present = sorted(self.state)
        for name in absent:
            hint = did_you_mean(name, present)
            _warn_at_route(
                self._onward[step].router,
                RouteFieldWarning(
                    f"workflow {self.workflow!r}: the route after step {step!r} compares field {name!r}, which "
                    f"neither the run's inputs nor any step so far put in the state (it holds {present})"
                    f"{hint}; a missing field compares false, and no route held: the run went to the "
                    f"default, {chosen.target!r}. Fix the field's name in the "
                    f"condition; if it is optional, declare the step that writes it "
                    f"{_optional_field(self._onward[step].router, name)}"
                ),
            )

    def _warn_held(self, step: str, held: tuple[tuple[Go, tuple[str, ...]], ...], chosen: Go | None) -> None:
        """Warn (once per run and field) of a field the route taken after ``step`` compared with
        ``ne`` (or under ``~``), absent from the state as no step declares it writes: a missing
        field equals nothing, so a misspelt name made the route hold (a state machine's
        `when("status", "ne", "done") >> go("work")` loops to its visit bound)."""
        if chosen is None:
            return
        absent = self._newly_absent(next((names for go, names in held if go is chosen), ()))
        present = sorted(self.state)
        for name in absent:
            _warn_at_route(
                self._onward[step].router,
                RouteFieldWarning(
                    f"workflow {self.workflow!r}: the route after step {step!r} to {chosen.target!r} compares field "
                    f"{name!r}, which neither the run's inputs nor any step so far put in the state (it holds "
                    f"{present}){did_you_mean(name, present)}; a missing field equals nothing, so the route held "
                    f"because it is missing (a loop back goes round to its visit bound). Fix the field's name in "
                    f"the condition or in the step that writes it; if it is optional, declare the step that "
                    f"writes it {_optional_field(self._onward[step].router, name)}"
                ),
            )

    # ---- scheduling ------------------------------------------------------------------------

    def _activate(
        self,
        spec: StepSpec,
        tools: tuple[str, ...] | None,
        failure: Failure | None,
        queued: float,
        reuse: Activation | None = None,
    ) -> None:
        """Queue a visit of ``spec`` (or meet its visit bound); ``queued``: when it became due.
        ``reuse``: a settled activation that nothing holds any more (see _settle_inline), made
        this visit in place: one allocation less per step of a chain or a loop."""
        name = spec.name
        visit = self._visits[name] + 1
        self._visits[name] = visit
        if spec.max_visits is not None and visit > spec.max_visits:
            self._visit_limit(spec, visit)
            return
        if self._joins:
            self._active[name] += 1
        version = self._version
        view = self._view
        if view is None or self._view_version != version:
            view = self._view = MappingProxyType(Fields(self.state))  # snapshot(), one call less per commit
            self._view_version = version
        if tools is None:
            tools = spec.tools
        act = reuse
        if act is None:
            act = Activation(spec, visit, tools, version, failure, view, queued)
        else:  # Activation.__init__'s fields, set here: no call per step (never a map item's)
            act.spec, act.visit, act.tools, act.version, act.failure, act.view, act.queued = (
                spec,
                visit,
                tools,
                version,
                failure,
                view,
                queued,
            )
        self._ready.append(act)

    def _visit_limit(self, spec: StepSpec, visit: int) -> None:
        error = VisitLimitError(
            f"visited {visit} times, over its bound max_visits={spec.max_visits}; raise the "
            f"bound or give the step a fallback (@flow.step(fallback=...)) to leave the loop",
            run_id=self.run_id,
            step=spec.name,
        )
        route = spec.fallback or None  # END too: the row says where the run went on to (its end)
        self._record(self._make.ended_before(spec.name, visit, error, route, spec.tools))
        if route is None:
            self._fail(error, RunStatus.FAILED)
        elif route != END:
            failure = self._failure_of(spec.name, 0, error, ErrorKind.PERMANENT, str(error))
            self._activate(self.graph.steps[route], None, failure, time.perf_counter())

    def _follow(self, act: Activation, updates: Mapping[str, Any] | None, chosen: Go | None, queued: float) -> None:
        """A step's success, logged, and its successors (due since ``queued``): the route chosen,
        or what its edges lead to, read from the graph's compiled :class:`~wfkit.model._graph.Onward`
        (a join notes the arrival and waits for its other predecessors). Live and in replay."""
        name = act.spec.name
        log = self.log
        if chosen is not None:
            target = chosen.target
            log.append((len(log) + 1, name, act.visit, "ok", updates, target, None, None))
            if target != END:
                self._activate(self.graph.steps[target], chosen.tools, None, queued)
            return
        log.append((len(log) + 1, name, act.visit, "ok", updates, None, None, None))
        onward = self._onward[name]
        for spec in onward.starts:
            self._activate(spec, None, None, queued)
        for join in onward.joins:
            missing = self._missing.get(join)
            if missing is None:
                missing = self._missing[join] = set(self.graph.static_preds[join])
            missing.discard(name)

    def _fire_joins(self) -> None:
        """Queue every waiting join none of whose missing predecessors can still arrive.

        A missing predecessor can still arrive while one of the steps it can be reached from
        (without passing through the join) is active. Only the missing ones are looked at, and
        the first that can still arrive decides: a fan-in of n branches asks n times (after each
        settled step), mostly about a branch still running, so the question is asked here, in
        one frame, with nothing allocated unless a join can fire.

        Joins that can fire at once may wait on each other (``j1 -> j2`` with j2 also waiting for
        another branch): a join one of whose missing predecessors can be reached from another
        join that can fire now waits for that one, which is queued first (see ``_unblocked``)."""
        active, blockers_of, missing_of = self._active, self.graph.join_blockers, self._missing
        ready: list[str] | None = None
        for join, missing in missing_of.items():
            blockers = blockers_of[join]
            for pred in missing:
                for step in blockers[pred]:
                    if active[step]:
                        break
                else:
                    continue  # this one cannot arrive any more: ask about the next
                break  # it can still arrive: keep waiting
            else:
                if ready is None:
                    ready = []
                ready.append(join)
        if ready is None:
            return
        for join in ready if len(ready) == 1 else self._unblocked(ready):
            del missing_of[join]
            self._activate(self.graph.steps[join], None, None, time.perf_counter())

    def _unblocked(self, ready: list[str]) -> list[str]:
        """Of several joins that can fire, those no other of them can still lead to (through one of
        their missing predecessors); the rest wait, since the others, once queued, are active. In a
        loop where each leads to the other, the first asked about goes first."""
        blockers_of, missing_of = self.graph.join_blockers, self._missing
        free = [
            join
            for join in ready
            if not any(
                other != join and other in blockers_of[join][pred] for pred in missing_of[join] for other in ready
            )
        ]
        return free or ready[:1]

    def _settle(self, act: Activation, out: Outcome) -> None:
        """Commit a finished activation: state, route, checkpoint, event, successors."""
        if act.batch is not None:
            self._settle_item(act, act.batch, out)
            return
        self._settling = True
        try:
            checkpoint = self._settle_outcome(act, out)
        finally:
            self._settling = False
        if checkpoint is not None:
            self._checkpoint(act, *checkpoint, out.body_end)
        self._record_held()

    def _record_held(self) -> None:
        """Rows recorded while settling (a visit limit met by a successor) follow the checkpoint."""
        held = self._held
        if held is not None:
            self._held = None
            for event in held:
                self._record(event)

    def _settle_inline(
        self, act: Activation, updates: dict[str, Any], t0: float, body_end: float, encoded: str | None = None
    ) -> None:
        """:meth:`_settle` for an inline step's first attempt that returned plain updates: the same
        commit, route, row, history and successors, with no Outcome. ``t0``, ``body_end``: the
        body's start and end (perf_counter). ``encoded``: in a durable run, the updates as the
        checkpoint keeps them (None: the run is kept in memory).

        In memory, with no checkpoint to wait for, the row goes to the sinks at once; in a durable
        run, the checkpoint goes to the writer, and its row to the sinks once it is durable
        (``Durability.sync``). Either happens before the successors are queued: a row recorded
        while queuing them (a visit bound met) follows it, with no holding back. Nothing holds
        ``act`` once it settled (the scheduler popped it, its task, if it had one, is gone; the
        checkpoint keeps the row, not the activation), so a lone successor takes the object over.

        The engine's most frequent path (every link of a chain, every lap of a loop), planned to
        run in this one frame: the row is built (``EventMaker.ok``) and delivered
        (``Outlet.emit``) here, and a lone successor or a route's choice is queued here as
        :meth:`_activate` queues it when no visit bound is met. Each of those written out here
        saves a Python call per step, together a quarter of the engine's own work per step; a
        test holds the row equal to ``EventMaker.ok``'s, and the scheduler's tests the rest."""
        spec = act.spec
        name = spec.name
        joins = self._joins
        if joins:
            self._active[name] -= 1
        onward = self._onward[name]
        router = onward.router
        try:
            if updates:
                if act.version == self._version and not self._ready and not self._tasks and not self.merges:
                    self._version += 1  # alone, nothing committed since it was queued: see _commit
                    self.state.update(updates)
                else:
                    self._commit(act, updates)
            chosen = None if router is None else router.decide(self.state)
            if onward.unsure and router is not None and chosen is router.default:
                self._warn_absent(name, onward.unsure, chosen)
            elif onward.held_unsure:
                self._warn_held(name, onward.held_unsure, chosen)
        except Exception as exc:  # a merge conflict or a condition that cannot be evaluated
            self._inline_failed(act, updates, exc, t0, body_end)
            return
        visit = act.visit
        make = self._make
        started_at = self._wall + t0
        latency = body_end - t0
        route = None if chosen is None else chosen.target
        outlet = self._outlet
        if not outlet.sinks and not outlet.observers and encoded is None and make.only_text:
            # No one hears the row as it happens: kept compact, made when the events are read.
            outlet.rows.append((name, visit, started_at, latency, t0 - act.queued, route, act.tools))
            outlet.compact = True
        else:
            # The row, as EventMaker.ok makes it.
            event: StepEvent = _new_tuple(
                StepEvent,
                (
                    make.run_id,
                    make.workflow,
                    make.version,
                    name,
                    visit,
                    1,
                    Status.OK,
                    None,
                    None,
                    None,
                    started_at,
                    started_at + latency,
                    latency,
                    t0 - act.queued,
                    None,
                    route,
                    act.tools,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    make.parameters_hash,
                    _HOST,
                    None,
                    None,
                    make.parent_run_id,
                    None,
                    None,
                    None,
                ),
            )
            if not make.only_text:
                event = make.processed(event)
            if encoded is None:  # delivered, as Outlet.emit delivers it
                outlet.rows.append(event)
                for sink in outlet.sinks:
                    sink(event)
                for observer in outlet.observers:
                    observer(event)
            else:
                self._durability.checkpoint_ok(event, encoded, body_end)
        tools: tuple[str, ...] | None = None  # the successor's own, unless a route binds some
        if chosen is None:
            successor = onward.lone
            if successor is None:  # fan-out, joins or the end of a branch
                self._follow(act, updates, None, body_end)
                if self._missing:
                    self._fire_joins()
                return
        else:
            target = chosen.target
            successor = None if target == END else self.graph.steps[target]
            tools = chosen.tools
        log = self.log
        log.append((len(log) + 1, name, visit, "ok", updates, route, None, None))
        if successor is not None:
            # Queued as _activate queues it, in ``act``, unless the successor's visit bound is met.
            succ = successor.name
            visits = self._visits
            visit = visits[succ] + 1
            bound = successor.max_visits
            if bound is not None and visit > bound:
                self._activate(successor, tools, None, body_end)  # it records the breach
            else:
                visits[succ] = visit
                if joins:
                    self._active[succ] += 1
                version = self._version
                view = self._view
                if view is None or self._view_version != version:
                    view = self._view = MappingProxyType(Fields(self.state))
                    self._view_version = version
                act.spec = successor
                act.visit = visit
                act.tools = successor.tools if tools is None else tools
                act.version = version
                act.failure = None
                act.view = view
                act.queued = body_end
                self._ready.append(act)
        if self._missing:
            self._fire_joins()

    def _inline_failed(
        self, act: Activation, updates: dict[str, Any], exc: Exception, t0: float, body_end: float
    ) -> None:
        """An inline step's success that cannot be settled (its commit conflicts, or its route's
        condition cannot be evaluated): a failed row for the attempt, and the run fails with ``exc``."""
        out = stamped(None, 1, self._wall + t0, t0 - act.queued, body_end - t0, body_end)
        out.updates, out.error, out.kind, out.status = updates, exc, ErrorKind.PERMANENT, Status.FAILED
        self._record(self._make.outcome(act, out, None))
        self._fail(exc, RunStatus.FAILED)

    @staticmethod
    def _encoded(step: str, result: Any, fn: object) -> str | None:
        """A durable inline step's result as its checkpoint's JSON; None when it is not a plain
        dict the codec keeps (the attempt runner then judges it, and says what is wrong)."""
        if result is None:
            return "{}"
        if type(result) is not dict:
            return None
        try:
            return encode_updates(step, result, fn)
        except Exception:  # a value state cannot keep: the runner raises it again, classified
            return None

    def _settle_outcome(self, act: Activation, out: Outcome) -> tuple[str, str | None, str | None, StepEvent] | None:
        """Apply the outcome; returns the checkpoint to write (outcome, updates, failure, event)."""
        spec = act.spec
        name = spec.name
        if out.halted is not None:  # a sub-workflow's child halted: this step waits with it
            self._park_child(act, out)
            return None
        self._active[name] -= 1
        checkpoint: tuple[str, str | None, str | None, StepEvent]
        if out.error is None:
            chosen = None
            onward = self._onward[name]
            router = onward.router
            try:
                if out.updates:
                    self._commit(act, out.updates)
                if router is not None:
                    chosen = router.choose(self.state)
                    if onward.unsure and chosen is router.default:
                        self._warn_absent(name, onward.unsure, chosen)
                    elif onward.held_unsure:
                        self._warn_held(name, onward.held_unsure, chosen)
            except Exception as exc:  # a merge conflict or a condition that cannot be evaluated
                out.error, out.kind, out.status = exc, ErrorKind.PERMANENT, Status.FAILED
                self._record(self._make.outcome(act, out, None))
                self._fail(exc, RunStatus.FAILED)
                return None
            route = None if chosen is None else chosen.target
            checkpoint = ("ok", out.encoded, None, self._make.outcome(act, out, route))
            self._follow(act, out.updates, chosen, time.perf_counter())
        else:
            assert out.error is not None and out.kind is not None
            fallback = spec.fallback
            if out.run_timeout or fallback is None:
                self._record(self._make.outcome(act, out, None))
                if spec.irreversible:
                    self._durability.intent_failed(name, act.visit)
                err: RunError
                if out.run_timeout:
                    deadline = self._runner.deadline
                    left = 0.0 if deadline is None else deadline - time.monotonic()
                    # The runner also ends a run whose next attempt's backoff would cross the
                    # deadline: then the deadline has not passed yet, and the attempt's error is why.
                    why = (
                        f"the run's deadline of {self.timeout} s passed"
                        if left < 0.001
                        else f"the run's deadline of {self.timeout} s would pass before the next attempt "
                        f"could start ({left:.2g} s left); the last one failed with "
                        f"{type(out.error).__name__} ({out.kind.value}): {out.error}"
                    )
                    err = RunTimeoutError(
                        why,
                        run_id=self.run_id,
                        step=name,
                        attempt=out.attempt,
                    )
                else:
                    err = StepFailedError(
                        f"failed with {type(out.error).__name__} ({out.kind.value}): {out.error_message()}",
                        run_id=self.run_id,
                        step=name,
                        attempt=out.attempt,
                    )
                    err.error_kind = out.kind
                err.__cause__ = out.error
                self._fail(err, RunStatus.TIMED_OUT if out.run_timeout else RunStatus.FAILED)
                return None
            failure = self._failure_of(name, out.attempt, out.error, out.kind, out.error_message())
            event = self._make.outcome(act, out, fallback)
            checkpoint = ("fallback", None, json.dumps(dataclasses.asdict(failure)), event)
            self.log.append((len(self.log) + 1, name, act.visit, "fallback", None, fallback, failure, None))
            if fallback != END:
                self._activate(self.graph.steps[fallback], None, failure, time.perf_counter())
        if self._missing:
            self._fire_joins()
        return checkpoint

    def _park_child(self, act: Activation, out: Outcome) -> None:
        """The child run of a sub-workflow step halted: park the step (it stays active, so joins
        wait); resuming the run runs it again, which resumes the same child run."""
        assert out.halted is not None
        if out.halted.status != RunStatus.WAITING_APPROVAL:
            # Its irreversible step waits for a person's reconciliation: no gate, so no gate's
            # row (the step log would draw an approval wait). The run's status and `wfkit show`
            # say what waits; the child's crashed attempt, and this step's, why.
            self.unreconciled += (act,)
            return
        self.parked += (act,)
        extra = {"child_run_id": out.halted.child_run_id, "child_status": out.halted.status}
        self._record(
            self._make.event(
                act.spec.name,
                act.visit,
                0,  # like a gate's row: the attempt is not used up while the child waits
                Status.WAITING_APPROVAL,
                None,
                None,
                out.started_at,
                out.latency,
                out.queue_s,
                None,
                None,
                act.tools,
                {"extra": extra},
            )
        )

    # ---- map steps ---------------------------------------------------------------------------

    def _expand(self, act: Activation) -> None:
        """A map step's turn: queue its items (bounded by max_concurrency); it settles when the
        last item does."""
        spec = act.spec
        assert spec.map is not None
        items = act.view.get(spec.map.over)
        if not isinstance(items, list | tuple):
            out = Outcome()
            out.attempt, out.started_at = 1, time.time()
            over = spec.map.over
            what = "is missing" if over not in act.view else f"holds {type(items).__name__} {reprlib.repr(items)}"
            try:  # still the value the run was given (a step may have written it since)
                given = over in self.inputs and bool(self.inputs[over] == items)
            except Exception:  # a value that cannot be compared so (an array) is no answer
                given = False
            fix = (
                f"pass the run's input {over!r} as a list ({{{over!r}: [...]}})"
                if given
                else "the step before it must write a list there"
            )
            out.error = StateValueError(
                f"map step {spec.name!r} maps over state field {over!r}, which {what}; a map runs once per "
                f"item of a list (or tuple): {fix}"
            )
            out.kind, out.status = ErrorKind.PERMANENT, Status.FAILED
            self._settle(act, out)
            return
        batch = Batch(act, list(items), self._map_done.pop((spec.name, act.visit), {}))
        act.batch = None  # the map activation itself stays the batch's owner, not an item
        runner = self._runner
        if runner.cut_off:
            cut = runner.cut_off.pop((spec.name, act.visit), None)
            if cut is not None and cut.started_at is not None and batch.pending:
                # A crash cut this map off: its items in flight then were the unfinished ones among
                # the first it started (in item order, max_concurrency at a time). Each is
                # accounted for as a crashed attempt, as a step in flight is (_attempts._crashed).
                limit = spec.map.max_concurrency
                started = batch.done + (len(batch.pending) if limit is None else min(limit, len(batch.pending)))
                crashes = self._durability.item_crashes(spec.name, act.visit)
                for index in batch.pending:
                    if index < started:
                        before = runner.attempts_before.get((spec.name, act.visit, index), 0)
                        runner.cut_off[(spec.name, act.visit, index)] = CutOff(
                            before + 1, cut.started_at, None, crashes.get(index, 0)
                        )
        if not batch.pending:
            self._gather(batch)
            return
        self._feed(batch)

    def _feed(self, batch: Batch) -> None:
        limit = batch.act.spec.map.max_concurrency if batch.act.spec.map is not None else None
        pending, ready, act, items = batch.pending, self._ready, batch.act, batch.items
        while pending and (limit is None or batch.running < limit):
            index = pending.pop()
            batch.running += 1
            ready.append(act.for_item(batch, index, items[index]))

    def _settle_item(self, act: Activation, batch: Batch, out: Outcome) -> None:
        """One item finished: keep its result and checkpoint it; the last one settles the map."""
        batch.running -= 1
        index = act.index
        assert index is not None
        if batch.failed:  # the map already gave up: record what this straggler did, change nothing
            self._record(self._make.outcome(act, out, None))
            return
        if out.error is None:
            batch.results[index] = out.value
            batch.done += 1
            event = self._make.outcome(act, out, None)
            self._checkpoint(act, "item", out.encoded, None, event, out.body_end)
            self.log.append(
                (len(self.log) + 1, act.spec.name, act.visit, "item", {"result": out.value}, None, None, index)
            )
            if batch.pending:
                self._feed(batch)
            elif batch.running == 0:
                self._gather(batch)
            return
        batch.failed = True
        batch.pending.clear()
        self._record(self._make.outcome(act, out, None))
        owner = batch.act
        failed = Outcome()
        # The map step's own row: failed because of the item (timed out only if the run's deadline passed).
        failed.attempt, failed.started_at, failed.kind = (
            1,
            time.time() - (time.perf_counter() - batch.started),
            out.kind,
        )
        failed.status = Status.TIMEOUT if out.run_timeout else Status.FAILED
        failed.run_timeout, failed.usage = out.run_timeout, None
        failed.latency = time.perf_counter() - batch.started
        failed.error = MapItemError(owner.spec.name, index, len(batch.items), out.error, out.not_retried)
        self._settle(owner, failed)

    def _gather(self, batch: Batch) -> None:
        """Every item finished: the map step settles as one step writing the results in item order."""
        act, spec = batch.act, batch.act.spec
        assert spec.map is not None
        out = Outcome()
        # A map's own row is no attempt: its items' rows are. The step log tells it apart by its
        # items' rows, and a map over no items has none, so its row says so itself: attempt 0,
        # as a step visit that ended before the step ran (EventMaker.ended_before).
        out.attempt = 1 if batch.items else 0
        out.started_at = time.time() - (time.perf_counter() - batch.started)
        out.latency = time.perf_counter() - batch.started
        out.queue_s = batch.started - act.queued
        out.updates = {spec.map.into: batch.results}
        if self.store is not None:  # a durable run checkpoints the results as JSON
            out.encoded = encode_updates(spec.name, out.updates, spec.fn)
        out.usage = {"extra": {"items": len(batch.items)}}
        self._settle(act, out)

    def _commit(self, act: Activation, updates: Mapping[str, Any]) -> None:
        """Write a step's updates into the state (merge rules applied), refusing a field another
        step wrote after this one was queued: parallel steps must not overwrite each other.

        Who wrote each field, and when, is kept only for the activations alive beside this one
        (queued or running): an activation queued later sees this commit, so only a write after
        its own queuing could conflict with it. A step that runs alone (a chain's link, a loop's
        lap) with nothing committed since it was queued and no merge rule thus commits in one
        ``dict.update``: nothing to check, nothing anyone will check against."""
        seen = act.version
        # Nothing committed since the step was queued (a chain, a loop): nothing to conflict with.
        unseen = self._version != seen
        version = self._version = self._version + 1
        if not unseen and not self.merges and not self._ready and not self._tasks:
            self.state.update(updates)
            return
        state, writers, merges, name = self.state, self._writers, self.merges, act.spec.name
        for key, value in updates.items():
            merge = merges.get(key) if merges else None  # most workflows declare no merge rule
            if merge is not None:
                state[key] = merge(state.get(key), value)
                continue
            if unseen:
                previous = writers.get(key)
                if previous is not None and previous[0] > seen and previous[1] != name:
                    raise StateConflictError(key, previous[1], name)
            state[key] = value
            writers[key] = (version, name)

    def _failure_of(self, step: str, attempt: int, error: BaseException, kind: ErrorKind, message: str) -> Failure:
        return Failure(step, attempt, kind.value, type(error).__name__, message)

    # ---- what the durability layer is asked -----------------------------------------------------

    async def _admitted(self, act: Activation) -> bool:
        """Ask the durability layer whether a gated step may run now, and act on its answer."""
        admission = await self._durability.admit(act, self.state)
        verdict = admission.verdict
        if verdict == "run":
            return True
        if verdict == "park":
            self.parked += (act,)
        elif verdict == "reconcile":
            self.unreconciled += (act,)
        elif verdict == "fail":
            assert admission.error is not None
            self._fail(admission.error, RunStatus.FAILED)
        else:  # rejected: revise and resubmit on the gate's on_reject step, or fail
            self._active[act.spec.name] -= 1
            # Settled without running: the history says why the run went on to on_reject (or failed).
            self.log.append(
                (len(self.log) + 1, act.spec.name, act.visit, "rejected", None, admission.route, None, None)
            )
            if admission.route is None:
                assert admission.error is not None
                self._fail(admission.error, RunStatus.FAILED)
            else:
                self._activate(self.graph.steps[admission.route], None, None, time.perf_counter())
                if self._missing:
                    self._fire_joins()
        return False

    def _checkpoint(
        self, act: Activation, outcome: str, updates: str | None, failure: str | None, event: StepEvent, body_end: float
    ) -> None:
        """A settled step (or map item): its checkpoint, and its event once that is durable."""
        if not self._replaying:
            self._durability.checkpoint(act, outcome, updates, failure, event, body_end)

    def _record(self, event: StepEvent) -> None:
        """A row with no checkpoint of its own (a visit limit, a failure that ends the run)."""
        if self._replaying:
            return
        if self._settling:  # settling a step: it follows that step's checkpoint
            if self._held is None:
                self._held = []
            self._held.append(event)
            return
        self._durability.record(event)

    # ---- replay ----------------------------------------------------------------------------------

    def replay(
        self,
        checkpoints: Sequence[tuple[Any, ...]],
        attempts: dict[tuple[str, int] | tuple[str, int, int], int],
        *,
        crashed: bool = False,
        cancelled: dict[tuple[str, int] | tuple[str, int, int], int] | None = None,
    ) -> None:
        """Rebuild state and schedule from a stopped run's checkpoints, without running anything.

        The same scheduling code runs as in a live run, fed with the outcomes the durability layer
        decodes from the checkpoints, so the queue ends holding exactly the steps that had not
        completed: siblings that finished before a crash are not run again. Finished items of a
        map step are kept for it, so only the unfinished ones run. A fork (a run forked from
        another) applies its update right after the step it forked at, and that step's route is
        chosen anew on the updated state. ``attempts``: attempts made so far per (step, visit);
        ``crashed``: the run died, so the attempts in flight were cut off; ``cancelled``: of those
        attempts, the ones stopped from outside, which spend none of their step's retry budget.
        """
        self._resumed = True
        self._runner.attempts_before = attempts
        self._runner.cancelled_before = cancelled or {}
        self._replaying = True
        log = self.log
        try:
            steps = self.graph.steps
            self._activate(steps[self.graph.entry], None, None, time.perf_counter())
            for seq, step, visit, outcome, updates, route, failure, map_index, fork in self._durability.recorded(
                checkpoints
            ):
                if outcome == "item":
                    self._map_done.setdefault((step, visit), {})[int(map_index or 0)] = (updates or {}).get("result")
                    log.append((len(log) + 1, step, visit, "item", updates, None, None, map_index))
                    continue
                act = next((a for a in self._ready if a.spec.name == step and a.visit == visit), None)
                if act is None:
                    raise WorkflowChangedError(
                        f"checkpoint {seq} records step {step!r} (visit {visit}), but replaying the "
                        f"current workflow never reaches it there; the workflow changed in a way "
                        f"this run cannot survive: start a new run",
                        run_id=self.run_id,
                        step=step,
                    )
                self._ready.remove(act)
                self._active[step] -= 1
                if outcome == "ok":
                    self._commit(act, updates or {})
                    router = self._onward[step].router
                    if fork is not None:
                        self.state.update(fork)  # a fork's update is the state it asked for: no merge
                        self._view = None  # the state changed without a commit
                    if router is None:  # logged as live: what its edges lead to starts, on the forked state
                        self._follow(act, updates, None, time.perf_counter())
                    else:
                        log.append((len(log) + 1, step, visit, "ok", updates, route, None, None))
                    if fork is not None:
                        chosen = None if router is None else router.choose(self.state).target
                        log.append((len(log) + 1, step, visit, "fork", fork, chosen, None, None))
                    if router is not None:
                        go = None
                        if fork is None:
                            go = next(
                                (g for g in (*(r.go for r in router.routes), router.default) if g.target == route),
                                None,
                            )
                        if go is None:  # a fork, reconciled by hand, or the routes changed: decide anew
                            go = router.choose(self.state)
                        if go.target != END:
                            self._activate(steps[go.target], go.tools, None, time.perf_counter())
                else:  # fell back, or its gate was rejected (routed to on_reject)
                    log.append((len(log) + 1, step, visit, outcome, None, route, failure, None))
                    if route is not None and route != END:
                        self._activate(steps[route], None, failure, time.perf_counter())
                if self._missing:
                    self._fire_joins()
            if crashed:
                self._runner.cut_off = self._durability.cut_offs(self._ready)
        finally:
            self._replaying = False
