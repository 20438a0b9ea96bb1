"""Notebook widgets: a live view of a run, approval panels, and the workspace's open tickets.

Widgets are views: they call only wfkit's public API (``Run.approve``, ``Workspace.decide``,
``Workflow``'s resume), never the engine. A button callback may run on a kernel subshell thread
(JupyterLab >= 4.4 sends widget messages over a subshell), so every decision is handed to the
kernel's event loop with ``loop.call_soon_threadsafe``: the run continues as a task there.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import html
import json
import os
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from wfkit.model._approvals import Ticket, already_decided
from wfkit.model._errors import AlreadyDecidedWarning, TicketError
from wfkit.model._events import StepEvent, TokenChunk
from wfkit.model._processors import redact_text
from wfkit.model._status import RunStatus
from wfkit.notebook._display import gate_outcomes, run_html, statuses
from wfkit.store._workspace import workspace_option, workspace_path

if TYPE_CHECKING:
    from wfkit.engine._run import Run
    from wfkit.model._graph import Graph
    from wfkit.store._workspace import Workspace

__all__ = ["ApprovalPanel", "PendingView", "RunView"]

Decide = Callable[[str, str, str], Any]


def _reviewer() -> str:
    try:
        return os.environ.get("WFKIT_REVIEWER") or getpass.getuser()
    except (KeyError, OSError):  # no user name in some containers
        return ""


Decision = tuple[str, "str | None", "str | None", "float | None"]
"""How a ticket was decided, as its panel shows it: (status, by, comment, when: epoch seconds)."""


def _decision_of(item: object) -> tuple[str, Decision] | None:
    """The ticket id and decision an event records, if it is a reviewer's decision."""
    if (
        isinstance(item, StepEvent)
        and item.status in ("approved", "rejected")
        and isinstance(item.extra, dict)
        and "ticket" in item.extra
    ):
        return str(item.extra["ticket"]), (item.status, item.approver, item.decision_comment, item.ended_at)
    return None


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


# When its kernel restarts, JupyterLab's widget manager marks every view of the old kernel's widgets
# `jupyter-widgets-disconnected` (their comms are gone: a click reaches nobody) and leaves them on the
# page. No kernel is left to redraw a view then, so only CSS can react: a view still `wfk-live` when
# the kernel went (an open panel, the view of an unfinished run) shows its own note (its child
# `wfk-restarted`: not a nested view's) and takes the clicks away. A decided panel, a finished run's
# view, shows what is still true: no note.
_RESTARTED_CSS = (
    "<style>.wfk-restarted{display:none}"
    ".wfk-live.jupyter-widgets-disconnected>.wfk-restarted{display:flex;color:#b91c1c}"
    ".wfk-live.jupyter-widgets-disconnected :is(button,input,textarea,select){pointer-events:none;opacity:.45}"
    "</style>"
)


def _restarted(note: str) -> w.HTML:
    """What a `wfk-live` view it is a child of says once its kernel has restarted (HTML ``note``)."""
    shown = w.HTML(f"{_RESTARTED_CSS}<div>{note}</div>")
    shown.add_class("wfk-restarted")
    return shown


def _where(workspace: str | os.PathLike[str] | None) -> str:
    """The argument that names ``workspace`` in a note's code (none for the default workspace)."""
    return "" if workspace is None or Path(workspace) == workspace_path() else repr(str(workspace))


def _panel_restarted(ticket: Ticket) -> str:
    """What an open panel says once its kernel has restarted: how to get a live panel of its ticket."""
    return (
        f"<b>The kernel restarted: this panel is no longer connected to it</b>, and its "
        f"buttons do nothing. Ticket {html.escape(ticket.ticket_id)} is kept in the workspace: run the cells "
        f"that define workflow <code>{html.escape(ticket.workflow)}</code> again, then "
        f"<code>wf.pending({html.escape(_where(ticket.workspace))})</code> for a live panel of it (a decision "
        f"there resumes run {html.escape(ticket.run_id)}). Running the cell that started the run again would "
        "start a new run."
    )


