"""The engine: one run of a compiled graph, driven as one asyncio task.

The scheduler keeps a queue of ready activations (a step about to run, with the tools its route
bound). A lone ready step runs inline in the scheduler's own task: a linear chain never pays for
task creation. Two or more ready steps become tasks that run concurrently, and the scheduler
sleeps until one finishes. Each finished activation is committed to the state (with conflict
checks), routed, and recorded as a step event; joins fire when no predecessor can still arrive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from wfkit import _settings
from wfkit._approvals import HALT, ApprovalPolicy, Ticket
from wfkit._context import Failure, StepContext
from wfkit._errors import (
    ApprovalRejectedError,
    ApprovalRequiredError,
    RunError,
    RunTimeoutError,
    StateConflictError,
    StateValueError,
    StepFailedError,
    StepTimeoutError,
    VisitLimitError,
    WorkflowChangedError,
)
from wfkit._events import Status, StepEvent
from wfkit._graph import Graph
from wfkit._merge import Merge
from wfkit._processors import DEFAULT_PROCESSORS, Processor, chain, redact_values, secret_values
from wfkit._retry import ErrorKind, classify_error, retry_after_of
from wfkit._routing import END
from wfkit._steplog import exporter
from wfkit._steps import StepSpec
from wfkit._store import LEASE_TTL, Store, encode_updates
from wfkit._workspace import decision_event

logger = logging.getLogger("wfkit")

_HOST = socket.gethostname()
_FINISH_LOCK = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    # Our own pool, so a sync step that overstays its timeout never starves asyncio's default one.
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="wfkit-step")
    return _executor


class RunStatus:
    """The values of ``Run.status``."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    WAITING_APPROVAL = "waiting_approval"
    NEEDS_RECONCILIATION = "needs_reconciliation"

    FINISHED = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED})
    HALTED = frozenset({WAITING_APPROVAL, NEEDS_RECONCILIATION})


class _Activation:
    """One scheduled execution of a step."""

    __slots__ = ("failure", "queued", "spec", "tools", "version", "view", "visit")

    def __init__(
        self,
        spec: StepSpec,
        visit: int,
        tools: tuple[str, ...],
        version: int,
        failure: Failure | None,
        state: dict[str, Any],
    ) -> None:
        self.spec = spec
        self.visit = visit
        self.tools = tools
        self.version = version  # state version when queued: later writes by others are conflicts
        self.failure = failure
        self.queued = time.perf_counter()
        # The state as of activation: a parallel sibling's later commit is not visible, so what a
        # step sees depends on the graph, not on timing (and a resumed step sees what it saw).
        self.view: Mapping[str, Any] = MappingProxyType(dict(state))


class _Outcome:
    """How an activation ended: updates on success, the error otherwise, and the last attempt's timing."""

    __slots__ = (
        "attempt",
        "encoded",
        "error",
        "kind",
        "latency",
        "queue_s",
        "run_timeout",
        "started_at",
        "status",
        "updates",
        "usage",
    )

    def __init__(self) -> None:
        self.updates: Mapping[str, Any] | None = None
        self.encoded: str | None = None  # the updates as JSON, when the run is durable
        self.error: BaseException | None = None
        self.kind: ErrorKind | None = None
        self.status = Status.OK
        self.run_timeout = False
        self.usage: dict[str, Any] | None = None
        self.attempt = 0
        self.started_at = 0.0
        self.latency = 0.0
        self.queue_s = 0.0


