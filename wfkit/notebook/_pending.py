"""``wfkit.pending()``: the open approval tickets of a workspace, decidable from a notebook.

Tickets live in the workspace, so they are there after a kernel restart. Deciding one resumes its
run when this kernel knows the workflow (define it again, by the same name) and otherwise leaves
the decision recorded for ``wfkit resume`` or a later ``run.resume()``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from typing import Any

from wfkit.engine._engine import executing_here
from wfkit.engine._run import held_handle, under_way_here
from wfkit.engine._workflow import find_workflow, resume_decided
from wfkit.model._approvals import Ticket
from wfkit.model._errors import TicketError, WorkflowDefinitionError
from wfkit.model._graph import Graph
from wfkit.model._status import RunStatus
from wfkit.notebook._display import ticket_text
from wfkit.store._workspace import Workspace, decide_saying, workspace_option


class Pending:
    """Open tickets with a text form, an HTML table, and approval panels in a live notebook."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.tickets: list[Ticket] = workspace.pending()

    def __iter__(self) -> Iterator[Ticket]:
        return iter(self.tickets)

    def __len__(self) -> int:
        return len(self.tickets)

    def __getitem__(self, index: int) -> Ticket:
        return self.tickets[index]

    def _find(self, ticket: str | int | Ticket | None) -> Ticket:
        if isinstance(ticket, Ticket):
            return ticket
        if ticket is None:
            if len(self.tickets) != 1:
                ids = ", ".join(t.ticket_id for t in self.tickets) or "none"
                raise TicketError(f"{len(self.tickets)} open tickets ({ids}); say which: approve(TICKET_ID, by=...)")
            return self.tickets[0]
        if isinstance(ticket, int):
            return self.tickets[ticket]
        for t in self.tickets:
            if t.ticket_id == ticket:
                return t
        return self.workspace.ticket(ticket)

    def approve(self, ticket: str | int | Ticket | None = None, *, by: str, comment: str = "") -> Ticket:
        """Approve one of these tickets (its id, its index, or the only one) and resume its run
        when this process defines the workflow."""
        return decide_saying(self.workspace, self._find(ticket), "approve", by=by, comment=comment, stacklevel=2)

    def reject(self, ticket: str | int | Ticket | None = None, *, by: str, comment: str = "") -> Ticket:
        """Reject one of these tickets (its id, its index, or the only one) and resume its run
        when this process defines the workflow."""
        return decide_saying(self.workspace, self._find(ticket), "reject", by=by, comment=comment, stacklevel=2)

    def __repr__(self) -> str:
        if not self.tickets:
            return f"no open approval tickets in {self.workspace.path}"
        # Outside the default workspace, the commands it prints must name it to find the tickets.
        folder = None if workspace_option(self.workspace.path) == "" else str(self.workspace.path)
        return "\n".join(ticket_text(t, folder) for t in self.tickets)

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(v))}</td>" for v in (t.ticket_id, t.workflow, t.run_id, t.step, t.reason))
            + "</tr>"
            for t in self.tickets
        )
        return (
            f"<b>{len(self.tickets)} open approval ticket(s)</b><table><tr><th>ticket</th><th>workflow</th>"
            f"<th>run</th><th>step</th><th>reason</th></tr>{rows}</table>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from wfkit.engine._mode import current_mode

        if current_mode() != "interactive" or not self.tickets:
            return {"text/plain": repr(self), "text/html": self._repr_html_()}
        from wfkit.notebook._widgets import PendingView

        view = PendingView(
            self.workspace,
            self.tickets,
            lambda t: resume_after_decision(self.workspace, t),
            lambda run_id: held_handle(self.workspace.store.top_run(run_id)),
            _graph_defined_here,
        )
        bundle: dict[str, Any] = dict(view._repr_mimebundle_() or {})
        bundle["text/plain"] = repr(self)
        return bundle


def _graph_defined_here(workflow: str) -> Graph | None:
    """The graph of ``workflow`` if this process defines it (a panel then says what a decision
    leads to); None if not, or if it does not validate (the panel then says nothing of it)."""
    flow = find_workflow(workflow)
    if flow is None:
        return None
    try:
        return flow.validate()
    except WorkflowDefinitionError:
        return None


def resume_after_decision(workspace: Workspace, ticket: Ticket) -> str | None:
    """Continue the ticket's run if this process has its workflow; else the decision waits.

    Returns what a panel that learnt of the decision from the workspace (made in another kernel or a
    shell) adds below it (HTML): that the run continues here, or how to continue a run that waits
    because this kernel does not define its workflow; None when neither (it went on elsewhere)."""
    resumed = resume_decided(workspace.path, ticket)
    run_id = workspace.store.top_run(ticket.run_id)
    if resumed is not None or executing_here(run_id) or under_way_here(run_id):
        return f"Run {html.escape(run_id)} continues in this kernel."
    row = workspace.store.run_row(run_id)
    if row["status"] not in RunStatus.HALTED or find_workflow(row["workflow"]) is not None:
        return None
    return (
        f"Run {html.escape(run_id)} waits at {html.escape(repr(ticket.step))}: this kernel does not define "
        f"workflow {html.escape(repr(row['workflow']))}, so it cannot continue it. Run the cells that define it "
        f"here, then <code>flow.resume({html.escape(repr(run_id))})</code> (<code>flow</code>: that workflow)."
    )


def pending(workspace: str | os.PathLike[str] | None = None) -> Pending:
    """Open approval tickets of a workspace (default ``$WFKIT_HOME`` or ``./.wfkit``)."""
    return Pending(Workspace(workspace))
