"""The durability layer: the only part of the engine that talks to the store.

What it does for one run, asked by the scheduler (``_engine``) and the attempt runner (``_attempts``):

- **Checkpoints and group commit.** A settled step's checkpoint is handed to the store's writer
  thread (``checkpoint``) and not awaited there; the scheduler awaits everything handed over
  (``sync``) before it starts any step again, so a successor never starts before its
  predecessor's checkpoint is durable, while other runs keep going and a fan-in's checkpoints
  share one commit. An event is handed to the sinks only once its checkpoint is durable (with
  the time it waited, ``durable_wait_s``), and events keep their settle order.
- **The journal of attempts.** Rows with no checkpoint of their own (``record``): a retried
  attempt (durable before its backoff starts, ``retrying``), a later attempt's start
  (``attempt_started``), a visit-limit breach.
- **Gates** (``admit``): an approval gate's ticket (opened, decided by the policy, or left open so
  the run halts) and the intent of an irreversible step, committed before its body runs.
  It answers with an :class:`Admission`; the scheduler acts on it.
- **Leases**: kept by the store's lease keeper while the run runs (``started`` ... ``finish``),
  however long a step goes without a write, and by it alone; a checkpoint every half lease
  writes the run's time used so far (its deadline's clock, for a resume after a crash).
- **Replay of a stored run** (``recorded``, ``cut_offs``): a stopped run's checkpoints, decoded
  and checked, for the scheduler to replay; after a crash, the attempts the crash cut off.
- **The run's end** (``mark_running``, ``finish``): where it stopped, and the hand-over to the
  step-log exporter (parquet).

In a run without a store (``workspace=False``) it only keeps the order of events: each is handed
to the sinks at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from wfkit.engine._activations import Activation, CutOff
from wfkit.engine._stepevents import HOST, Emit, EventMaker
from wfkit.logs._steplog import exporter
from wfkit.model._approvals import ApprovalPolicy, Ticket
from wfkit.model._context import Failure
from wfkit.model._errors import ApprovalRejectedError, ApprovalRequiredError
from wfkit.model._events import FIELDS, Status, StepEvent
from wfkit.model._status import RunStatus
from wfkit.store._journal import load_json, warn_if_restored_redacted
from wfkit.store._store import LEASE_TTL, IntentCut, Store
from wfkit.store._workspace import decision_event, workspace_option
from wfkit.store._writer import Rows, WriteOp

# Durable waits ride in the run's later writes: a checkpoint once this many are measured (or
# with a lease renewal), and the run's last write (where it halts or ends). A crash loses those
# measured since (at most this many: in the step log their wait is NaN, unknown). Each write of
# waits updates rows of earlier commits (some 30 us at NORMAL): once per 8 checkpoints it cost a
# chain of no-op steps 2-6 us a step more than once per 64, which lost every wait of a run
# killed before its 65th step; once per 32 costs under 1 us a step (issue 11's W4 chain).
_WAITS_PER_WRITE = 32
_WAIT_AT = FIELDS.index("durable_wait_s")
_new_tuple = tuple.__new__


def _with_wait(event: StepEvent, wait: float) -> StepEvent:
    """``event._replace(durable_wait_s=wait)``, built positionally: every durable step pays it on
    the event loop, and ``_replace``'s keyword machinery costs three times as much (``tuple.__new__``
    is what ``_make`` calls, without its length check: the fields are the event's own)."""
    return _new_tuple(StepEvent, (*event[:_WAIT_AT], wait, *event[_WAIT_AT + 1 :]))


# ---- a run's records before it has an execution -----------------------------------------------
# (Its row when it is created, forked or started as a child; its lease when it is resumed.) From a
# coroutine, through the writer: the loop never waits for a lock or the disk.


async def record_run(store: Store, create: Rows, link: WriteOp[None] | None = None) -> None:
    """A new run's row, and with ``link`` its link to a parent or an origin, in one commit."""
    await store.writer.submit_async(link, create)
    store.created(create)


async def take_lease(store: Store, run_id: str) -> dict[str, Any]:
    """Take a stored run's lease for this process (refused if a live process holds it); its row."""
    taken_at = time.time()
    row: dict[str, Any] = await store.writer.submit_async(store.acquire_op(run_id))
    store.leases.granted(run_id, taken_at + store.lease_ttl)  # (it expires no sooner)
    return row