class Execution:
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
        llm: Any = None,
        tool_registry: Any = None,
        processors: tuple[Processor, ...] = DEFAULT_PROCESSORS,
    ) -> None:
        settings = _settings.current()
        self.graph = graph
        self.merges = merges
        self.run_id = run_id
        self.workflow = graph.name
        self.version = version
        self.state: dict[str, Any] = dict(inputs)
        self.status = RunStatus.PENDING
        self.error: BaseException | None = None
        self.events: list[StepEvent] = []
        self.late_results: list[dict[str, Any]] = []
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.timeout = timeout
        self.deadline: float | None = None
        self.parameters_hash = parameters_hash
        self._sinks = (self.events.append, *sinks, *settings.extra_sinks)
        self._sleep = settings.sleep
        self._seed = seed if seed is not None else settings.seed
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
        self._lease_renew_at = time.monotonic() + LEASE_TTL / 2
        # What steps reach through ctx.llm and ctx.tool().
        self.llm = llm
        self.tool_registry = tool_registry
        # Events pass through the processors before the journal and any sink; state checkpoints
        # lose the exact values of known secrets.
        self._process = chain(processors)
        self.observers: list[Callable[[StepEvent | None], object]] = []  # live views; None = status changed
        self._secrets = secret_values() if store is not None else []

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

    def llm_client(self) -> Any:
        if self.llm is None:
            from wfkit._llm import default_client  # type: ignore[import-not-found,unused-ignore]

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
                self.store.mark_running(self.run_id)
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
                    self.store.finish(
                        self.run_id,
                        status=self.status,
                        state=self.state,
                        error=self.error,
                        elapsed=self.elapsed_before + time.monotonic() - t_start,
                        ended=self.status in RunStatus.FINISHED,
                    )
                    exporter.submit(self.store, self.store.path.parent, self.run_id)
            finally:
                with _FINISH_LOCK:
                    self._ended = True
                    if self._finished is not None:
                        self._finished.set()
                for observer in self.observers:
                    observer(None)

    async def _loop(self) -> None:
        ready, tasks, done = self._ready, self._tasks, self._done
        loop = asyncio.get_running_loop()
        while not self._failed:
            if not tasks and len(ready) == 1:
                act = ready.popleft()
                if act.spec.gated and not self._admit(act):
                    continue
                outcome = await self._execute(act)
                self._settle(act, outcome)
                continue
            while ready and not self._failed:
                act = ready.popleft()
                if act.spec.gated and not self._admit(act):
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
        spec = act.spec
        name = spec.name
        self._active[name] -= 1
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
                return
            route = None if chosen is None else chosen.target
            event = self._outcome_event(act, out, route)
            self._checkpoint(act, "ok", out.encoded, None, event)
            self._emit(event)
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
                    self.store.intent_end(self.run_id, name, act.visit, "failed")
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
                return
            failure = self._failure_of(name, out.attempt, out.error, out.kind)
            event = self._outcome_event(act, out, fallback)
            self._checkpoint(act, "fallback", None, json.dumps(dataclasses.asdict(failure)), event)
            self._emit(event)
            if fallback != END:
                self._activate(fallback, None, failure)
        if self._arrived:
            self._fire_joins()

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

    async def _execute(self, act: _Activation) -> _Outcome:
        spec = act.spec
        policy = spec.retry
        classify = spec.classifier or classify_error
        out = _Outcome()
        first_start = time.monotonic()
        attempt = self._attempt_base.get((spec.name, act.visit), 0) if self._attempt_base else 0
        while True:
            attempt += 1
            out.attempt = attempt
            timeout, by_deadline = spec.timeout, False
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0:  # the run is out of time: do not even start this attempt
                    out.error, out.kind, out.status = (
                        StepTimeoutError(spec.name, 0.0),
                        ErrorKind.TRANSIENT,
                        Status.TIMEOUT,
                    )
                    out.run_timeout, out.started_at, out.latency = True, time.time(), 0.0
                    return out
                if timeout is None or left < timeout:
                    timeout, by_deadline = left, True
            ctx = StepContext(
                run_id=self.run_id,
                workflow=self.workflow,
                step=spec.name,
                visit=act.visit,
                attempt=attempt,
                tools=act.tools,
                rng_source=self._get_rng,
                services=self,
                deadline=self.deadline,
                failure=act.failure,
            )
            out.started_at = time.time()
            t0 = time.perf_counter()
            out.queue_s = t0 - act.queued if attempt == 1 else 0.0
            try:
                result = await self._call(spec, act.view, ctx, timeout)
                if result is None:
                    result = {}
                elif not isinstance(result, Mapping):
                    raise StateValueError(
                        f"step {spec.name!r} returned {type(result).__name__}; a step returns a "
                        f"dict of state updates (or None)"
                    )
                if self.store is not None:
                    out.encoded = encode_updates(spec.name, result)
                    if self._secrets:
                        out.encoded = redact_values(out.encoded, self._secrets)
                out.latency = time.perf_counter() - t0
                out.updates, out.usage = result, ctx._usage
                out.error = out.kind = None
                out.status = Status.OK
                return out
            except asyncio.CancelledError:
                out.latency = time.perf_counter() - t0
                out.error, out.kind, out.status = (
                    asyncio.CancelledError("cancelled"),
                    ErrorKind.UNKNOWN,
                    Status.FAILED,
                )
                self._record(self._outcome_event(act, out, None))
                raise
            except Exception as exc:
                out.latency = time.perf_counter() - t0
                out.error, out.usage = exc, ctx._usage
                timed_out = isinstance(exc, StepTimeoutError)
                if timed_out and by_deadline:
                    out.run_timeout, out.kind, out.status = True, ErrorKind.TRANSIENT, Status.TIMEOUT
                    return out
                kind = out.kind = classify(exc)
                out.status = Status.TIMEOUT if timed_out else Status.FAILED
                if not policy.allows(kind, attempt - 1):
                    return out
                delay = policy.backoff(attempt, self._get_rng())
                wait = retry_after_of(exc)
                if wait is not None and wait > delay:
                    delay = wait
                elapsed = time.monotonic() - first_start
                if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
                    return out
                if self.deadline is not None and time.monotonic() + delay >= self.deadline:
                    out.run_timeout = True
                    return out
                status = Status.TIMEOUT if timed_out else Status.RETRY
                self._record(
                    self._event(
                        spec.name,
                        act.visit,
                        attempt,
                        status,
                        exc,
                        kind,
                        out.started_at,
                        out.latency,
                        out.queue_s,
                        delay,
                        None,
                        act.tools,
                        out.usage,
                    )
                )
                await self._sleep(delay)

    async def _call(self, spec: StepSpec, state: Mapping[str, Any], ctx: StepContext, timeout: float | None) -> Any:
        args = (state, ctx) if spec.takes_context else (state,)
        if spec.is_async:
            if timeout is None:
                return await spec.fn(*args)
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    return await spec.fn(*args)
            except TimeoutError:
                if scope.expired():
                    raise StepTimeoutError(spec.name, timeout) from None
                raise
        # Plain functions run in a worker thread so they never block the event loop (a notebook
        # kernel stays responsive); the context is copied so contextvars reach the step.
        call = contextvars.copy_context().run
        cfut = _thread_pool().submit(call, spec.fn, *args)
        fut = asyncio.wrap_future(cfut)
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            if cfut.done() and not cfut.cancelled() and isinstance(cfut.exception(), TimeoutError):
                raise  # the step's own TimeoutError, not ours
            if not cfut.cancel():  # already running: let it finish, discard and record its result
                cfut.add_done_callback(lambda f: self._late_result(spec.name, ctx, f))
            raise StepTimeoutError(spec.name, timeout) from None

    def _late_result(
        self,
        step: str,
        ctx: StepContext,
        fut: concurrent.futures.Future[Any],
    ) -> None:
        """A timed-out sync step finished after all: discard its result, but keep a record."""
        record = {
            "step": step,
            "visit": ctx.visit,
            "attempt": ctx.attempt,
            "at": time.time(),
            "outcome": f"error: {fut.exception()!r}" if fut.exception() else "result discarded",
        }
        self.late_results.append(record)  # list.append is atomic: safe from the worker thread
        logger.warning(
            "run %s: step %r attempt %d finished after its timeout; %s",
            self.run_id,
            step,
            ctx.attempt,
            record["outcome"],
        )

    # ---- events ----------------------------------------------------------------------------

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
        usage: dict[str, Any] | None,
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
        )
        if fields:
            event = event._replace(**fields)
        return event if self._process is None else self._process(event)

    def _emit(self, event: StepEvent) -> None:
        """Hand an event to the sinks (the journal write, if any, happened already)."""
        if self._replaying:
            return
        for sink in self._sinks:
            sink(event)
        for observer in self.observers:
            observer(event)

    def _record(self, event: StepEvent) -> None:
        """Journal an event that has no checkpoint of its own, then hand it to the sinks."""
        if self._replaying:
            return
        if self.store is not None:
            self.store.journal((event,))
        self._emit(event)

    # ---- durability --------------------------------------------------------------------------

    def _checkpoint(
        self, act: _Activation, outcome: str, updates: str | None, failure: str | None, event: StepEvent
    ) -> None:
        if self.store is None or self._replaying:
            return
        now = time.monotonic()
        lease_due = now >= self._lease_renew_at
        if lease_due:
            self._lease_renew_at = now + LEASE_TTL / 2
        intent = None if not act.spec.irreversible else "done" if outcome == "ok" else "failed"
        self.store.checkpoint(event, outcome, updates, failure, lease_due=lease_due, intent_status=intent)

    def _admit(self, act: _Activation) -> bool:
        """Before a gated step runs: its approval, then its intent. False when it must not run now."""
        spec, store = act.spec, self.store
        approval = spec.approval
        if approval is not None and (approval.when is None or approval.when.evaluate(self.state)):
            assert store is not None  # checked when the run was created
            ticket = store.ticket_for(self.run_id, spec.name, act.visit)
            if ticket is None:
                ticket = self._open_ticket(act, approval.reason, approval.payload_for(self.state))
            if ticket.is_open:
                verdict = self.policy.decide(ticket)
                if verdict is None:
                    if self.policy.on_missing == "fail":
                        self._fail(
                            ApprovalRequiredError(
                                f"needs approval ({approval.reason}), but this run is headless with the "
                                f"approval policy '{self.policy.name}': no one can click Approve here. Pass "
                                f"a policy (papermill -p wfkit_policy approve|reject|FILE.jsonl, or "
                                f"policy=... in code, or $WFKIT_POLICY), run it interactively, or decide "
                                f"with `wfkit approve {ticket.ticket_id} --by NAME` and resume",
                                run_id=self.run_id,
                                step=spec.name,
                            ),
                            RunStatus.FAILED,
                        )
                    else:
                        self.parked.append(act)
                    return False
                ticket, _ = store.decide(
                    ticket.ticket_id,
                    verdict.decision,
                    verdict.by,
                    verdict.comment,
                    lambda t: decision_event(t, self.version, self.parameters_hash),
                )
            self._emit(self._decision_event(ticket, act))
            if ticket.status == "rejected":
                self._active[spec.name] -= 1
                if approval.on_reject is None:
                    self._fail(
                        ApprovalRejectedError(
                            f"rejected by {ticket.decided_by}: {ticket.comment or 'no comment'}; give the "
                            f"gate an on_reject step (wfkit.Approval(..., on_reject='revise')) to revise "
                            f"and resubmit instead",
                            run_id=self.run_id,
                            step=spec.name,
                        ),
                        RunStatus.FAILED,
                    )
                    return False
                if not self._replaying:
                    store.mark_rejection_routed(self.run_id, spec.name, act.visit, approval.on_reject)
                self._activate(approval.on_reject, None, None)
                if self._arrived:
                    self._fire_joins()
                return False
        if spec.irreversible and store is not None:
            status = store.intent_status(self.run_id, spec.name, act.visit)
            if status == "pending":
                # The process died between the intent and the result: a person must say
                # whether the side effect happened. Never run it a second time by ourselves.
                self.unreconciled.append(act)
                return False
            store.intent(self.run_id, spec.name, act.visit, f"{self.run_id}:{spec.name}:{act.visit}")
        return True

    def _open_ticket(self, act: _Activation, reason: str, payload: dict[str, Any]) -> Ticket:
        assert self.store is not None
        now = time.time()
        ticket = Ticket(
            ticket_id=uuid.uuid4().hex[:12],
            run_id=self.run_id,
            workflow=self.workflow,
            step=act.spec.name,
            visit=act.visit,
            reason=reason,
            payload=payload,
            status="open",
            decided_by=None,
            comment=None,
            created_at=now,
            decided_at=None,
        )
        event = self._gate_event(
            act, Status.WAITING_APPROVAL, now, extra={"ticket": ticket.ticket_id, "reason": reason}
        )
        ticket = self.store.create_ticket(ticket, event)
        self._emit(event)
        return ticket

    def _decision_event(self, ticket: Ticket, act: _Activation) -> StepEvent:
        return self._gate_event(
            act,
            ticket.status,
            ticket.decided_at or time.time(),
            approver=ticket.decided_by,
            decision_comment=ticket.comment,
            extra={"ticket": ticket.ticket_id},
        )

    def _gate_event(self, act: _Activation, status: str, at: float, **fields: Any) -> StepEvent:
        """A row for a gate (ticket opened, decision applied): attempt 0, no latency."""
        return self._event(
            act.spec.name, act.visit, 0, status, None, None, at, 0.0, 0.0, None, None, act.tools, None, **fields
        )

    def replay(self, checkpoints: list[tuple[Any, ...]], attempts: dict[tuple[str, int], int]) -> None:
        """Rebuild state and schedule from a stored run's checkpoints, without running anything.

        The same scheduling code runs as in a live run, fed with recorded outcomes, so the queue
        ends holding exactly the steps that had not completed: siblings that finished before a
        crash are not run again.
        """
        self._resumed = True
        self._attempt_base = attempts
        self._replaying = True
        try:
            self._activate(self.graph.entry, None, None)
            for seq, step, visit, outcome, updates, route, failure in checkpoints:
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
                    self._commit(act, json.loads(updates) if updates else {})
                    router = self.graph.routers.get(step)
                    if router is not None:
                        go = next(
                            (g for g in (*(r.go for r in router.routes), router.default) if g.target == route),
                            None,
                        )
                        if go is None:  # reconciled by hand, or the routes changed: decide anew
                            go = router.choose(self.state)
                        if go.target != END:
                            self._activate(go.target, go.tools, None)
                    else:
                        for target in self.graph.edges.get(step, ()):
                            self._arrive(target, step)
                elif route is not None and route != END:
                    self._activate(route, None, Failure(**json.loads(failure)) if failure else None)
                if self._arrived:
                    self._fire_joins()
        finally:
            self._replaying = False