def _view_restarted(run: Run) -> str:
    """What the view of an unfinished run says once its kernel has restarted: it shows the run as it
    was then, and where to see the run now."""
    said = f"<b>The kernel restarted: this view of run {html.escape(run.run_id)} stopped updating then</b>"
    if run.workspace is None:
        return f"{said}. The run kept no workspace, so it ended with that kernel."
    where = _where(run.workspace)
    shell = html.escape(workspace_option(run.workspace))  # quoted for a shell, as the CLI's own hints
    return (
        f"{said}: it shows the run as it was, and its controls do nothing. The workspace keeps the run: "
        f"<code>wf.Workspace({html.escape(where)}).run_info({html.escape(repr(run.run_id))})</code> in a cell, or "
        f"<code>wfkit show {html.escape(run.run_id)}{shell}</code> in a shell, shows it now. Running the cell "
        "that started the run again would start a new run."
    )


# The panels of this kernel, to hand what one of them learns of a decision made elsewhere to every
# panel of that ticket (the run's, wf.pending()'s).
_panels: weakref.WeakSet[ApprovalPanel] = weakref.WeakSet()


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ApprovalPanel(w.VBox):  # type: ignore[misc]
    """One ticket: reason, payload, reviewer, comment, Approve / Reject. A click decides once.

    ``stored``: reads the ticket as the workspace holds it now. While the panel is open it asks
    every ``RECHECK_S`` seconds (on the kernel's loop), so a decision made where no event reaches
    this kernel (another notebook, a shell's ``wfkit approve``) closes the panel as it is made.
    ``closed``: told once the panel shows a decision, however it learnt of it. ``graph``: the
    ticket's workflow, if this kernel defines it: the panel says what each decision leads to.
    ``elsewhere``: handed the ticket when the re-read finds it decided outside this panel (no click
    here, no event of its run): it continues the run waiting in this kernel, as a click would have,
    and returns what the panel says of the run below the decision (HTML; None: nothing), as does
    every other panel of the ticket in this kernel (the run's own, ``wf.pending()``'s).
    """

    RECHECK_S = 2.0

    def __init__(
        self,
        ticket: Ticket,
        decide: Decide,
        stored: Callable[[], Ticket] | None = None,
        closed: Callable[[], None] | None = None,
        graph: Graph | None = None,
        elsewhere: Callable[[Ticket], str | None] | None = None,
    ) -> None:
        self.ticket = ticket
        self._decide = decide
        self._stored = stored
        self._on_closed = closed
        self._elsewhere = elsewhere
        self._loop = _loop()
        self._busy = False
        self._closed = False
        # The ticket's workflow, when this kernel defines it: what a decision leads to.
        known = graph is not None and graph.name == ticket.workflow and ticket.step in graph.steps
        self._graph = graph if known else None
        self.header = w.HTML(
            f"<b>Approval needed</b> at <code>{html.escape(ticket.step)}</code> (visit {ticket.visit}) of "
            f"workflow <code>{html.escape(ticket.workflow)}</code>, asked {_utc(ticket.created_at)} "
            f"(run {html.escape(ticket.run_id)}, ticket {html.escape(ticket.ticket_id)})<br>{self._details()}"
        )
        self.reviewer = w.Text(value=_reviewer(), description="Reviewer", placeholder="your name")
        self.comment = w.Textarea(description="Comment", placeholder="why (optional)")
        self.approve_button = w.Button(description="Approve", button_style="success", icon="check")
        self.reject_button = w.Button(description="Reject", button_style="danger", icon="times")
        self.result = w.HTML()
        self.restarted = _restarted(_panel_restarted(ticket))
        self.approve_button.on_click(lambda _: self._clicked("approve"))
        self.reject_button.on_click(lambda _: self._clicked("reject"))
        super().__init__(
            [
                self.header,
                self.restarted,
                self.reviewer,
                self.comment,
                w.HBox([self.approve_button, self.reject_button]),
                self.result,
            ]
        )
        self.add_class("wfk-approval")  # what a page (a browser test, a user's CSS) finds a panel by
        self.add_class("wfk-live")  # until decided: see _RESTARTED_CSS
        _panels.add(self)
        if not ticket.is_open:
            self._show(ticket)
        self._recheck_later()

    def _details(self, decided: str | None = None) -> str:
        """What the header says below its first line (which says whether the gate is open or
        decided): the reason, the payload, and what each decision leads to, or the one taken."""
        t = self.ticket
        payload = html.escape(json.dumps(t.payload, indent=2, default=str))
        outcomes = ""
        if self._graph is not None:
            outcomes = f"<div class='wfk-gate-outcomes'>{gate_outcomes(self._graph, t.step, decided)}</div>"
        return f"<i>{html.escape(t.reason)}</i><pre style='max-height:12em;overflow:auto'>{payload}</pre>{outcomes}"

    def _recheck_later(self) -> None:
        if self._stored is not None and not self._closed and self._loop is not None and self._loop.is_running():
            self._loop.call_later(self.RECHECK_S, self._recheck)

    def _read(self) -> Ticket | None:
        """The ticket as the workspace holds it now; None when the panel cannot tell."""
        if self._stored is None:
            return None
        try:
            return self._stored()
        except Exception:  # the workspace went away: the panel stays as it is, its clicks say why
            return None

    def _recheck(self) -> None:
        if self._closed:
            return
        stored = self._read()
        if stored is None:
            return
        if stored.is_open:
            self._recheck_later()
            return
        self._show(stored)
        if self._elsewhere is None:
            return
        try:
            note = self._elsewhere(stored)
        except Exception as exc:  # shown, not lost in a callback on the loop
            note = f"<span style='color:#b91c1c'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"
        if not note:
            return
        # Every panel of the ticket says it, not only the one whose re-read came first: the run's own
        # panel is often closed by the resumed run's event before its re-read, and showed the decision only.
        for panel in [p for p in _panels if p.ticket.ticket_id == stored.ticket_id]:
            panel._show(stored)
            if note not in panel.result.value:
                panel.result.value = "<br>".join(filter(None, (panel.result.value, note)))

    def _clicked(self, decision: str) -> None:
        if self._busy:
            return  # a double click: the first one decides
        by = self.reviewer.value.strip()
        if not by:
            self.result.value = "<span style='color:#b91c1c'>Enter the reviewer's name first.</span>"
            return
        self._busy = True
        self.approve_button.disabled = self.reject_button.disabled = True
        comment = self.comment.value
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._apply, decision, by, comment)
        else:
            self._apply(decision, by, comment)

    def _apply(self, decision: str, by: str, comment: str) -> None:
        asked_at = time.time()
        try:
            with warnings.catch_warnings():
                # Said below, on the panel: a warning from a widget's callback reaches no cell.
                warnings.simplefilter("ignore", AlreadyDecidedWarning)
                outcome = self._decide(decision, by, comment)
        except TicketError as exc:
            # Decided the other way meanwhile (a stale panel): the header says how, by whom and
            # when, no longer "Approval needed"; the refusal says what becomes of the run.
            stored = self._read()
            if stored is not None and not stored.is_open:
                self._show(stored)
            self.result.value = f"<span style='color:#b91c1c'>{html.escape(str(exc))}</span>"
            return
        except Exception as exc:  # shown, not lost in a callback traceback
            self.result.value = (
                f"<span style='color:#b91c1c'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"
            )
            self._busy = False
            self.approve_button.disabled = self.reject_button.disabled = False
            return
        if isinstance(outcome, Ticket):
            self._show(outcome)
            if outcome.decided_at is not None and outcome.decided_at < asked_at:  # decided before this click
                self.result.value = html.escape(f"{already_decided(outcome)}: nothing changed")
        else:
            self.result.value = f"<b>{'approved' if decision == 'approve' else 'rejected'}</b> by {html.escape(by)}"

    def _show(self, ticket: Ticket) -> None:
        self.show_decision(ticket.status, ticket.decided_by, ticket.comment, ticket.decided_at)

    def show_decision(self, status: str, by: str | None, comment: str | None, at: float | None = None) -> None:
        """The ticket is decided (here or elsewhere): say how in the header (a panel scrolled past
        must not read as an open gate), and take the buttons away. Said once, at the top: the line
        under the buttons is left for what follows (the run goes on here, or how to continue it).
        Once: the same decision learnt again (the resumed run's event after a re-read) keeps what
        is shown."""
        if self._closed:
            return
        self._busy = self._closed = True
        self.remove_class("wfk-live")
        self.approve_button.disabled = self.reject_button.disabled = True
        self.reviewer.disabled = self.comment.disabled = True
        said = f": {html.escape(comment)}" if comment else ""
        t = self.ticket
        when = "" if at is None else f" at {_utc(at)}"
        self.header.value = (
            f"<b>{html.escape(status.capitalize())} by {html.escape(str(by))}</b>{when}{said} (gate "
            f"<code>{html.escape(t.step)}</code>, visit {t.visit}, of workflow <code>{html.escape(t.workflow)}</code>, "
            f"asked {_utc(t.created_at)}; run {html.escape(t.run_id)}, ticket {html.escape(t.ticket_id)})"
            f"<br>{self._details(status)}"
        )
        self.result.value = ""  # what was said while the decision was under way, now in the header
        if self._on_closed is not None:
            self._on_closed()