def give_lease_back(store: Store, run_id: str) -> None:
    """Hand the lease's release to the writer without waiting (it keeps the order: a later
    ``take_lease`` in this process comes after it)."""
    store.release_later(run_id)


class Admission(NamedTuple):
    """What may happen to a gated step now. ``verdict``:

    - ``run``: run it (its approval is granted, its intent durable);
    - ``park``: it waits for a decision (the run halts in waiting_approval);
    - ``reconcile``: its earlier attempt may have had its side effect: a person must say;
    - ``reject``: rejected; route to ``route`` (the gate's on_reject step), or, when ``error`` is
      set, fail the run with it;
    - ``fail``: the run cannot go on (``error``: a headless run no one can approve).
    """

    verdict: Literal["run", "park", "reconcile", "reject", "fail"]
    error: BaseException | None = None
    route: str | None = None


ADMITTED = Admission("run")


class Recorded(NamedTuple):
    """One settled step of a stored (or in-memory) run, decoded for replay. ``outcome``: ok,
    fallback, rejected (a gate routed to its on_reject step) or item (a map item: ``updates``
    holds ``{"result": ...}``). ``fork``: the update a
    fork applied right after this step (None when the run was not forked here)."""

    seq: int
    step: str
    visit: int
    outcome: str
    updates: dict[str, Any] | None
    route: str | None
    failure: Failure | None
    map_index: int | None
    fork: dict[str, Any] | None


