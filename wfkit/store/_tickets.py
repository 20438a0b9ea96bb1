"""Approval tickets in the run store: opened once per step visit, decided once, listed.

``Tickets`` is a part the store composes (``store.tickets``): it is handed the store's file, its
write (``do``: through the writer thread) and its read, and owns the SQL on the tickets table.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wfkit.model._approvals import Ticket
from wfkit.model._errors import TicketError
from wfkit.model._events import StepEvent
from wfkit.model._processors import redact_deep, redact_optional, redact_text
from wfkit.model._status import RunStatus
from wfkit.store._journal import COLUMNS, JOURNAL_INSERT, event_row, load_json, row_checksum, with_run_columns
from wfkit.store._writer import WriteOp


def resume_command(run_id: str, workspace_option: str, workflow: str, workflow_ref: str | None) -> str:
    """How a shell resumes the (top-level) run ``run_id``, in backticks: ``wfkit resume RUN`` with
    ``workspace_option`` (`` --workspace DIR``, or "" where the command finds the workspace by
    itself) and, for a run that recorded no workflow (``workflow_ref``: started from a notebook or a
    script), ``--workflow module:name`` and what to put there, as `wfkit resume` cannot build it."""
    command = f"wfkit resume {run_id}{workspace_option}"
    if workflow_ref:
        return f"`{command}`"
    return (
        f"`{command} --workflow module:name` (started from a notebook or script, the run recorded no "
        f"workflow: module:name is the module attribute, or a function returning it, that defines {workflow!r})"
    )


class Tickets:
    """A workspace's approval tickets (``store.tickets``), and the rows a decision writes."""

    def __init__(
        self,
        path: Path,
        do: Callable[[WriteOp[Any]], Any],
        read: Callable[[str, Sequence[Any]], list[Any]],
        workspace_option: Callable[[], str],
    ) -> None:
        self.path = path  # the store's SQLite file: tickets name their workspace, errors their file
        self.do = do
        self.read = read
        # `` --workspace DIR`` for a command a message names, "" where it finds this workspace by
        # itself: handed in, as whether this is the default workspace is the workspace layer's rule.
        self.workspace_option = workspace_option

    @staticmethod
    def rejection_routed_op(run_id: str, step: str, visit: int, route: str) -> WriteOp[None]:
        """The reviewer's "rejected" row becomes the checkpoint that routes to ``on_reject``."""

        def mark(conn: sqlite3.Connection) -> None:
            rows = conn.execute(
                f"SELECT seq, {', '.join(COLUMNS)} FROM journal "
                "WHERE run_id=? AND step=? AND visit=? AND status='rejected'",
                (run_id, step, visit),
            ).fetchall()
            outcome_at, route_at = COLUMNS.index("outcome"), COLUMNS.index("route_taken")
            for seq, *columns in rows:  # the row changes, so its checksum does
                columns[outcome_at], columns[route_at] = "rejected", route
                conn.execute(
                    "UPDATE journal SET outcome='rejected', route_taken=?, checksum=? WHERE run_id=? AND seq=?",
                    (route, row_checksum(columns), run_id, seq),
                )

        return mark

    _TICKET_COLS = (
        "ticket_id, run_id, workflow, step, visit, reason, payload, status, decided_by, comment, created_at, decided_at"
    )

    def _ticket(self, row: Sequence[Any]) -> Ticket:
        values = list(row)
        values[6] = load_json(self.path, values[1], "tickets.payload", values[6])
        return dataclasses.replace(Ticket(*values), workspace=str(self.path.parent))

    def create(self, ticket: Ticket, event: StepEvent) -> Ticket:
        """Persist a new ticket (or return the one that exists for this step visit). What is
        stored (and returned, so a live panel shows the same) passed the redaction boundary."""
        created: Ticket = self.do(self.create_op(ticket, event))
        return created

    def create_op(self, ticket: Ticket, event: StepEvent) -> WriteOp[Ticket]:
        row = event_row(event)
        ticket = dataclasses.replace(
            ticket,
            reason=redact_text(ticket.reason),
            payload=redact_deep(ticket.payload),
            workspace=str(self.path.parent),
        )

        def create(conn: sqlite3.Connection) -> Ticket:
            found = conn.execute(
                f"SELECT {self._TICKET_COLS} FROM tickets WHERE run_id=? AND step=? AND visit=?",
                (ticket.run_id, ticket.step, ticket.visit),
            ).fetchone()
            if found is not None:
                return self._ticket(found)
            conn.execute(
                f"INSERT INTO tickets ({self._TICKET_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ticket.ticket_id,
                    ticket.run_id,
                    ticket.workflow,
                    ticket.step,
                    ticket.visit,
                    ticket.reason,
                    redact_text(json.dumps(ticket.payload, default=repr)),
                    ticket.status,
                    ticket.decided_by,
                    ticket.comment,
                    ticket.created_at,
                    ticket.decided_at,
                ),
            )
            conn.execute(JOURNAL_INSERT, row)
            return ticket

        return create

    def get(self, ticket_id: str) -> Ticket:
        """The ticket ``ticket_id``; refused, saying where to look, when there is none."""
        rows = self.read(f"SELECT {self._TICKET_COLS} FROM tickets WHERE ticket_id=?", (ticket_id,))
        if not rows:
            raise TicketError(f"no approval ticket {ticket_id!r} in {self.path}; `wfkit pending` lists the open ones")
        return self._ticket(rows[0])

    def ids_from(self, prefix: str, *, limit: int = 11) -> list[Ticket]:
        """The tickets whose id starts with ``prefix``, oldest first, at most ``limit``: what a
        command given part of a ticket's id may mean (as a run id's prefix is taken)."""
        return [
            self._ticket(r)
            for r in self.read(
                f"SELECT {self._TICKET_COLS} FROM tickets WHERE substr(ticket_id, 1, ?) = ? "
                "ORDER BY created_at LIMIT ?",
                (len(prefix), prefix, limit),
            )
        ]

    def of_visit(self, run_id: str, step: str, visit: int) -> Ticket | None:
        """The ticket of a step visit's gate, if it was opened."""
        rows = self.read(
            f"SELECT {self._TICKET_COLS} FROM tickets WHERE run_id=? AND step=? AND visit=?",
            (run_id, step, visit),
        )
        return self._ticket(rows[0]) if rows else None

    def find(self, *, status: str | None = "open", run_id: str | None = None) -> list[Ticket]:
        """Tickets in the order they were opened: open ones by default (``status=None``: all), of one run or all."""
        sql = f"SELECT {self._TICKET_COLS} FROM tickets WHERE 1=1"
        params: list[Any] = []
        if status is not None:
            sql += " AND status=?"
            params.append(status)
        if run_id is not None:
            sql += " AND run_id=?"
            params.append(run_id)
        return [self._ticket(r) for r in self.read(sql + " ORDER BY created_at", params)]

    def awaiting_resume(self, run_ids: Sequence[str]) -> list[Ticket]:
        """The decided tickets of these runs that no resume has applied yet, in the order they were
        decided: each one's run still waits at a gate and its gate's step visit has no outcome in the
        journal (decided where the run could not be resumed: a shell, another process)."""
        found: list[Ticket] = []
        for run_id in run_ids:
            rows = self.read(
                f"SELECT {', '.join('t.' + c.strip() for c in self._TICKET_COLS.split(','))} FROM tickets t "
                "JOIN runs r ON r.run_id = t.run_id WHERE t.run_id=? AND t.status IN ('approved', 'rejected') "
                "AND r.status=? AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.run_id = t.run_id "
                "AND j.step = t.step AND j.visit = t.visit AND j.outcome IS NOT NULL) ORDER BY t.decided_at",
                (run_id, RunStatus.WAITING_APPROVAL),
            )
            found.extend(self._ticket(r) for r in rows)
        return found

    def decide(
        self, ticket_id: str, decision: str, by: str, comment: str, event: Callable[[Ticket], StepEvent]
    ) -> tuple[Ticket, bool]:
        """Apply a decision once. Returns the ticket and whether this call changed it.

        The same decision again is a no-op (False); a different one on a closed ticket is refused.
        """
        decided: tuple[Ticket, bool] = self.do(self.decide_op(ticket_id, decision, by, comment, event))
        return decided

    def decide_op(
        self, ticket_id: str, decision: str, by: str, comment: str, event: Callable[[Ticket], StepEvent]
    ) -> WriteOp[tuple[Ticket, bool]]:
        """The write that applies a decision (checked first, so a bad one raises at once)."""
        if decision not in ("approve", "reject"):
            raise TicketError(f"a decision is 'approve' or 'reject', got {decision!r}")
        if not by or not str(by).strip():
            raise TicketError(
                f"a decision needs the reviewer's name (by=...), got by={by!r}, which names no one: "
                f"pass who decides, e.g. by='ana'"
            )
        status = "approved" if decision == "approve" else "rejected"
        by, comment = redact_text(str(by)), redact_optional(comment) or ""
        path = self.path

        def decide(conn: sqlite3.Connection) -> tuple[Ticket, bool]:
            row = conn.execute(f"SELECT {self._TICKET_COLS} FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
            if row is None:
                raise TicketError(f"no approval ticket {ticket_id!r} in {path}; `wfkit pending` lists the open ones")
            ticket = self._ticket(row)
            if ticket.status == status:
                return ticket, False
            if ticket.status != "open":
                raise self.refusal(ticket, lambda sql, params: conn.execute(sql, params).fetchall())
            now = time.time()
            conn.execute(
                "UPDATE tickets SET status=?, decided_by=?, comment=?, decided_at=? WHERE ticket_id=?",
                (status, by, comment, now, ticket_id),
            )
            decided = dataclasses.replace(ticket, status=status, decided_by=by, comment=comment, decided_at=now)
            # Whoever decides it, from whatever handle, the row is its run's like the others: a
            # sub-workflow's names the parent run, and it has its gate's tools.
            conn.execute(JOURNAL_INSERT, event_row(with_run_columns(conn, event(decided))))
            return decided, True

        return decide

    def refusal(self, ticket: Ticket, query: Callable[[str, Sequence[Any]], list[Any]] | None = None) -> TicketError:
        """The refusal of the other decision on a decided ``ticket``: who decided what, when and
        why, and what becomes of its run. ``query``: how to read (default: this store's read; in a
        write, its connection)."""
        query = query or self.read
        top = ticket.run_id  # the run to resume: the top one, for a sub-workflow's gate
        while parent := query("SELECT parent_run_id FROM run_links WHERE run_id=? AND kind='child'", (top,)):
            top = parent[0][0]
        run = query("SELECT status, workflow, workflow_ref FROM runs WHERE run_id=?", (top,))
        status = run[0][0] if run else "not in this workspace"
        went_past = query(
            "SELECT 1 FROM journal WHERE run_id=? AND step=? AND visit=? AND outcome IS NOT NULL LIMIT 1",
            (ticket.run_id, ticket.step, ticket.visit),
        )
        if status == RunStatus.WAITING_APPROVAL and not went_past:
            # Decided where the run could not be resumed (a shell, another process): nothing moves
            # until someone resumes it, which a refused decision alone would never tell them.
            decision = "rejection" if ticket.status == "rejected" else "approval"
            command = resume_command(top, self.workspace_option(), run[0][1], run[0][2])
            then = (
                f"Run {top} waits at {ticket.step!r} until it is resumed ({command}, or "
                f"run.resume() in Python), and then follows the {decision}"
            )
        else:
            then = f"Run {top} {'went past this gate and ' if went_past else ''}is {status}"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ticket.decided_at or 0))
        why = f" ({ticket.comment})" if ticket.comment else ""
        return TicketError(
            f"ticket {ticket.ticket_id} was already {ticket.status} by {ticket.decided_by} at {when}{why}; a "
            f"decision is applied once and cannot be reversed. {then}; to decide again, start a new run"
        )