class RunView(w.VBox):  # type: ignore[misc]
    """A live view of one run: step table and graph update as events arrive; gates get panels.

    Text a step streams from ``ctx.llm.stream`` shows under "streaming" as it arrives, under the
    step that streams it (and the map item: items streaming at once each get a line of their own);
    choosing a step in "inspect step" shows the state before it (the inputs, or the state after the
    step settled before it) and what it wrote (from ``run.history()``). ``expand=True`` draws
    sub-workflows inside the graph. ``elsewhere``: what a gate's panel does with a decision it
    learns of from the workspace (see :class:`ApprovalPanel`); a run displayed in a notebook
    continues, as after a click.
    """

    _STREAM_KEEP = 2000  # characters of streamed text kept per stream: the tail is what is live

    def __init__(
        self, run: Run, *, expand: bool = False, elsewhere: Callable[[Ticket], str | None] | None = None
    ) -> None:
        self.run = run
        self.expand = expand
        self._elsewhere = elsewhere
        self._loop = _loop()
        self._scheduled = False
        self.restarted = _restarted(_view_restarted(run))
        self.summary = w.HTML()
        self.graph = w.HTML()
        self.approvals = w.VBox()
        self.tokens = w.HTML()
        # (step, visit, map item or None) -> the attempt streaming and its text so far: a retry's
        # stream starts afresh
        self._streamed: dict[tuple[str, int, int | None], tuple[int, str]] = {}
        self._finished: set[tuple[str, int, int | None]] = set()
        self._sub_statuses: dict[str, dict[str, str]] = {}  # sub-workflow name -> its step statuses
        self.step_picker = w.Dropdown(options=[], description="inspect step", value=None)
        self.step_detail = w.HTML()
        self.step_picker.observe(lambda _: self._render_step(), "value")
        self.state_button = w.ToggleButton(description="state", tooltip="show the run's current state")
        self.state = w.HTML()
        self.state_button.observe(lambda _: self._render_state(), "value")
        self._panels: dict[str, ApprovalPanel] = {}
        # Decisions seen as events (made in this view, the pending panel, a Workspace or another
        # process's resume): each closes its ticket's panel at the next redraw.
        self._decided: dict[str, Decision] = {}
        super().__init__(
            [
                self.restarted,
                self.summary,
                self.approvals,
                self.graph,
                self.tokens,
                self.step_picker,
                self.step_detail,
                self.state_button,
                self.state,
            ]
        )
        self.add_class("wfk-run-view")  # what a page finds a run's view by
        self.add_class("wfk-live")  # until the run ends: see _RESTARTED_CSS
        run.subscribe(self._on_event, chunks=True)
        self.refresh()

    def _on_event(self, item: StepEvent | TokenChunk | None) -> None:
        if isinstance(item, TokenChunk):
            key = (item.step, item.visit, item.map_index)
            self._finished.discard(key)
            attempt, text = self._streamed.get(key, (item.attempt, ""))
            if item.attempt != attempt:  # an attempt cut off is not part of the retry's reply
                text = ""
            self._streamed[key] = (item.attempt, (text + item.text)[-self._STREAM_KEEP :])
        elif isinstance(item, StepEvent):
            if item.parent_run_id is not None:  # a sub-workflow's step: colours the expanded graph
                self._sub_statuses.setdefault(item.workflow, {})[item.step] = item.status
            elif item.status not in ("retry", "waiting_approval"):
                self._finished.add((item.step, item.visit, item.map_index))
            decided = _decision_of(item)
            if decided is not None:
                self._decided[decided[0]] = decided[1]
        # Coalesce bursts of events and chunks into one redraw per 50 ms.
        if self._scheduled:
            return
        if self._loop is not None and self._loop.is_running():
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._loop.call_later, 0.05, self.refresh)
        else:
            self.refresh()

    def refresh(self) -> None:
        self._scheduled = False
        run = self.run
        self.summary.value = run_html(run)
        if run.status in RunStatus.FINISHED:
            self.remove_class("wfk-live")
        graph = run.graph
        if graph is not None:
            from wfkit.model._graphview import to_svg

            self.graph.value = to_svg(graph, statuses(run.events), expand=self.expand, sub_statuses=self._sub_statuses)
        for ticket in run.tickets():
            if ticket.ticket_id not in self._panels:
                panel = ApprovalPanel(
                    ticket,
                    self._decider(ticket),
                    functools.partial(_stored_ticket, self.run, ticket.ticket_id),
                    graph=graph,
                    elsewhere=self._elsewhere,
                )
                self._panels[ticket.ticket_id] = panel
                self.approvals.children = (*self.approvals.children, panel)
        for ticket_id, decision in list(self._decided.items()):
            decided = self._panels.get(ticket_id)
            if decided is not None:
                decided.show_decision(*decision)
                del self._decided[ticket_id]
        self._render_tokens()
        self._render_steps()
        self._render_state()

    def _render_tokens(self) -> None:
        rows = []
        for (step, visit, index), (attempt, text) in self._streamed.items():
            live = (step, visit, index) not in self._finished
            mark = "<b style='color:#2563eb'>streaming</b>" if live else "streamed"
            item = f" item {index}" if index is not None else ""
            retried = f" attempt {attempt}" if attempt > 1 else ""
            rows.append(
                f"<div class='wfk-stream'><code>{html.escape(step)}</code> #{visit}{item}{retried} {mark}: "
                f"<span style='white-space:pre-wrap'>{html.escape(redact_text(text))}</span></div>"
            )
        self.tokens.value = "".join(rows)

    def _steps(self) -> list[tuple[str, int]]:
        """The settled steps in order, as (label, row position in history())."""
        history = self.run.history()
        return [(f"{row.step} #{row.visit}", i) for i, row in enumerate(history.itertuples())]

    def _render_steps(self) -> None:
        options = self._steps()
        if [o[0] for o in options] != [o[0] for o in self.step_picker.options]:
            chosen = self.step_picker.value
            self.step_picker.options = options
            self.step_picker.value = chosen if chosen is not None and chosen < len(options) else None
        self._render_step()

    def _render_step(self) -> None:
        position = self.step_picker.value
        if position is None:
            self.step_detail.value = ""
            return
        history = self.run.history()
        if position >= len(history):
            self.step_detail.value = ""
            return
        row = history.iloc[position]
        before = history.iloc[position - 1]["state"] if position > 0 else self.run.inputs
        read = html.escape(redact_text(json.dumps(before, indent=2, default=str)))
        wrote = html.escape(redact_text(json.dumps(row["updates"], indent=2, default=str)))
        route = f" -> {html.escape(str(row['route']))}" if row["route"] else ""
        self.step_detail.value = (
            f"<div class='wfk-step-detail'><b>{html.escape(row['step'])}</b> #{row['visit']} "
            f"({html.escape(row['outcome'])}{route})<br>state before it:"
            f"<pre style='max-height:12em;overflow:auto'>{read}</pre>wrote:"
            f"<pre style='max-height:12em;overflow:auto'>{wrote}</pre></div>"
        )

    def _decider(self, ticket: Ticket) -> Decide:
        def decide(decision: str, by: str, comment: str) -> Ticket | None:
            if decision == "approve":
                self.run.approve(by=by, comment=comment, step=ticket.step)
            else:
                self.run.reject(by=by, comment=comment, step=ticket.step)
            stored = _stored_ticket(self.run, ticket.ticket_id)
            # On a running loop the run's task writes the decision (the loop never waits for the
            # store): still open here means under way, and the panel shows what was asked.
            return None if stored.is_open else stored

        return decide

    def _render_state(self) -> None:
        if self.state_button.value:
            # The same boundary as the store: a secret in the state never reaches the page.
            text = redact_text(json.dumps(self.run.state, indent=2, default=str))
            self.state.value = f"<pre style='max-height:20em;overflow:auto'>{html.escape(text)}</pre>"
        else:
            self.state.value = ""


