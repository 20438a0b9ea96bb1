"""The engine: one run of a compiled graph, driven as one asyncio task.

The scheduler keeps a queue of ready activations (a step about to run, with the tools its route
bound). A lone ready step runs inline in the scheduler's own task: a linear chain never pays for
task creation. Two or more ready steps become tasks that run concurrently, and the scheduler
sleeps until one finishes. Each finished activation is committed to the state (with conflict
checks), routed, and recorded as a step event; joins fire when no predecessor can still arrive.

In a durable run, settling a step hands its checkpoint to the store's writer thread and goes on
settling whatever else finished; before it starts any step again, the scheduler awaits every
checkpoint it handed over (``_sync``). So no successor starts before its predecessor's checkpoint
is durable, while other runs (and this run's steps already in flight) keep going, and all the
checkpoints of a fan-in share one commit. A first attempt writes no "started" record of its own:
after a crash, resume reads what was in flight from the checkpoints (``Gates._find_cut_off``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from wfkit.engine._attempts import Attempts, CutOff, _Activation, _Batch, _Outcome
from wfkit.engine._cache import StepCache
from wfkit.engine._gates import Gates
from wfkit.engine._subflows import Subflows
from wfkit.logs._steplog import exporter
from wfkit.model import _settings
from wfkit.model._approvals import HALT, ApprovalPolicy
from wfkit.model._context import ChatModel, Failure, StepContext, ToolProvider
from wfkit.model._errors import (
    LeaseError,
    MapItemError,
    RunError,
    RunTimeoutError,
    StateConflictError,
    StateValueError,
    StepFailedError,
    VisitLimitError,
)
from wfkit.model._events import Status, StepEvent, TokenChunk
from wfkit.model._graph import Graph
from wfkit.model._merge import Merge
from wfkit.model._processors import DEFAULT_PROCESSORS, Processor, chain
from wfkit.model._retry import ErrorKind
from wfkit.model._routes import END
from wfkit.model._status import RunStatus
from wfkit.model._steps import StepSpec
from wfkit.store._journal import encode_updates
from wfkit.store._store import LEASE_TTL, Store
from wfkit.store._writer import Rows

_HOST = socket.gethostname()
_FINISH_LOCK = threading.Lock()

# Stored runs with an execution in this process, from the moment it is built (a resume takes the
# lease before its task starts) until it ends or halts. The store's lease is per store object, so
# it cannot tell two executions of one process apart: this can.
_executing: set[str] = set()


def claim(run_id: str) -> None:
    """Mark a stored run as executing here; refuse a second execution of it in this process."""
    with _FINISH_LOCK:
        if run_id in _executing:
            raise LeaseError(
                f"run {run_id} is already executing in this process; wait for it (await run, or "
                f"run.wait()) instead of resuming it again",
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


class Execution(Attempts, Gates, Subflows):
    """The mutable inside of one run. ``Run`` is its public handle."""

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
        self.parent_run_id = parent_run_id  # set when this run is a sub-workflow of another
        self.origin: dict[str, Any] | None = None  # where a forked run came from
        # Every settled step (and map item, and fork point) in order: what history() and an
        # in-memory fork read. Durable runs rebuild it from their checkpoints on resume.
        self.log: list[Checkpoint] = []
        self.status = RunStatus.PENDING
        self.error: BaseException | None = None
        self.events: list[StepEvent] = []
        self.late_results: list[dict[str, Any]] = []
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.timeout = timeout
        self.deadline: float | None = None
        self.parameters_hash = parameters_hash
        self.user_sinks = sinks  # handed on to sub-workflow runs
        self._sinks = (self.events.append, *sinks, *settings.extra_sinks)
        self._sleep = settings.sleep
        self._seed = seed if seed is not None else settings.seed
        self.seed = self._seed  # handed on to sub-workflow runs
        self._rng: random.Random | None = None
        self._version = 0
        self._writers: dict[str, tuple[int, str]] = {}
        self._visits: dict[str, int] = {}
        self._active: dict[str, int] = {}
        self._arrived: dict[str, set[str]] = {}
        self._ready: deque[_Activation] = deque()
        self._tasks: dict[asyncio.Task[_Outcome], _Activation] = {}
        self._done: deque[asyncio.Task[_Outcome]] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._failed = False
        # Durability: the store, the checkpoint counter, and what waits for a human.
        self.store = store
        self.policy = policy
        self.count_waiting = count_waiting
        self.elapsed_before = elapsed_before
        self._ended = False  # set at the very end of drive(); `finished` turns it into an Event
        self._finished: threading.Event | None = None
        self.parked: list[_Activation] = []  # waiting for an approval decision
        self.unreconciled: list[_Activation] = []  # irreversible steps cut off mid-flight
        self._resumed = False
        self._replaying = False
        self._attempt_base: dict[tuple[str, int], int] = {}
        self._cut_off: dict[tuple[str, int], CutOff] = {}  # attempts a crash interrupted (resume)
        # Durability in flight: checkpoints handed to the writer and not awaited yet (with the
        # event each one emits once durable), other writes, and the durable waits measured but
        # not yet in the journal (they ride in the run's next write).
        # (None: an event with no checkpoint, emitted in its turn so sinks see settle order.)
        self._unsynced: list[tuple[asyncio.Future[None] | None, StepEvent, float]] = []
        self._writes: list[asyncio.Future[Any]] = []
        self._waits: list[tuple[str, tuple[Any, ...]]] = []
        self._held: list[StepEvent] | None = None  # rows recorded while settling one step
        self._lease_renew_at = time.monotonic() + LEASE_TTL / 2
        # What steps reach through ctx.llm and ctx.tool().
        self.llm = llm
        self.tool_registry = tool_registry
        # Events pass through the processors before the journal and any sink; state checkpoints
        # lose the exact values of known secrets.
        self._process = chain(processors)
        self.observers: list[Callable[[StepEvent | None], object]] = []  # live views; None = status changed
        self.chunk_observers: list[Callable[[TokenChunk], object]] = []  # streamed LLM text, as it arrives
        self.step_cache = StepCache(graph.name, store)
        self._map_done: dict[tuple[str, int], dict[int, Any]] = {}  # items finished before a resume

    def _services(self) -> Execution:
        """What a step's context reaches the run through (ctx.llm, ctx.tool). A method, not an
        attribute pointing at itself: that would make every run a reference cycle for the GC."""
        return self

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

    async def call_tool(self, ctx: StepContext, name: str, arguments: dict[str, Any]) -> Any:
        """``ctx.tool(...)``: the engine hands the call down to the tool layer (contexts never import it)."""
        from wfkit.llm._tools import invoke

        return await invoke(ctx, name, arguments)

    def on_chunk(self, ctx: StepContext, text: str) -> None:
        """``ctx.chunk``: streamed LLM text goes to whoever asked for it (nothing is stored)."""
        if self.chunk_observers:
            chunk = TokenChunk(self.run_id, ctx.step, ctx.visit, ctx.attempt, text, time.time(), ctx.map_index)
            for observer in self.chunk_observers:
                observer(chunk)

    def llm_client(self) -> ChatModel:
        if self.llm is None:
            from wfkit.llm._llm import default_client

            self.llm = default_client(seed=self._seed)
        return self.llm

    def _get_rng(self) -> random.Random:
        # Built on first use: seeding a Random costs more than a whole short run otherwise.
        if self._rng is None:
            self._rng = random.Random(self._seed)
        return self._rng

    # ---- driving -------------------------------------------------------------------------

    async def drive(self) -> None:
        """Run until the end or a halt. Never raises for a failed step: see status and error."""
        self.status = RunStatus.RUNNING
        self.started_at = self.started_at or time.time()
        t_start = time.monotonic()
        if self.timeout is not None:
            self.deadline = t_start + max(self.timeout - self.elapsed_before, 0.0)
        try:
            if not self._resumed:
                self._activate(self.graph.entry, None, None)
            elif self.store is not None:
                await self.store.writer.submit_async(self.store.mark_running_op(self.run_id))
            await self._loop()
        except asyncio.CancelledError:
            self._fail(RunError("cancelled", run_id=self.run_id), RunStatus.CANCELLED)
            await self._cancel_tasks()
            raise
        except Exception as exc:  # a bug or a failing sink: the run fails loudly, with the cause
            self._fail(exc, RunStatus.FAILED)
            await self._cancel_tasks()
        finally:
            self.ended_at = time.time()
            if not self._failed:
                if self.parked:
                    self.status = RunStatus.WAITING_APPROVAL
                elif self.unreconciled:
                    self.status = RunStatus.NEEDS_RECONCILIATION
                else:
                    self.status = RunStatus.SUCCEEDED
            try:
                if self.store is not None:
                    await self._finish_durably(
                        self.store.finish_rows(
                            self.run_id,
                            status=self.status,
                            state=self.state,
                            error=self.error,
                            elapsed=self.elapsed_before + time.monotonic() - t_start,
                            ended=self.status in RunStatus.FINISHED,
                        )
                    )
                    exporter.submit(self.store, self.store.path.parent, self.run_id)
            finally:
                with _FINISH_LOCK:
                    _executing.discard(self.run_id)
                    self._ended = True
                    if self._finished is not None:
                        self._finished.set()
                for observer in self.observers:
                    observer(None)

    async def _finish_durably(self, finish: Rows) -> None:
        """The run's last write: what is still unsynced first (its events reach the sinks), then
        where the run stopped, with the durable waits not yet written. Runs also while the run
        is being cancelled (Ctrl-C): a second cancellation falls back to blocking on the writer,
        so the record is never skipped."""
        assert self.store is not None
        writer = self.store.writer
        try:
            try:
                await self._sync()
            finally:
                rows = [*self._take_waits(), *finish]
                await asyncio.shield(writer.submit_async(None, rows))
        except asyncio.CancelledError:
            writer.submit(None).result()  # everything handed over before is durable now
            raise

    def _take_waits(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The durable waits measured since the run's last write, as rows to write with it."""
        waits, self._waits = self._waits, []
        return waits

    async def _sync(self) -> None:
        """Wait until every write this run handed over is durable; then hand the checkpointed
        events, with their durable wait, to the sinks. Other runs keep going meanwhile."""
        while self._unsynced or self._writes:
            unsynced, self._unsynced = self._unsynced, []
            writes, self._writes = self._writes, []
            for write in writes:
                await write
            for checkpoint, event, body_end in unsynced:
                if checkpoint is None:
                    self._emit(event)
                    continue
                await checkpoint
                wait = time.perf_counter() - body_end
                self._waits.append(Store.durable_wait_row(wait, self.run_id, event.step, event.visit, event.attempt))
                self._emit(event._replace(durable_wait_s=wait))

    async def _loop(self) -> None:
        ready, tasks, done = self._ready, self._tasks, self._done
        loop = asyncio.get_running_loop()
        while not self._failed:
            if not tasks and len(ready) == 1:
                act = ready.popleft()
                if act.spec.gated and not await self._admit(act):
                    continue
                if act.spec.map is not None and act.batch is None:
                    self._expand(act)
                    continue
                outcome = await self._execute(act)
                self._settle(act, outcome)
                if self._unsynced or self._writes:
                    await self._sync()
                continue
            while ready and not self._failed:
                act = ready.popleft()
                if act.spec.gated and not await self._admit(act):
                    continue
                if act.spec.map is not None and act.batch is None:
                    self._expand(act)
                    continue
                task = loop.create_task(self._execute(act))
                task.add_done_callback(self._on_task_done)
                tasks[task] = act
            if not tasks:
                if ready:
                    continue  # admitting queued more (a rejection routed elsewhere)
                return
            if not done:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
            while done and not self._failed:
                task = done.popleft()
                self._settle(tasks.pop(task), task.result())
            if self._unsynced or self._writes:
                await self._sync()  # successors start only once their predecessors are durable
        await self._cancel_tasks()

    def _on_task_done(self, task: asyncio.Task[_Outcome]) -> None:
        self._done.append(task)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _cancel_tasks(self) -> None:
        pending = [t for t in self._tasks if not t.done()]
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

    # ---- scheduling ------------------------------------------------------------------------

    def _activate(self, name: str, tools: tuple[str, ...] | None, failure: Failure | None) -> None:
        spec = self.graph.steps[name]
        visit = self._visits.get(name, 0) + 1
        self._visits[name] = visit
        if spec.max_visits is not None and visit > spec.max_visits:
            self._visit_limit(spec, visit)
            return
        self._active[name] = self._active.get(name, 0) + 1
        self._ready.append(
            _Activation(spec, visit, spec.tools if tools is None else tools, self._version, failure, self.state)
        )

    def _visit_limit(self, spec: StepSpec, visit: int) -> None:
        now = time.time()
        error = VisitLimitError(
            f"visited {visit} times, over its bound max_visits={spec.max_visits}; raise the "
            f"bound or give the step a fallback (@flow.step(fallback=...)) to leave the loop",
            run_id=self.run_id,
            step=spec.name,
        )
        route = spec.fallback if spec.fallback and spec.fallback != END else None
        self._record(
            self._event(
                spec.name,
                visit,
                0,
                Status.FAILED,
                error,
                ErrorKind.PERMANENT,
                now,
                0.0,
                0.0,
                None,
                route,
                spec.tools,
                None,
            )
        )
        if route is not None:
            self._activate(route, None, self._failure_of(spec.name, 0, error, ErrorKind.PERMANENT))
        elif spec.fallback != END:
            self._fail(error, RunStatus.FAILED)

    def _arrive(self, target: str, source: str) -> None:
        """``source`` finished and its unconditional edge leads to ``target``."""
        if len(self.graph.static_preds[target]) < 2:
            self._activate(target, None, None)
        else:
            self._arrived.setdefault(target, set()).add(source)

    def _fire_joins(self) -> None:
        for join in list(self._arrived):
            arrived = self._arrived[join]
            blockers = self.graph.join_blockers[join]
            missing = self.graph.static_preds[join] - arrived
            active = self._active
            if any(active.get(s) for p in missing for s in blockers[p]):
                continue  # a predecessor can still arrive: keep waiting
            del self._arrived[join]
            self._activate(join, None, None)

    def _settle(self, act: _Activation, out: _Outcome) -> None:
        """Commit a finished activation: state, route, checkpoint, event, successors."""
        if act.batch is not None:
            self._settle_item(act, act.batch, out)
            return
        held: list[StepEvent] = []
        self._held = held
        try:
            checkpoint = self._settle_outcome(act, out)
        finally:
            self._held = None
        if checkpoint is not None:
            self._checkpoint(act, *checkpoint, out.body_end)
        # Rows recorded while settling (a visit limit met by a successor) follow the checkpoint.
        for event in held:
            self._record(event)

    def _settle_outcome(self, act: _Activation, out: _Outcome) -> tuple[str, str | None, str | None, StepEvent] | None:
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
            router = self.graph.routers.get(name)
            try:
                if out.updates:
                    self._commit(act, out.updates)
                if router is not None:
                    chosen = router.choose(self.state)
            except Exception as exc:  # a merge conflict or a condition that cannot be evaluated
                out.error, out.kind, out.status = exc, ErrorKind.PERMANENT, Status.FAILED
                self._record(self._outcome_event(act, out, None))
                self._fail(exc, RunStatus.FAILED)
                return None
            route = None if chosen is None else chosen.target
            checkpoint = ("ok", out.encoded, None, self._outcome_event(act, out, route))
            self.log.append((len(self.log) + 1, name, act.visit, "ok", out.updates, route, None, None))
            if chosen is not None:
                if route != END:
                    self._activate(chosen.target, chosen.tools, None)
            else:
                for target in self.graph.edges.get(name, ()):
                    self._arrive(target, name)
        else:
            assert out.error is not None and out.kind is not None
            fallback = spec.fallback
            if out.run_timeout or fallback is None:
                self._record(self._outcome_event(act, out, None))
                if spec.irreversible and self.store is not None:
                    self._writes.append(
                        self.store.writer.submit_async(self.store.intent_end_op(self.run_id, name, act.visit, "failed"))
                    )
                err: RunError
                if out.run_timeout:
                    err = RunTimeoutError(
                        f"the run's deadline of {self.timeout} s passed",
                        run_id=self.run_id,
                        step=name,
                        attempt=out.attempt,
                    )
                else:
                    err = StepFailedError(
                        f"failed with {type(out.error).__name__} ({out.kind.value}): {out.error}",
                        run_id=self.run_id,
                        step=name,
                        attempt=out.attempt,
                    )
                err.__cause__ = out.error
                self._fail(err, RunStatus.TIMED_OUT if out.run_timeout else RunStatus.FAILED)
                return None
            failure = self._failure_of(name, out.attempt, out.error, out.kind)
            event = self._outcome_event(act, out, fallback)
            checkpoint = ("fallback", None, json.dumps(dataclasses.asdict(failure)), event)
            self.log.append((len(self.log) + 1, name, act.visit, "fallback", None, fallback, failure, None))
            if fallback != END:
                self._activate(fallback, None, failure)
        if self._arrived:
            self._fire_joins()
        return checkpoint

    def _park_child(self, act: _Activation, out: _Outcome) -> None:
        """The child run of a sub-workflow step halted: park the step (it stays active, so joins
        wait); resuming the run runs it again, which resumes the same child run."""
        assert out.halted is not None
        if out.halted.status == RunStatus.WAITING_APPROVAL:
            self.parked.append(act)
        else:
            self.unreconciled.append(act)
        extra = {"child_run_id": out.halted.child_run_id, "child_status": out.halted.status}
        self._record(
            self._event(
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

    def _expand(self, act: _Activation) -> None:
        """A map step's turn: queue its items (bounded by max_concurrency); it settles when the
        last item does."""
        spec = act.spec
        assert spec.map is not None
        items = act.view.get(spec.map.over)
        if not isinstance(items, list | tuple):
            out = _Outcome()
            out.attempt, out.started_at = 1, time.time()
            what = "is missing" if spec.map.over not in act.view else f"is a {type(items).__name__}"
            out.error = StateValueError(
                f"map step {spec.name!r} maps over state field {spec.map.over!r}, which {what}; the step "
                f"before it must write a list there"
            )
            out.kind, out.status = ErrorKind.PERMANENT, Status.FAILED
            self._settle(act, out)
            return
        batch = _Batch(act, list(items), self._map_done.pop((spec.name, act.visit), {}))
        act.batch = None  # the map activation itself stays the batch's owner, not an item
        if not batch.pending:
            self._gather(batch)
            return
        self._feed(batch)

    def _feed(self, batch: _Batch) -> None:
        limit = batch.act.spec.map.max_concurrency if batch.act.spec.map is not None else None
        pending, ready, act, items = batch.pending, self._ready, batch.act, batch.items
        while pending and (limit is None or batch.running < limit):
            index = pending.pop()
            batch.running += 1
            ready.append(act.for_item(batch, index, items[index]))

    def _settle_item(self, act: _Activation, batch: _Batch, out: _Outcome) -> None:
        """One item finished: keep its result and checkpoint it; the last one settles the map."""
        batch.running -= 1
        index = act.index
        assert index is not None
        if batch.failed:  # the map already gave up: record what this straggler did, change nothing
            self._record(self._outcome_event(act, out, None))
            return
        if out.error is None:
            batch.results[index] = out.value
            batch.done += 1
            event = self._outcome_event(act, out, None)
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
        self._record(self._outcome_event(act, out, None))
        owner = batch.act
        failed = _Outcome()
        # The map step's own row: failed because of the item (timed out only if the run's deadline passed).
        failed.attempt, failed.started_at, failed.kind = (
            1,
            time.time() - (time.perf_counter() - batch.started),
            out.kind,
        )
        failed.status = Status.TIMEOUT if out.run_timeout else Status.FAILED
        failed.run_timeout, failed.usage = out.run_timeout, None
        failed.latency = time.perf_counter() - batch.started
        failed.error = MapItemError(owner.spec.name, index, len(batch.items), out.error)
        self._settle(owner, failed)

    def _gather(self, batch: _Batch) -> None:
        """Every item finished: the map step settles as one step writing the results in item order."""
        act, spec = batch.act, batch.act.spec
        assert spec.map is not None
        out = _Outcome()
        out.attempt, out.started_at = 1, time.time() - (time.perf_counter() - batch.started)
        out.latency = time.perf_counter() - batch.started
        out.queue_s = batch.started - act.queued
        out.updates = {spec.map.into: batch.results}
        if self.store is not None:
            out.encoded = encode_updates(spec.name, out.updates)
        out.usage = {"extra": {"items": len(batch.items)}}
        self._settle(act, out)

    def _commit(self, act: _Activation, updates: Mapping[str, Any]) -> None:
        self._version += 1
        version = self._version
        state, writers, merges, name = self.state, self._writers, self.merges, act.spec.name
        for key, value in updates.items():
            merge = merges.get(key)
            if merge is not None:
                state[key] = merge(state.get(key), value)
                continue
            previous = writers.get(key)
            if previous is not None and previous[0] > act.version and previous[1] != name:
                raise StateConflictError(key, previous[1], name)
            state[key] = value
            writers[key] = (version, name)

    def _failure_of(self, step: str, attempt: int, error: BaseException, kind: ErrorKind) -> Failure:
        return Failure(step, attempt, kind.value, type(error).__name__, str(error))

    # ---- one activation, with retries and timeouts ---------------------------------------------

    def _outcome_event(self, act: _Activation, out: _Outcome, route: str | None) -> StepEvent:
        return self._event(
            act.spec.name,
            act.visit,
            out.attempt,
            out.status,
            out.error,
            out.kind,
            out.started_at,
            out.latency,
            out.queue_s,
            None,
            route,
            act.tools,
            out.usage,
            act.index,
        )

    def _event(
        self,
        step: str,
        visit: int,
        attempt: int,
        status: str,
        error: BaseException | None,
        kind: ErrorKind | None,
        started_at: float,
        latency: float,
        queue_s: float,
        retry_delay: float | None,
        route: str | None,
        tools: tuple[str, ...],
        usage: Mapping[str, Any] | None,
        map_index: int | None = None,
        **fields: Any,
    ) -> StepEvent:
        if usage is None:
            model = tokens_in = tokens_out = cost = extra = None
        else:
            model, tokens_in, tokens_out = usage.get("model"), usage.get("tokens_in"), usage.get("tokens_out")
            cost, extra = usage.get("cost_usd"), usage.get("extra")
        event = StepEvent(
            self.run_id,
            self.workflow,
            self.version,
            step,
            visit,
            attempt,
            status,
            None if kind is None else kind.value,
            None if error is None else type(error).__name__,
            None if error is None else str(error),
            started_at,
            started_at + latency,
            latency,
            queue_s,
            retry_delay,
            route,
            tools,
            model,
            tokens_in,
            tokens_out,
            cost,
            None,
            None,
            self.parameters_hash,
            _HOST,
            extra,
            map_index,
            self.parent_run_id,
        )
        if fields:
            event = event._replace(**fields)
        return event if self._process is None else self._process(event)

    def _emit(self, event: StepEvent, *, record: bool = True) -> None:
        """Hand an event to the sinks (the journal write, if any, happened already). ``record=False``:
        ``self.events`` holds it already (read from the journal on resume); only the sinks hear of it."""
        if self._replaying:
            return
        for sink in self._sinks if record else self._sinks[1:]:
            sink(event)
        for observer in self.observers:
            observer(event)

    def _record(self, event: StepEvent, *, journaled: bool = False) -> None:
        """Journal an event that has no checkpoint of its own (unless the caller did:
        ``journaled``), then hand it to the sinks. The write is not awaited here: the writer keeps
        the order, and the run's next sync or its last write makes it durable."""
        if self._replaying:
            return
        if self._held is not None:
            self._held.append(event)
            return
        store = self.store
        if store is not None and not journaled:
            self._writes.append(store.writer.submit_async(None, store.event_rows((event,))))
        if self._unsynced:
            self._unsynced.append((None, event, 0.0))  # after the checkpoints settled before it
        else:
            self._emit(event)

    # ---- durability --------------------------------------------------------------------------
