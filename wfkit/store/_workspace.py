"""The workspace: the folder where runs live (``./.wfkit/`` unless ``WFKIT_HOME`` or an argument
says otherwise), and what a person does with it from Python or the CLI: list runs, decide
tickets, reconcile irreversible steps."""

from __future__ import annotations

import json
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeAlias

from wfkit.model._approvals import Ticket, warn_already_decided
from wfkit.model._environ import setting
from wfkit.model._errors import TicketError
from wfkit.model._events import StepEvent
from wfkit.model._processors import DEFAULT_PROCESSORS
from wfkit.model._status import RunStatus
from wfkit.store._journal import encode_updates, load_json
from wfkit.store._stopped import how_stopped
from wfkit.store._store import Store

DecisionHook: TypeAlias = Callable[[Path, Ticket], object]
"""Called with the workspace folder and the ticket after a decision changed it: the package's
composition root hands in one that resumes the run when this process defines its workflow (the
store never imports the engine)."""

_decision_hook: DecisionHook | None = None


def set_decision_hook(hook: DecisionHook | None) -> None:
    """Choose what happens after a ticket is decided from a :class:`Workspace` (None: nothing)."""
    global _decision_hook
    _decision_hook = hook


DB_NAME = "wfkit.db"
_stores: dict[tuple[Path, str], Store] = {}
_scratch: set[Path] = set()  # workspaces whose rows are copied elsewhere, then deleted
_lock = threading.Lock()


def workspace_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder: ``path``, else ``$WFKIT_HOME``, else ``./.wfkit``."""
    chosen = path if path is not None else setting("WFKIT_HOME") or ".wfkit"
    # Every durable run opens its workspace's store, and pathlib's parsing costs some 13 us (as
    # much as a durable step adds on the event loop): a folder is resolved once, then found again
    # by the path as given (one naming a relative folder together with the current directory,
    # which it follows; one starting with ``~`` is parsed each time, as $HOME may change).
    key: object = None
    if isinstance(chosen, (str, Path)):
        known = _absolute.get(chosen)
        if known is not None:
            return known
        if os.path.isabs(chosen):
            key = chosen
        elif not os.fspath(chosen).startswith("~"):
            key = (chosen, os.getcwd())
            known = _absolute.get(key)
            if known is not None:
                return known
    folder = Path(chosen).expanduser().absolute()
    if key is not None:
        if len(_absolute) >= 256:
            _absolute.clear()
        _absolute[key] = folder
    return folder


_absolute: dict[object, Path] = {}  # what workspace_path resolved: see there


def workspace_option(folder: Path) -> str:
    """`` --workspace DIR`` for a ``wfkit`` command that must find the workspace ``folder``, from any
    folder; "" when it is the default one here (``$WFKIT_HOME`` or ``./.wfkit``), found by itself."""
    return "" if folder == workspace_path() else f" --workspace {shlex.quote(str(folder))}"


def open_store(
    path: str | os.PathLike[str] | None = None, *, synchronous: str | None = None, create: bool = True
) -> Store:
    """The (shared, per process) store of a workspace. ``synchronous`` is SQLite's durability
    level: "full" (default; survives power loss) or "normal" (faster; survives a crashed process),
    also set by ``$WFKIT_SYNCHRONOUS``; a scratch workspace (:func:`mark_scratch`) is "normal".
    ``create=False`` (every read) refuses a missing workspace with :class:`WorkspaceNotFoundError`
    instead of making one."""
    folder = workspace_path(path)
    with _lock:
        if synchronous is None and folder in _scratch:
            synchronous = "normal"
        synchronous = synchronous or setting("WFKIT_SYNCHRONOUS") or "full"  # read by every run
        key = (folder, synchronous.lower())
        store = _stores.get(key)
        if store is not None and store.moved_away():
            # The folder was deleted under us (and perhaps made again by another process): never
            # keep writing into a ghost.
            store = None
        if store is None:
            store = Store(
                folder / DB_NAME,
                synchronous=synchronous,
                create=create,
                workspace_option=lambda: workspace_option(folder),
            )
            _stores[key] = store
        return store


def mark_scratch(path: str | os.PathLike[str]) -> None:
    """Declare ``path`` a scratch workspace (a Dask partition's, its rows copied to a dataset
    that is written durably, then deleted): its store commits without waiting for the disk
    (synchronous=normal), whatever ``$WFKIT_SYNCHRONOUS`` says, because a worker that dies loses
    the folder anyway and its partition runs again. :func:`forget_store` ends it."""
    with _lock:
        _scratch.add(workspace_path(path))


def forget_store(path: str | os.PathLike[str]) -> None:
    """Close a workspace's shared stores and drop them (a scratch workspace about to be deleted)."""
    folder = workspace_path(path)
    with _lock:
        _scratch.discard(folder)
        gone = [key for key in _stores if key[0] == folder]
        stores = [_stores.pop(key) for key in gone]
    for store in stores:
        store.close()