def _stored_ticket(run: Run, ticket_id: str) -> Ticket:
    """The ticket as stored now (decided), for the panel to show and lock."""
    return next(t for t in run.tickets(status=None) if t.ticket_id == ticket_id)


class PendingView(w.VBox):  # type: ignore[misc]
    """Every open ticket of a workspace, each with its panel (also after a kernel restart)."""

    def __init__(
        self,
        workspace: Workspace,
        tickets: list[Ticket],
        resume: Callable[[Ticket], str | None],
        runs: Callable[[str], Run | None] | None = None,
        graphs: Callable[[str], Graph | None] | None = None,
    ) -> None:
        """``resume``: continues a decided ticket's run (decided here, or found decided elsewhere:
        then what it returns shows below the decision, see :class:`ApprovalPanel`'s ``elsewhere``).
        ``runs``: the handle this process holds of a ticket's run, if any: the view follows its
        events, so a ticket decided elsewhere (the run's own view, ``run.approve``) closes here too.
        ``graphs``: a workflow's graph by name, if this process defines it (for what a decision
        leads to)."""
        self.workspace = workspace
        self._resume = resume
        self._loop = _loop()
        self._open = {t.ticket_id for t in tickets if t.is_open}
        self.header = w.HTML()
        self._count()
        self._panels = {
            t.ticket_id: ApprovalPanel(
                t,
                self._decider(t),
                functools.partial(workspace.ticket, t.ticket_id),
                functools.partial(self._closed, t.ticket_id),
                None if graphs is None else graphs(t.workflow),
                resume,
            )
            for t in tickets
        }
        super().__init__([self.header, *self._panels.values()])
        followed: set[int] = set()
        for ticket in tickets:
            run = None if runs is None else runs(ticket.run_id)
            if run is not None and id(run) not in followed:
                followed.add(id(run))
                run.subscribe(self._on_event)

    def _count(self) -> None:
        self.header.value = (
            f"<b>{len(self._open)} open approval ticket(s)</b> in {html.escape(str(self.workspace.path))}"
        )

    def _on_event(self, item: StepEvent | None) -> None:
        decided = _decision_of(item)
        panel = None if decided is None else self._panels.get(decided[0])
        if decided is None or panel is None:
            return
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(panel.show_decision, *decided[1])
        else:
            panel.show_decision(*decided[1])

    def _closed(self, ticket_id: str) -> None:
        self._open.discard(ticket_id)
        self._count()

    def _decider(self, ticket: Ticket) -> Decide:
        def decide(decision: str, by: str, comment: str) -> Ticket:
            decided, _ = self.workspace.decide(
                ticket.ticket_id,
                decision,  # type: ignore[arg-type]
                by=by,
                comment=comment,
                resume=False,  # resumed just below, by the callable this view was handed
            )
            self._resume(decided)  # unchanged too: decided elsewhere, the run may still wait for it
            return decided  # the panel shows it, and tells this view it is closed

        return decide