class Durability:
    """Checkpoints, journal rows, gates, leases and replay of one run (see the module docstring)."""

    __slots__ = (
        "_clock_due_at",
        "_emit",
        "_loop",
        "_make",
        "_since",
        "_unsynced",
        "_used",
        "_waits",
        "_writes",
        "policy",
        "run_id",
        "store",
    )

    def __init__(
        self,
        store: Store | None,
        run_id: str,
        *,
        make: EventMaker,
        emit: Emit,
        policy: ApprovalPolicy,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self._make = make
        self._emit = emit
        self.policy = policy
        # Durability in flight: checkpoints handed to the writer and not awaited yet (with the
        # event each one emits once durable), other writes, and the durable waits measured but
        # not yet in the journal (they ride in the run's next write).
        # (None: an event with no checkpoint, emitted in its turn so sinks see settle order.)
        self._unsynced: list[tuple[asyncio.Future[Any] | None, StepEvent, float]] = []
        self._writes: list[asyncio.Future[Any]] = []
        self._waits: list[tuple[str, tuple[Any, ...]]] = []
        # When a checkpoint next writes the run's time used (every half lease, as the lease was
        # once renewed with it: a short lease in the tests writes it with every step).
        self._clock_due_at = time.monotonic() + (LEASE_TTL if store is None else store.lease_ttl) / 2
        # The run's deadline clock: the seconds it had used when it (re)started, and when that was
        # (monotonic); a checkpoint every half lease writes the time used so far (``started``).
        # (Two slots, not a tuple: ten thousand runs in flight would each hold one more object.)
        self._used = 0.0
        self._since = 0.0  # set by started(), which the scheduler calls as the run starts
        # The loop the run's checkpoints are handed over from (its scheduler's), known from the
        # first: asking asyncio for the running loop makes a getpid system call on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- checkpoints, journal rows and group commit ------------------------------------------

    @property
    def pending(self) -> bool:
        """Writes handed to the writer and not yet awaited (``sync``)."""
        return bool(self._unsynced or self._writes)

    def checkpoint(
        self,
        act: Activation,
        outcome: str,
        updates: str | None,
        failure: str | None,
        event: StepEvent,
        body_end: float,
    ) -> None:
        """Hand a settled step's checkpoint to the writer; the scheduler awaits it (``sync``)
        before it starts any successor. ``updates``/``failure``: JSON text."""
        if self.store is None:
            self._emit(event)
            return
        intent = None if not act.spec.irreversible else "done" if outcome == "ok" else "failed"
        # (A map step settling has no body of its own: its wait starts now.)
        self._hand_over(event, outcome, updates, failure, body_end or time.perf_counter(), intent)

    def checkpoint_ok(self, event: StepEvent, updates: str, body_end: float) -> None:
        """:meth:`checkpoint` of a step that succeeded in a durable run and has no intent to close
        (an inline step: not irreversible, no map): the scheduler's lean path, the event's row
        alone unless the run's time used or the durable waits are due for writing."""
        if len(self._waits) >= _WAITS_PER_WRITE or time.monotonic() >= self._clock_due_at:
            self._hand_over(event, "ok", updates, None, body_end, None)
            return
        store = self.store
        assert store is not None
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        rows = store.checkpoint_rows(event, "ok", updates, None)
        written: asyncio.Future[Any] = store.writer.submit_async(None, rows, loop)
        if written.done() and not self._unsynced and not self._writes and written.exception() is None:
            # Committed on the loop already (synchronous=NORMAL, an idle loop): the event goes to
            # the sinks now, as ``sync`` would hand it over, and the scheduler waits for nothing.
            self._settled(event, written.result(), body_end)
        else:
            self._unsynced.append((written, event, body_end))

    def _hand_over(
        self,
        event: StepEvent,
        outcome: str,
        updates: str | None,
        failure: str | None,
        body_end: float,
        intent: str | None,
    ) -> None:
        store = self.store
        assert store is not None
        now = time.monotonic()
        clock_due = now >= self._clock_due_at
        if clock_due:
            self._clock_due_at = now + store.lease_ttl / 2
        write, rows = store.checkpoint_write(
            event,
            outcome,
            updates,
            failure,
            intent_status=intent,
            elapsed=self._used + now - self._since if clock_due else None,
        )
        if clock_due or len(self._waits) >= _WAITS_PER_WRITE:
            rows = [*rows, *self._take_waits()]
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._unsynced.append((store.writer.submit_async(write, rows, loop), event, body_end))

    def record(self, event: StepEvent, *, journaled: bool = False) -> None:
        """Journal an event that has no checkpoint of its own (unless the caller did:
        ``journaled``), then hand it to the sinks. The write is not awaited here: the writer keeps
        the order, and the run's next sync or its last write makes it durable."""
        store = self.store
        if store is not None and not journaled:
            self._writes.append(store.writer.submit_async(None, store.event_rows((event,))))
        if self._unsynced:
            self._unsynced.append((None, event, 0.0))  # after the checkpoints settled before it
        else:
            self._emit(event)

    def intent_failed(self, step: str, visit: int) -> None:
        """An irreversible step failed for good: its intent is closed as failed (with the next sync)."""
        if self.store is not None:
            store = self.store
            op = store.intent_end_op(self.run_id, step, visit, "failed")
            self._writes.append(store.writer.submit_async(store.fenced(self.run_id, op)))

    async def sync(self) -> None:
        """Wait until every write this run handed over is durable; then hand the checkpointed
        events, with their durable wait, to the sinks. Other runs keep going meanwhile."""
        while self._unsynced or self._writes:
            unsynced, self._unsynced = self._unsynced, []
            if self._writes:
                writes, self._writes = self._writes, []
                for write in writes:
                    await write
            for checkpoint, event, body_end in unsynced:
                if checkpoint is None:
                    self._emit(event)
                    continue
                self._settled(event, await checkpoint, body_end)

    def _settled(self, event: StepEvent, seq: int, body_end: float) -> None:
        """A checkpoint is durable (its row at ``seq``, which the writer resolved its write to):
        its wait is measured, kept for the journal, and its event goes to the sinks with it."""
        wait = time.perf_counter() - body_end
        self._waits.append(Store.durable_wait_row(wait, self.run_id, seq))
        self._emit(_with_wait(event, wait))

    def _take_waits(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The durable waits measured since the run's last write, as rows to write with it."""
        waits, self._waits = self._waits, []
        return waits

    # ---- what the attempt runner journals ------------------------------------------------------

    async def attempt_started(self, step: str, visit: int, attempt: int) -> None:
        """A later attempt (2, 3, ...) is about to run: durable before its body runs, so if the
        body takes the process down, resume counts the crash against the step's retry budget. (A
        first attempt needs no record: resume finds it in flight from the checkpoints.)"""
        store = self.store
        if store is not None:
            op = store.attempt_op(self.run_id, step, visit, attempt, started_at=time.time())
            await store.writer.submit_async(store.fenced(self.run_id, op))

    async def retrying(self, event: StepEvent, *, durable: bool = True) -> None:
        """Journal a failed attempt that will be retried. In a durable run the row (with its
        backoff) is durable before the backoff starts: a crash during the wait resumes with the
        rest of the wait, not with an immediate retry. ``durable=False``: a map item's row, which
        rides with the next write like any other."""
        store = self.store
        if store is None or not durable:
            self.record(event)
        else:
            await store.writer.submit_async(None, store.event_rows((event,)))
            self.record(event, journaled=True)

    # ---- gates: approvals and intents ---------------------------------------------------------

    async def admit(self, act: Activation, state: Mapping[str, Any]) -> Admission:
        """Before a gated step runs: its approval, then its intent (see :class:`Admission`)."""
        spec, store = act.spec, self.store
        approval = spec.approval
        reason = None if approval is None else approval.ask(state)
        if approval is not None and reason is not None:
            assert store is not None  # checked when the run was created
            found = store.tickets.of_visit(self.run_id, spec.name, act.visit)
            ticket = found or await self._open_ticket(act, reason, approval.payload_for(state))
            decided_before = not ticket.is_open  # its row is in the journal, so in the run's events already
            if ticket.is_open:
                verdict = self.policy.decide(ticket)
                if verdict is None:
                    if self.policy.on_missing != "fail":
                        return Admission("park")
                    error = ApprovalRequiredError(
                        f"needs approval ({approval.reason}), but this run is headless with the "
                        f"approval policy '{self.policy.name}': no one can click Approve here. Pass "
                        f"a policy (papermill -p wfkit_policy approve|reject|FILE.jsonl, or "
                        f"policy=... in code, or $WFKIT_POLICY), run it interactively, or decide with "
                        f"`wfkit approve {ticket.ticket_id}{workspace_option(store.path.parent)} --by NAME` "
                        f"and resume",
                        run_id=self.run_id,
                        step=spec.name,
                    )
                    # The run ends here: a row says so (attempt 0, the step never ran), or its
                    # step log would end on the gate's waiting row, as a run that halts there
                    # does, and runs() and the report would count it not failed. A decision and
                    # a resume later add rows after it, and then the run did not end here.
                    self.record(self._make.ended_before(spec.name, act.visit, error, None, act.tools))
                    return Admission("fail", error)
                make = self._make
                ticket, _ = await store.writer.submit_async(
                    store.fenced(
                        self.run_id,
                        store.tickets.decide_op(
                            ticket.ticket_id,
                            verdict.decision,
                            verdict.by,
                            verdict.comment,
                            lambda t: decision_event(t, make.version, make.parameters_hash),
                        ),
                    )
                )
            self._emit(self._decision_event(ticket, act), record=not decided_before)
            if ticket.status == "rejected":
                if approval.on_reject is None:
                    return Admission(
                        "reject",
                        ApprovalRejectedError(
                            f"rejected by {ticket.decided_by}: {ticket.comment or 'no comment'}; give the "
                            f"gate an on_reject step (wfkit.Approval(..., on_reject='revise')) to revise "
                            f"and resubmit instead",
                            run_id=self.run_id,
                            step=spec.name,
                        ),
                    )
                await store.writer.submit_async(
                    store.fenced(
                        self.run_id,
                        store.tickets.rejection_routed_op(self.run_id, spec.name, act.visit, approval.on_reject),
                    )
                )
                return Admission("reject", route=approval.on_reject)
        if spec.irreversible and store is not None:
            # One read of its intent and its rows: None unless the intent is pending.
            cut = store.intent_cut_off(self.run_id, spec.name, act.visit)
            if cut is not None:
                if cut.waits_to_retry:
                    # It died waiting to retry a call that was refused: no body ran, no side
                    # effect happened; the retry goes on (``cut_offs`` found its backoff).
                    return ADMITTED
                # The process died between the intent and the result: a person must say
                # whether the side effect happened. Never run it a second time by ourselves.
                # The attempt the crash cut off is journaled here, unless a reconciliation or an
                # earlier resume journaled it already (then its attempt is 0).
                if cut.attempt:
                    self.record(self._crashed_attempt(act, cut))
                return Admission("reconcile")
            # Durable before the body runs, so that a crash in the body leaves a pending intent:
            # resume asks a person instead of sending twice. Behind the lease fence: a process
            # that was stopped while another took the run over must not run the body a second time.
            intent = store.intent_op(self.run_id, spec.name, act.visit, f"{self.run_id}:{spec.name}:{act.visit}")
            await store.writer.submit_async(store.fenced(self.run_id, intent))
        return ADMITTED

    def _crashed_attempt(self, act: Activation, cut: IntentCut) -> StepEvent:
        """The attempt of an irreversible step that a crash cut off in its body, as the store
        builds it for a reconciliation too (``Store.crashed_intent_attempt``), with this run's
        columns, through its processors."""
        make, store = self._make, self.store
        assert store is not None  # only a stored run has intents
        base = StepEvent(
            self.run_id,
            make.workflow,
            make.version,
            act.spec.name,
            act.visit,
            cut.attempt,
            Status.RETRY,
            tools=act.tools,
            parameters_hash=make.parameters_hash,
            host=HOST,
            parent_run_id=make.parent_run_id,
        )
        return make.processed(store.crashed_intent_attempt(base, cut.attempt, cut.started_at or time.time()))

    async def _open_ticket(self, act: Activation, reason: str, payload: dict[str, Any]) -> Ticket:
        assert self.store is not None
        now = time.time()
        ticket = Ticket(
            ticket_id=uuid.uuid4().hex[:12],
            run_id=self.run_id,
            workflow=self._make.workflow,
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
        event = self._make.gate(act, Status.WAITING_APPROVAL, now, extra={"ticket": ticket.ticket_id, "reason": reason})
        store = self.store
        ticket = await store.writer.submit_async(store.fenced(self.run_id, store.tickets.create_op(ticket, event)))
        self._emit(event)
        return ticket

    def _decision_event(self, ticket: Ticket, act: Activation) -> StepEvent:
        return self._make.gate(
            act,
            ticket.status,
            ticket.decided_at or time.time(),
            approver=ticket.decided_by,
            decision_comment=ticket.comment,
            extra={"ticket": ticket.ticket_id},
        )

    # ---- replay of a stopped run -----------------------------------------------------------------

    def recorded(self, checkpoints: Sequence[tuple[Any, ...]]) -> Iterator[Recorded]:
        """A run's checkpoints, decoded, in order, each with the fork applied after it (if any).

        Rows read from the store hold JSON text, checked against its checksum as it is decoded
        (a damaged row says where it is); rows kept in memory (an in-memory fork) hold values.
        """
        rows = list(checkpoints)
        for i, row in enumerate(rows):
            seq, step, visit, outcome, updates, route, failure = row[:7]
            map_index = row[7] if len(row) > 7 else None
            if outcome == "fork":
                continue  # applied with the row before it
            if isinstance(updates, str):
                text, updates = updates, self._stored_json(seq, "journal.updates", updates)
                warn_if_restored_redacted(self.run_id, f"step {step!r} wrote", text, updates)
            if isinstance(failure, str):
                failure = Failure(**self._stored_json(seq, "journal.failure", failure))
            fork = None
            if outcome == "ok" and i + 1 < len(rows) and rows[i + 1][3] == "fork":
                after = rows[i + 1]
                fork = (
                    self._stored_json(after[0], "run_links.detail", after[4])
                    if isinstance(after[4], str)
                    else dict(after[4] or {})
                )
            yield Recorded(seq, step, visit, outcome, updates, route, failure, map_index, fork)

    def _stored_json(self, seq: int, column: str, text: str) -> Any:
        assert self.store is not None  # only stored runs hold JSON text
        return load_json(self.store.path, self.run_id, column, text, row=seq)

    def cut_offs(self, ready: Iterable[Activation]) -> dict[tuple[str, int] | tuple[str, int, int], CutOff]:
        """After a crash: the attempts it cut off, among the steps replay left ``ready`` (started
        by their predecessors' checkpoints, never settled). Their next activation accounts for
        them (the attempt runner): a crashed attempt counts against the retry budget, a backoff
        the crash interrupted is waited out."""
        store = self.store
        assert store is not None
        facts = store.attempt_facts(self.run_id)
        settled_at = None
        found: dict[tuple[str, int] | tuple[str, int, int], CutOff] = {}
        for act in ready:
            spec, key = act.spec, (act.spec.name, act.visit)
            if spec.irreversible:
                # Its intent says what happened; a pending one waits for a person, and its attempt
                # is journaled as crashed when the resume reaches it (admit); unless the crash
                # came while it waited to retry a transient error (no body ran).
                intent_cut = store.intent_cut_off(self.run_id, spec.name, act.visit)
                if intent_cut is None or not intent_cut.waits_to_retry:
                    continue
                # Stopped in the backoff of a refused call: that backoff is waited out, as below.
            approval = spec.approval
            if approval is not None and approval.asks(act.view):
                ticket = store.tickets.of_visit(self.run_id, spec.name, act.visit)
                if ticket is None or ticket.status != "approved":
                    continue  # it was waiting for a decision, not running
            fact = facts.get(key)
            if fact is None or (fact.started_attempt is None and fact.status is None):
                if settled_at is None:
                    settled_at = store.last_settled_at(self.run_id) or time.time()
                cut = CutOff(1 if fact is None else fact.attempt + 1, settled_at, None, 0, 0)
            elif fact.started_attempt is not None:
                cut = CutOff(fact.started_attempt, fact.started_at, None, fact.crashes, fact.child_crashes)
            elif fact.retry_delay_s is not None and fact.ended_at is not None:
                cut = CutOff(
                    fact.attempt + 1, None, fact.ended_at + fact.retry_delay_s, fact.crashes, fact.child_crashes
                )
            else:
                continue  # its last attempt failed for good: the run was ending, as after any failure
            if cut.started_at is not None and spec.subflow is not None:
                # A sub-workflow step in flight whose child run was running too: the crash came
                # inside the child, and the child's resume records it against the child's step.
                cut = cut._replace(child=store.running_child(self.run_id, spec.name, act.visit))
            found[key] = cut
        return found

    def item_crashes(self, step: str, visit: int) -> dict[int, int]:
        """Per item of a map step visit, the crashes recorded before (see :meth:`cut_offs`)."""
        store = self.store
        assert store is not None
        return store.item_crashes(self.run_id, step, visit)

    # ---- the run's start and end ---------------------------------------------------------------

    def started(self, elapsed_before: float, t_start: float) -> None:
        """The run (re)starts at ``t_start`` (monotonic) with ``elapsed_before`` seconds of its
        deadline used: a checkpoint every half lease writes the time used since, so that a resume after a crash
        counts what ran before it (``Workflow.resume``)."""
        self._used, self._since = elapsed_before, t_start
        if self.store is not None:
            self.store.leases.keep(self.run_id)

    async def mark_running(self) -> None:
        """A resumed run is running again (its row said where it had stopped)."""
        if self.store is not None:
            elapsed = self._used + time.monotonic() - self._since
            store = self.store
            await store.writer.submit_async(store.fenced(self.run_id, store.mark_running_op(self.run_id, elapsed)))

    async def finish(self, *, status: str, state: dict[str, Any], error: BaseException | None, elapsed: float) -> None:
        """The run's last write: what is still unsynced first (its events reach the sinks), then
        where the run stopped, with the durable waits not yet written; then its journal goes to
        the step-log exporter. Runs also while the run is being cancelled (Ctrl-C): a second
        cancellation falls back to blocking on the writer, so the record is never skipped.

        The last write's future is awaited as it is, not shielded: a cancellation that cancels it
        leaves the write in the writer's queue (the writer skips a waiter that is gone), and the
        fallback waits for it. A shield cost every durable run two more callbacks through the loop."""
        store = self.store
        if store is None:
            return
        finish: Rows = store.finish_rows(
            self.run_id,
            status=status,
            state=state,
            error=error,
            elapsed=elapsed,
            ended=status in RunStatus.FINISHED,
        )
        writer = store.writer
        try:
            try:
                await self.sync()
            finally:
                rows = [*self._take_waits(), *finish]
                await writer.submit_async(None, rows)
        except asyncio.CancelledError:
            writer.submit(None).result()  # everything handed over before is durable now
            raise
        finally:
            store.leases.drop(self.run_id)  # its last write released the lease (or failed: it expires)
        exporter.submit(store, store.path.parent, self.run_id)