def decision_event(ticket: Ticket, workflow_version: str, parameters_hash: str | None = None) -> StepEvent:
    """The step-log row that records a reviewer's decision (made where this process runs)."""
    at = ticket.decided_at or time.time()
    event = StepEvent(
        run_id=ticket.run_id,
        workflow=ticket.workflow,
        workflow_version=workflow_version,
        step=ticket.step,
        visit=ticket.visit,
        attempt=0,
        status=ticket.status,
        started_at=at,
        ended_at=at,
        latency_s=0.0,
        queue_s=0.0,
        approver=ticket.decided_by,
        decision_comment=ticket.comment,
        parameters_hash=parameters_hash,
        host=socket.gethostname(),
        extra={"ticket": ticket.ticket_id},
    )
    for processor in DEFAULT_PROCESSORS:  # a comment may carry a secret: redact it like any event
        event = processor(event)
    return event


def decide_ticket(ticket: Ticket, decision: Literal["approve", "reject"], by: str, comment: str) -> Ticket:
    """``ticket.approve()`` / ``reject()``: decide it in the workspace it was read from."""
    # (4: the user's ticket.approve(), through Ticket._decide)
    return decide_saying(Workspace(ticket.workspace), ticket, decision, by=by, comment=comment, stacklevel=4)


def decide_saying(
    workspace: Workspace,
    ticket_id: str | Ticket,
    decision: Literal["approve", "reject"],
    *,
    by: str,
    comment: str,
    resume: bool = True,
    stacklevel: int,
) -> Ticket:
    """:meth:`Workspace.decide` for a user's approve/reject: the ticket as decided, and the same
    decision asked again warns who made it, as ``run.approve`` does (``stacklevel``: the user's
    call, counted from the caller)."""
    ticket, changed = workspace.decide(ticket_id, decision, by=by, comment=comment, resume=resume)
    if not changed:
        warn_already_decided(ticket, stacklevel + 1)
    return ticket


