"""What a durable run adds around a step: checkpoints, approval gates, intents of irreversible
steps, and the replay that rebuilds a stopped run. A mixin of :class:`wfkit.engine._engine.Execution`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from wfkit.engine._attempts import CutOff, _Activation
from wfkit.model._approvals import ApprovalPolicy, Ticket
from wfkit.model._context import Failure
from wfkit.model._errors import ApprovalRejectedError, ApprovalRequiredError, WorkflowChangedError
from wfkit.model._events import Status, StepEvent
from wfkit.model._graph import Graph
from wfkit.model._routes import END
from wfkit.model._status import RunStatus
from wfkit.store._journal import load_json
from wfkit.store._store import LEASE_TTL, Store
from wfkit.store._workspace import decision_event

# Durable waits ride in the run's last write (where it halts or ends); a long run also carries
# them in a checkpoint every so many steps, so they never pile up.
_WAITS_PER_WRITE = 64


class Gates:
    """Durability around the scheduler (mixed into Execution, which provides the rest)."""

    run_id: str
    workflow: str
    version: str
    parameters_hash: str | None
    graph: Graph
    state: dict[str, Any]
    store: Store | None
    policy: ApprovalPolicy
    parked: list[_Activation]
    unreconciled: list[_Activation]
    _ready: deque[_Activation]
    _active: dict[str, int]
    _arrived: dict[str, set[str]]
    _resumed: bool
    _replaying: bool
    _attempt_base: dict[tuple[str, int], int]
    _cut_off: dict[tuple[str, int], CutOff]
    _lease_renew_at: float
    _unsynced: list[tuple[asyncio.Future[None] | None, StepEvent, float]]
    _waits: list[tuple[str, tuple[Any, ...]]]
    _take_waits: Callable[[], list[tuple[str, tuple[Any, ...]]]]
    _emit: Callable[..., None]
    _event: Callable[..., StepEvent]
    _fail: Callable[[BaseException, str], None]
    _activate: Callable[[str, tuple[str, ...] | None, Failure | None], None]
    _arrive: Callable[[str, str], None]
    _fire_joins: Callable[[], None]
    _commit: Callable[[_Activation, Any], None]
    _map_done: dict[tuple[str, int], dict[int, Any]]
    log: list[tuple[Any, ...]]

    def _checkpoint(
        self,
        act: _Activation,
        outcome: str,
        updates: str | None,
        failure: str | None,
        event: StepEvent,
        body_end: float,
    ) -> None:
        """Hand a settled step's checkpoint to the writer; the scheduler awaits it (``_sync``)
        before it starts any successor."""
        store = self.store
        if store is None or self._replaying:
            self._emit(event)
            return
        body_end = body_end or time.perf_counter()  # a map step settling: no body of its own
        now = time.monotonic()
        lease_due = now >= self._lease_renew_at
        if lease_due:
            self._lease_renew_at = now + LEASE_TTL / 2
        intent = None if not act.spec.irreversible else "done" if outcome == "ok" else "failed"
        write, rows = store.checkpoint_write(
            event, outcome, updates, failure, lease_due=lease_due, intent_status=intent
        )
        if len(self._waits) >= _WAITS_PER_WRITE:
            rows = [*rows, *self._take_waits()]
        self._unsynced.append((store.writer.submit_async(write, rows), event, body_end))

    async def _admit(self, act: _Activation) -> bool:
        """Before a gated step runs: its approval, then its intent. False when it must not run now."""
        spec, store = act.spec, self.store
        approval = spec.approval
        if approval is not None and (approval.when is None or approval.when.evaluate(self.state)):
            assert store is not None  # checked when the run was created
            found = store.ticket_for(self.run_id, spec.name, act.visit)
            ticket = found or await self._open_ticket(act, approval.reason, approval.payload_for(self.state))
            decided_before = not ticket.is_open  # its row is in the journal, so in self.events already
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
                ticket, _ = await store.writer.submit_async(
                    store.decide_op(
                        ticket.ticket_id,
                        verdict.decision,
                        verdict.by,
                        verdict.comment,
                        lambda t: decision_event(t, self.version, self.parameters_hash),
                    )
                )
            self._emit(self._decision_event(ticket, act), record=not decided_before)
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
                    await store.writer.submit_async(
                        store.rejection_routed_op(self.run_id, spec.name, act.visit, approval.on_reject)
                    )
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
            # Durable before the body runs, so that a crash in the body leaves a pending intent:
            # resume asks a person instead of sending twice.
            await store.writer.submit_async(
                store.intent_op(self.run_id, spec.name, act.visit, f"{self.run_id}:{spec.name}:{act.visit}")
            )
        return True

    async def _open_ticket(self, act: _Activation, reason: str, payload: dict[str, Any]) -> Ticket:
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
        ticket = await self.store.writer.submit_async(self.store.create_ticket_op(ticket, event))
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

    def _stored_json(self, seq: int, column: str, text: str) -> Any:
        assert self.store is not None  # only stored runs replay
        return load_json(self.store.path, self.run_id, column, text, row=seq)

    def replay(
        self, checkpoints: Sequence[tuple[Any, ...]], attempts: dict[tuple[str, int], int], *, crashed: bool = False
    ) -> None:
        """Rebuild state and schedule from a stored run's checkpoints, without running anything.

        The same scheduling code runs as in a live run, fed with recorded outcomes, so the queue
        ends holding exactly the steps that had not completed: siblings that finished before a
        crash are not run again. Finished items of a map step are kept for it, so only the
        unfinished ones run. A ``fork`` row (a run forked from another) applies the fork's update
        right after the step it forked at, and that step's route is chosen anew on the updated state.
        """
        self._resumed = True
        self._attempt_base = attempts
        self._replaying = True
        log = self.log
        try:
            self._activate(self.graph.entry, None, None)
            rows = list(checkpoints)
            for i, row in enumerate(rows):
                seq, step, visit, outcome, updates, route, failure = row[:7]
                map_index = row[7] if len(row) > 7 else None
                if outcome == "fork":
                    continue  # applied with the row before it
                if isinstance(updates, str):
                    updates = self._stored_json(seq, "journal.updates", updates)
                if isinstance(failure, str):
                    failure = Failure(**self._stored_json(seq, "journal.failure", failure))
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
                fork = rows[i + 1] if i + 1 < len(rows) and rows[i + 1][3] == "fork" else None
                if outcome == "ok":
                    self._commit(act, updates or {})
                    log.append((len(log) + 1, step, visit, "ok", updates, route, None, None))
                    if fork is not None:
                        update = (
                            self._stored_json(fork[0], "run_links.detail", fork[4])
                            if isinstance(fork[4], str)
                            else dict(fork[4] or {})
                        )
                        self.state.update(update)  # a fork's update is the state it asked for: no merge
                        router = self.graph.routers.get(step)
                        chosen = None if router is None else router.choose(self.state).target
                        log.append((len(log) + 1, step, visit, "fork", update, chosen, None, None))
                    router = self.graph.routers.get(step)
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
                            self._activate(go.target, go.tools, None)
                    else:
                        for target in self.graph.edges.get(step, ()):
                            self._arrive(target, step)
                else:
                    log.append((len(log) + 1, step, visit, "fallback", None, route, failure, None))
                    if route is not None and route != END:
                        self._activate(route, None, failure)
                if self._arrived:
                    self._fire_joins()
            if crashed:
                self._cut_off = self._find_cut_off()
        finally:
            self._replaying = False

    def _find_cut_off(self) -> dict[tuple[str, int], CutOff]:
        """After a crash: the attempts it cut off, among the steps replay left ready (started by
        their predecessors' checkpoints, never settled). Their next activation accounts for them
        (``_execute``): a crashed attempt counts against the retry budget, a backoff the crash
        interrupted is waited out."""
        assert self.store is not None
        facts = self.store.attempt_facts(self.run_id)
        settled_at = None
        found: dict[tuple[str, int], CutOff] = {}
        for act in self._ready:
            spec, key = act.spec, (act.spec.name, act.visit)
            if spec.irreversible:
                continue  # its intent says what happened; a pending one waits for a person
            approval = spec.approval
            if approval is not None and (approval.when is None or approval.when.evaluate(act.view)):
                ticket = self.store.ticket_for(self.run_id, spec.name, act.visit)
                if ticket is None or ticket.status != "approved":
                    continue  # it was waiting for a decision, not running
            fact = facts.get(key)
            if fact is None or (fact.started_attempt is None and fact.status is None):
                if settled_at is None:
                    settled_at = self.store.last_settled_at(self.run_id) or time.time()
                found[key] = CutOff(1 if fact is None else fact.attempt + 1, settled_at, None, 0)
            elif fact.started_attempt is not None:
                found[key] = CutOff(fact.started_attempt, fact.started_at, None, fact.crashes)
            elif fact.retry_delay_s is not None and fact.ended_at is not None:
                found[key] = CutOff(fact.attempt + 1, None, fact.ended_at + fact.retry_delay_s, fact.crashes)
            # else its last attempt failed for good: the run was ending, as after any failure
        return found