class Workspace:
    """A folder of runs. ``Workspace()`` opens ``$WFKIT_HOME`` or ``./.wfkit``; a folder with no
    workspace is an error (:class:`WorkspaceNotFoundError`) unless ``create=True``."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = False) -> None:
        self.path = workspace_path(path)
        self.store = open_store(self.path, create=create)

    def __repr__(self) -> str:
        return f"<Workspace {self.path}>"

    # ---- runs ----------------------------------------------------------------------------------

    def runs(self, *, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first: id, workflow, status, started, steps done, error."""
        return self.store.run_rows(status=status, limit=limit)

    def run_info(self, run_id: str) -> dict[str, Any]:
        """One run: its row, checkpoints, intents, tickets and events; of an interrupted run, the
        step visits in flight when its process died (``in_flight``: step, visit, attempt...) and the
        reconciliations made since a process last ran it (``reconciled_since_stop``)."""
        row = self.store.run_row(run_id)
        info = {k: v for k, v in row.items() if not k.startswith("lease_") and k != "definition"}
        for key in ("inputs", "state"):
            if info.get(key) is not None:
                info[key] = load_json(self.store.path, run_id, f"runs.{key}", info[key])
        info["steps"] = [
            {"seq": seq, "step": step, "visit": visit, "outcome": outcome, "route": route, "map_index": index}
            for seq, step, visit, outcome, _updates, route, _failure, index in self.store.checkpoints(run_id)
        ]
        link = self.store.run_link(run_id)
        info["forked_from"] = (
            None
            if link is None or link["kind"] != "fork"
            else {"run_id": link["parent_run_id"], "at": link["at_step"], "visit": link["parent_visit"]}
        )
        info["parent_run_id"] = None if link is None or link["kind"] != "child" else link["parent_run_id"]
        info["children"] = [c["run_id"] for c in self.store.child_runs(run_id)]
        info["intents"] = self.store.intents(run_id)
        # An interrupted run: the steps in flight when its process died, the reconciliations since.
        stopped = how_stopped(self.store, run_id, info["status"]) if info["status"] == RunStatus.INTERRUPTED else None
        info["in_flight"] = [] if stopped is None else [f._asdict() for f in stopped.in_flight]
        info["reconciled_since_stop"] = [] if stopped is None else [r._asdict() for r in stopped.reconciled]
        info["tickets"] = [t.ticket_id for t in self.store.tickets.find(status=None, run_id=run_id)]
        info["lease"] = (
            None
            if row["lease_owner"] is None
            else {
                "host": row["lease_host"],
                "pid": row["lease_pid"],
                "until": row["lease_expires"],
            }
        )
        return info

    def clear_cache(self, *, workflow: str | None = None, step: str | None = None, expired_only: bool = False) -> int:
        """Drop step-cache entries kept in this workspace (all, a workflow's, a step's, or only the
        expired ones); returns how many. ``wfkit cache clear`` does the same."""
        return self.store.cache_clear(workflow=workflow, step=step, expired_only=expired_only)

    def events(self, run_id: str | None = None) -> list[StepEvent]:
        """The journal: one event per attempt, in the order they were committed."""
        return self.store.events(run_id)

    # ---- approvals -----------------------------------------------------------------------------

    def pending(self) -> list[Ticket]:
        """Open approval tickets, oldest first."""
        return self.store.tickets.find(status="open")

    def ticket(self, ticket_id: str) -> Ticket:
        return self.store.tickets.get(ticket_id)

    def decide(
        self,
        ticket_id: str | Ticket,
        decision: Literal["approve", "reject"],
        *,
        by: str,
        comment: str = "",
        resume: bool = True,
    ) -> tuple[Ticket, bool]:
        """Apply a decision once; returns the ticket and whether this call changed it. With
        ``resume`` (the default) the run continues at once when this process defines its workflow
        (in a notebook, as a task on the kernel's loop; ``await wfkit.drain()`` waits for it);
        otherwise the decision waits for ``wfkit resume`` or ``run.resume()``."""
        if isinstance(ticket_id, Ticket):
            ticket_id = ticket_id.ticket_id
        row = self.store.run_row(self.store.tickets.get(ticket_id).run_id)
        ticket, changed = self.store.tickets.decide(
            ticket_id,
            decision,
            by,
            comment,
            lambda t: decision_event(t, row["workflow_version"], row["parameters_hash"]),
        )
        # Unchanged (decided the same way before, by a process that could not resume the run): the
        # run may still wait at the gate, and the hook continues it if it does.
        if resume and _decision_hook is not None:
            _decision_hook(self.path, ticket)
        return ticket, changed

    def approve(self, ticket_id: str | Ticket, *, by: str, comment: str = "", resume: bool = True) -> Ticket:
        """Approve a ticket and resume its run if this process defines its workflow. The same
        decision twice records nothing new (but continues a run still waiting at the gate); a
        conflicting one raises (the same one warns :class:`AlreadyDecidedWarning`)."""
        return decide_saying(self, ticket_id, "approve", by=by, comment=comment, resume=resume, stacklevel=2)

    def reject(self, ticket_id: str | Ticket, *, by: str, comment: str = "", resume: bool = True) -> Ticket:
        """Reject a ticket and resume its run (to its ``on_reject`` step, or to fail) if this process
        defines its workflow. The same decision twice records nothing (and warns
        :class:`AlreadyDecidedWarning`); a conflicting one raises."""
        return decide_saying(self, ticket_id, "reject", by=by, comment=comment, resume=resume, stacklevel=2)

    def export_decisions(self, path: str | os.PathLike[str], *, run_ids: list[str] | None = None) -> int:
        """Write decided tickets as JSONL for headless replay (``policy=DecisionsFile(path)``): one
        line per ticket, oldest first, with the run it was decided in; returns how many.

        A replay looks a decision up by workflow, step and visit, so runs that decided one gate
        visit differently (one approved, another rejected) make an ambiguous file: that raises
        :class:`TicketError` naming the gates and the runs on each side, and writes nothing; pass
        ``run_ids=[...]`` with only the runs whose decisions to replay. Runs that agree are fine."""
        tickets = [
            t
            for t in self.store.tickets.find(status=None)
            if not t.is_open and (run_ids is None or t.run_id in run_ids)
        ]
        sides: dict[tuple[str, str, int], dict[str, list[str]]] = {}
        for t in tickets:
            sides.setdefault((t.workflow, t.step, t.visit), {}).setdefault(t.status, []).append(t.run_id)
        conflicts = {key: runs for key, runs in sides.items() if len(runs) > 1}
        if conflicts:
            shown = [
                f"workflow {workflow!r} step {step!r} visit {visit}: "
                + "; ".join(f"{status} in {_runs(ids)}" for status, ids in sorted(runs.items()))
                for (workflow, step, visit), runs in list(conflicts.items())[:5]
            ]
            more = f"\n  ... and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
            raise TicketError(
                f"cannot export decisions to {os.fspath(path)}: runs decided {len(conflicts)} gate "
                f"visit(s) differently, and a replay could not tell which decision to apply:\n  "
                + "\n  ".join(shown)
                + more
                + "\nExport only the runs whose decisions to replay: "
                "Workspace().export_decisions(path, run_ids=[...])"
            )
        lines = [
            json.dumps(
                {
                    "workflow": t.workflow,
                    "step": t.step,
                    "visit": t.visit,
                    "decision": "approve" if t.status == "approved" else "reject",
                    "by": t.decided_by,
                    "comment": t.comment,
                    "run_id": t.run_id,
                }
            )
            + "\n"
            for t in tickets
        ]
        Path(path).write_text("".join(lines), encoding="utf-8")
        return len(lines)

    # ---- irreversible steps ---------------------------------------------------------------------

    def reconcile(
        self,
        run_id: str,
        step: str,
        *,
        action: Literal["done", "retry"],
        by: str,
        updates: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Settle an irreversible step whose process died between intent and result.

        ``done``: a person checked that the side effect happened; the step counts as completed
        with ``updates`` as its result. ``retry``: it did not happen; resume runs it again.
        A run that a live process still executes (this one included) is refused with a
        :class:`~wfkit.LeaseError` naming it: its step may be in its body, which has not ended.
        """
        if action not in ("done", "retry"):
            raise ValueError(f"action is 'done' or 'retry', got {action!r}")
        if not by or not str(by).strip():
            raise ValueError(
                f"reconciling needs the name of the person who checked (by=...), got by={by!r}, which names "
                f"no one: pass who checked, e.g. by='ana'"
            )
        self.store.run_row(run_id)  # an unknown run says so (KeyError), not "no irreversible step"
        pending = [i for i in self.store.intents(run_id) if i["step"] == step and i["status"] == "pending"]
        if not pending:
            raise TicketError(self._nothing_to_reconcile(run_id, step))
        intent = pending[-1]
        status = "reconciled_done" if action == "done" else "retry"
        row = self.store.run_row(run_id)
        now = time.time()
        event = StepEvent(
            run_id=run_id,
            workflow=row["workflow"],
            workflow_version=row["workflow_version"],
            step=step,
            visit=intent["visit"],
            attempt=0,
            status="ok" if action == "done" else "skipped",
            started_at=now,
            ended_at=now,
            latency_s=0.0,
            queue_s=0.0,
            extra={"reconciled": action, "by": by},
        )
        # "done": the step counts as completed, with these updates, when the run resumes.
        encoded = encode_updates(step, updates or {}) if action == "done" else None
        self.store.settle_intent(event, encoded, status=status, by=by)
        return {**intent, "status": "reconciled_done" if action == "done" else "retry", "resolved_by": by}

    def _nothing_to_reconcile(self, run_id: str, step: str) -> str:
        """Why ``step`` of ``run_id`` cannot be reconciled: how its last intent was settled (a second
        `wfkit reconcile`), and what the run does wait for, if anything."""
        said = f"run {run_id} has no irreversible step {step!r} waiting for reconciliation"
        mine = [i for i in self.store.intents(run_id) if i["step"] == step]
        if mine:
            said += f": {_settled(mine[-1])}" + (" (a step is reconciled once)" if mine[-1]["resolved_by"] else "")
        waiting = self.store.pending_intents(run_id)
        if not waiting:
            return f"{said}; `wfkit show {run_id}` lists its intents"
        listed = ", ".join(
            f"`wfkit reconcile {i['run_id']} {i['step']} --done|--retry --by NAME`"
            + ("" if i["run_id"] == run_id else " (a sub-workflow's run)")
            for i in waiting
        )
        return f"{said}; it waits for {listed}"


def _settled(intent: dict[str, Any]) -> str:
    """How an irreversible step's intent that waits for nobody was settled, said for a person."""
    by = intent["resolved_by"]
    if intent["status"] == "reconciled_done":
        return f"{by} reconciled it as done"
    if intent["status"] == "retry":
        return f"{by} reconciled it for a retry, which the next resume runs"
    return "it completed" + (f" after {by}'s reconciliation" if by else "")


def _runs(run_ids: list[str]) -> str:
    """``run a`` or ``runs a, b`` (the first five, then how many more)."""
    shown = ", ".join(run_ids[:5]) + (f" and {len(run_ids) - 5} more" if len(run_ids) > 5 else "")
    return f"run {shown}" if len(run_ids) == 1 else f"runs {shown}"
