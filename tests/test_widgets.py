"""The notebook widgets, driven in-process: panels decide once, the live view follows its run."""

from __future__ import annotations

import asyncio
import base64
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest

import wfkit as wf
from wfkit.model._approvals import Ticket
from wfkit.model._graphview import STATUS_COLORS
from wfkit.notebook._widgets import ApprovalPanel, PendingView, RunView


def _ticket(status: str = "open") -> Ticket:
    return Ticket(
        "t1",
        "r1",
        "refunds",
        "refund",
        1,
        "Refunds need a human",
        {"amount": 120},
        status,
        None if status == "open" else "zoe",
        None,
        0.0,
        None,
    )


def test_panel_shows_reason_and_payload_and_decides_once() -> None:
    """A click calls the decision once; the buttons disable; a second click does nothing."""
    calls: list[tuple[str, str, str]] = []
    panel = ApprovalPanel(_ticket(), lambda d, by, c: calls.append((d, by, c)))
    assert "Refunds need a human" in panel.children[0].value
    assert "&quot;amount&quot;: 120" in panel.children[0].value
    panel.reviewer.value = "alice"
    panel.comment.value = "fine"
    panel.approve_button.click()
    panel.reject_button.click()
    assert [("approve", "alice", "fine")] == calls
    assert panel.approve_button.disabled
    assert panel.reject_button.disabled
    assert "approved" in panel.result.value


def test_panel_needs_a_reviewer_name() -> None:
    """Without a reviewer name nothing is decided and the panel says why."""
    calls: list[Any] = []
    panel = ApprovalPanel(_ticket(), lambda *a: calls.append(a))
    panel.reviewer.value = "  "
    panel.approve_button.click()
    assert [] == calls
    assert "reviewer" in panel.result.value
    assert not panel.approve_button.disabled


def test_panel_shows_a_refused_decision() -> None:
    """A decision the store refuses (ticket closed elsewhere) is shown, not swallowed."""

    def refuse(*_: Any) -> None:
        raise wf.TicketError("ticket t1 was already rejected by bob")

    panel = ApprovalPanel(_ticket(), refuse)
    panel.reviewer.value = "alice"
    panel.approve_button.click()
    assert "already rejected by bob" in panel.result.value


def test_closed_ticket_panel_is_read_only_and_says_its_decision_once() -> None:
    """A ticket decided earlier renders with its decision in the header and no live buttons; the
    line under the buttons does not say the decision again (it repeated the header's first words)."""
    panel = ApprovalPanel(_ticket("approved"), lambda *a: None)
    assert panel.approve_button.disabled
    assert _title(panel).startswith("Approved by zoe (gate refund, visit 1, of workflow refunds")
    assert "" == panel.result.value


def _eventually(check: Any, seconds: float = 5.0) -> None:
    """Wait (up to ``seconds``) until ``check()`` holds: a view redraws a moment after its run's events."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def _gated_flow() -> wf.Workflow:
    flow = wf.Workflow("widget-refunds")
    flow.step(lambda s: {"amount": s["amount"]}, name="quote")
    flow.step(lambda s: {"refunded": s["amount"]}, name="refund", approval="Refunds need a human")
    flow.chain("quote", "refund")
    return flow


def test_run_view_gets_a_panel_and_the_click_resumes_the_run() -> None:
    """A halted run's view shows its ticket; approving there resumes and finishes the run."""
    run = _gated_flow().run({"amount": 70})
    view = RunView(run)
    assert "waiting_approval" in view.summary.value
    assert view.graph.value.startswith("<svg")
    [panel] = view.approvals.children
    panel.reviewer.value = "carol"
    panel.approve_button.click()
    run.wait(10)
    _eventually(lambda: "succeeded" in view.summary.value)  # the view redraws on the kernel's loop
    assert "succeeded" == run.status
    assert 70 == run.state["refunded"]
    assert "succeeded" in view.summary.value
    view.state_button.value = True
    assert "refunded" in view.state.value


def test_run_view_approving_a_gate_rejected_in_a_shell_says_the_run_waits_for_a_resume() -> None:
    """The panel's Approve on a ticket `wfkit reject` decided in a shell is refused, saying who
    rejected it and that the run waits for a resume, which then follows the rejection."""
    import subprocess
    import sys

    run = _gated_flow().run({"amount": 70})
    view = RunView(run)
    [panel] = view.approvals.children
    command = [sys.executable, "-m", "wfkit", "reject", panel.ticket.ticket_id, "--by", "alice"]
    subprocess.run(command, check=True, capture_output=True)
    panel.reviewer.value = "carol"
    panel.approve_button.click()
    assert "already rejected by alice at " in panel.result.value
    assert f"Run {run.run_id} waits at &#x27;refund&#x27; until it is resumed" in panel.result.value
    assert "and then follows the rejection" in panel.result.value
    assert "waiting_approval" == run.status


def _shell(decision: str, ticket_id: str, by: str) -> None:
    """Decide a ticket as a shell does: `wfkit approve|reject TICKET --by NAME`, another process."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "wfkit", decision, ticket_id, "--by", by], check=True, capture_output=True)


def test_a_gate_decided_in_a_shell_continues_the_run_waiting_in_this_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wfkit approve` in a shell closes the displayed run's panel (it re-reads its ticket on the
    kernel's loop), and the run that waits in this kernel goes on, as after a click there: the view
    and the handle end "succeeded" and the panel says the run continues here (it stayed
    "waiting_approval", and nothing said what to do)."""
    from wfkit.notebook._renderer import _views

    monkeypatch.setenv("WFKIT_MODE", "interactive")
    monkeypatch.setattr(ApprovalPanel, "RECHECK_S", 0.1)
    flow = _gated_flow()

    async def scenario() -> tuple[wf.Run, RunView]:
        run = flow.start({"amount": 70})
        await run  # halted at the gate; the cell is free
        run._repr_mimebundle_()  # displayed, as a notebook shows it: its live view
        view = _views[run]
        [panel] = view.approvals.children
        await asyncio.to_thread(_shell, "approve", panel.ticket.ticket_id, "alice")
        # The panel re-reads its ticket on this loop, so wait in a thread.
        await asyncio.to_thread(_eventually, lambda: run.status == "succeeded", 10)
        await run
        await asyncio.sleep(0.2)  # the view's last coalesced redraw
        return run, view

    run, view = asyncio.run(scenario())
    assert "succeeded" == run.status
    assert 70 == run.state["refunded"]
    assert "succeeded" in view.summary.value
    [panel] = view.approvals.children
    assert _title(panel).startswith("Approved by alice at ")
    assert panel.result.value.startswith(f"Run {run.run_id} continues in this kernel")


def test_two_panels_of_a_ticket_decided_elsewhere_resume_its_run_once() -> None:
    """The run's own panel and wf.pending()'s both find the shell's decision in the same turn of the
    loop: the run continues once, through the handle its owner holds (a second resume would be
    refused by the first one's claim and end that handle's task with a LeaseError)."""
    from wfkit.notebook._pending import resume_after_decision

    flow = _gated_flow()

    async def scenario() -> tuple[wf.Run, list[str]]:
        run = flow.start({"amount": 50})
        await run
        view = RunView(run, elsewhere=lambda t: resume_after_decision(wf.Workspace(t.workspace), t))
        pending = wf.pending()
        listing = PendingView(pending.workspace, pending.tickets, lambda t: resume_after_decision(pending.workspace, t))
        panels = [view.approvals.children[0], listing.children[1]]
        await asyncio.to_thread(_shell, "approve", panels[0].ticket.ticket_id, "alice")
        for panel in panels:
            panel._recheck()
        await run
        return run, [p.result.value for p in panels]

    run, said = asyncio.run(scenario())
    assert "succeeded" == run.status
    assert 50 == run.state["refunded"]
    assert [1] == [e.attempt for e in run.events if e.step == "refund" and e.status == "ok"]
    for value in said:
        assert f"Run {run.run_id} continues in this kernel." in value


def test_a_panel_says_how_to_continue_a_run_whose_workflow_this_kernel_lacks(workspace: Any) -> None:
    """A ticket of a run another process started, listed in wf.pending() here and approved in a shell:
    this kernel cannot continue the run (it does not define the workflow), so the panel says how to;
    doing that (define the workflow, `flow.resume(RUN)`) finishes the run."""
    import subprocess
    import sys

    define = (
        "import wfkit as wf\n"
        "flow = wf.Workflow('defined-elsewhere')\n"
        "flow.step(lambda s: {'amount': s['amount']}, name='quote')\n"
        "flow.step(lambda s: {'refunded': s['amount']}, name='refund', approval='Refunds need a human')\n"
        "flow.chain('quote', 'refund')\n"
    )
    subprocess.run([sys.executable, "-c", define + "flow.run({'amount': 60})"], check=True, capture_output=True)
    pending = wf.pending()
    [ticket] = pending.tickets
    from wfkit.notebook._pending import resume_after_decision

    view = PendingView(pending.workspace, pending.tickets, lambda t: resume_after_decision(pending.workspace, t))
    panel = view.children[1]
    _shell("approve", ticket.ticket_id, "alice")
    panel._recheck()
    assert _title(panel).startswith("Approved by alice at ")
    assert (
        f"Run {ticket.run_id} waits at &#x27;refund&#x27;: this kernel does not define workflow "
        f"&#x27;defined-elsewhere&#x27;, so it cannot continue it. Run the cells that define it here, then "
        f"<code>flow.resume(&#x27;{ticket.run_id}&#x27;)</code>"
    ) in panel.result.value
    assert panel.result.value.startswith(f"Run {ticket.run_id} waits")  # the decision is in the header only

    namespace: dict[str, Any] = {}
    exec(define, namespace)  # what the panel says: the workflow's cells, then its resume
    run = namespace["flow"].resume(ticket.run_id)
    assert "succeeded" == run.status
    assert 60 == run.state["refunded"]


def _row_of(view: RunView, step: str) -> list[str]:
    """The cells of ``step``'s row in the view's step table, as shown (HTML entities decoded)."""
    page = view.summary.value
    table = ET.fromstring(page[page.index("<table") : page.index("</table>") + len("</table>")])
    return next([td.text or "" for td in tr.findall("td")] for tr in table.iter("tr") if tr.findtext("td") == step)


def _title(panel: ApprovalPanel) -> str:
    """The first line of a panel's header, as shown (tags dropped, entities decoded)."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", panel.children[0].value.split("<br>", 1)[0]))


def test_a_decided_panels_header_says_who_decided_it_and_when() -> None:
    """Decided in the run's view, or in a shell (the panel re-reads its ticket), the panel's header
    says "Approved by bob at TIME" / "Rejected by alice at TIME", no longer "Approval needed" in
    bold above the decision (a reviewer scrolling past took a decided gate for an open one)."""
    import subprocess
    import sys

    flow = _gated_flow()
    run = flow.run({"amount": 70})
    view = RunView(run)
    [panel] = view.approvals.children
    assert _title(panel).startswith("Approval needed at refund (visit 1) of workflow widget-refunds, asked ")
    panel.reviewer.value = "bob"
    panel.comment.value = "under <100>"
    panel.approve_button.click()
    run.wait(10)
    _eventually(lambda: "Approval needed" not in _title(panel))
    decided = wf.Workspace().ticket(panel.ticket.ticket_id)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decided.decided_at))
    assert _title(panel).startswith(f"Approved by bob at {when}: under <100> (gate refund, visit 1, of workflow ")
    assert "Approval needed" not in panel.children[0].value

    other = flow.run({"amount": 80})
    [shell] = RunView(other).approvals.children
    command = [sys.executable, "-m", "wfkit", "reject", shell.ticket.ticket_id, "--by", "alice"]
    subprocess.run(command, check=True, capture_output=True)
    shell._recheck()  # what the kernel's loop does every RECHECK_S seconds
    decided = wf.Workspace().ticket(shell.ticket.ticket_id)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decided.decided_at))
    assert _title(shell).startswith(f"Rejected by alice at {when} (gate refund, visit 1, of workflow ")


def test_run_view_shows_the_gates_decision_after_the_approved_step_ran() -> None:
    """Approved in the view, the gate step's row shows the decision, who made it and the note in the
    "error / decision" column once the step has run (the column was empty then)."""
    run = _gated_flow().run({"amount": 40})
    view = RunView(run)
    [panel] = view.approvals.children
    panel.reviewer.value = "carol"
    panel.comment.value = "under <50>, fine"
    panel.approve_button.click()
    run.wait(10)
    _eventually(lambda: "succeeded" in view.summary.value)
    assert ["refund", "1", "ok", "1"] == _row_of(view, "refund")[:4]
    assert "approved by carol: under <50>, fine" == _row_of(view, "refund")[-1]
    assert "" == _row_of(view, "quote")[-1]


def test_a_decision_in_the_pending_panel_closes_the_run_views_own_panel() -> None:
    """Approved in the pending panel, the run the view shows resumes through its handle: the view
    ends "succeeded" and its own approval panel says who approved it, its buttons gone (they stayed
    live under "Approval needed", and a click then said the ticket was already decided)."""
    from wfkit.notebook._pending import resume_after_decision

    run = _gated_flow().run({"amount": 90})
    view = RunView(run)
    [panel] = view.approvals.children
    assert not panel.approve_button.disabled
    pending = wf.pending()
    elsewhere = PendingView(pending.workspace, pending.tickets, lambda t: resume_after_decision(pending.workspace, t))
    other = elsewhere.children[1]
    other.reviewer.value = "dan"
    other.comment.value = "fine"
    other.approve_button.click()
    run.wait(10)
    _eventually(lambda: "by dan" in _title(panel))
    assert "succeeded" in view.summary.value
    assert panel.approve_button.disabled
    assert panel.reject_button.disabled
    assert _title(panel).startswith("Approved by dan at ")
    assert ": fine (gate refund" in _title(panel)
    assert "" == panel.result.value  # said once, in the header
    assert 90 == run.state["refunded"]


def test_a_decision_in_the_run_view_closes_the_pending_panels_ticket() -> None:
    """The other way round: approved in the run's own view, the ticket's panel in wf.pending()'s view
    says so and the view counts one open ticket fewer (it kept "1 open approval ticket(s)" with live
    buttons)."""
    run = _gated_flow().run({"amount": 30})
    view = RunView(run)
    elsewhere = wf.pending()._repr_mimebundle_()  # headless: a table, no widget
    assert "1 open approval ticket(s)" in elsewhere["text/html"]
    pending = wf.pending()
    from wfkit.engine._run import held_handle

    listing = PendingView(pending.workspace, pending.tickets, lambda t: None, held_handle)
    [panel] = view.approvals.children
    panel.reviewer.value = "carol"
    panel.approve_button.click()
    run.wait(10)
    other = listing.children[1]
    assert _title(other).startswith("Approved by carol at ")
    assert "" == other.result.value
    assert other.approve_button.disabled
    assert listing.header.value.startswith("<b>0 open approval ticket(s)</b>")


def test_pending_view_decides_from_the_workspace() -> None:
    """PendingView lists every open ticket; a decision there is recorded and handed on to resume."""
    flow = _gated_flow()
    runs = [flow.run({"amount": a}) for a in (10, 20)]
    resumed: list[str] = []
    pending = wf.pending()
    assert 2 == len(pending)
    view = PendingView(pending.workspace, pending.tickets, lambda t: resumed.append(t.run_id))
    first = view.children[1]
    first.reviewer.value = "dan"
    first.reject_button.click()
    assert [pending.tickets[0].run_id] == resumed
    assert "rejected" == wf.Workspace().ticket(pending.tickets[0].ticket_id).status
    assert {r.run_id for r in runs} == {t.run_id for t in pending}
    assert "2 open approval ticket(s)" in pending._repr_html_()
    assert "ticket " in repr(pending)


def test_pending_after_restart_resumes_with_a_redefined_workflow() -> None:
    """After a "restart" (a fresh handle), deciding in wfkit.pending() resumes the run."""
    from wfkit.notebook._pending import resume_after_decision

    flow = _gated_flow()
    run = flow.run({"amount": 30})
    [ticket] = wf.pending().tickets
    decided, _ = wf.Workspace().decide(ticket.ticket_id, "approve", by="erin")
    resume_after_decision(wf.Workspace(), decided)
    deadline = time.monotonic() + 10
    while wf.Workspace().run_info(run.run_id)["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "succeeded" == wf.Workspace().run_info(run.run_id)["status"]


@pytest.mark.parametrize("mode", ["headless"])
def test_run_displays_as_html_and_text_headless(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headless a run shows as an HTML table with its graph and as plain text."""
    monkeypatch.setenv("WFKIT_MODE", mode)
    run = _gated_flow().run({"amount": 5})
    bundle = run._repr_mimebundle_()
    assert "waiting for approval: ticket" in bundle["text/plain"]
    assert "<table" in bundle["text/html"]
    # The graph is an image (JupyterLab keeps it in notebooks it does not trust; inline SVG it strips),
    # coloured by the run's statuses, with the graph as text for alt.
    assert "<svg" not in bundle["text/html"]
    data = bundle["text/html"].split('src="data:image/svg+xml;base64,', 1)[1].split('"', 1)[0]
    svg = base64.b64decode(data).decode()
    ET.fromstring(svg)
    assert STATUS_COLORS["waiting_approval"][0] in svg
    assert "workflow &#x27;widget-refunds&#x27; (entry: quote)" in bundle["text/html"]


def test_an_interactive_run_displays_one_live_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interactive, a run displays as a widget; displaying it again shows the same view, and text stays."""
    monkeypatch.setenv("WFKIT_MODE", "interactive")
    run = _gated_flow().run({"amount": 5}, policy="halt")
    first, second = run._repr_mimebundle_(), run._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in first
    assert first["application/vnd.jupyter.widget-view+json"] == second["application/vnd.jupyter.widget-view+json"]
    assert "waiting for approval" in first["text/plain"]


def _storyteller() -> wf.Workflow:
    flow = wf.Workflow("widget-story")

    @flow.step
    def outline(state: Any) -> dict[str, Any]:
        return {"plan": f"a story about {state['topic']}"}

    @flow.step
    async def tell(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        for piece in ("Once ", "upon ", "a <time>"):
            ctx.chunk(piece)
            await asyncio.sleep(0.05)
        return {"story": "Once upon a <time>"}

    flow.edge("outline", "tell")
    return flow


def test_run_view_shows_tokens_arriving_in_the_step_that_streams_them() -> None:
    """While `tell` streams, the view shows its text so far, marked live; afterwards, marked streamed."""
    flow = _storyteller()
    seen: list[str] = []

    async def watch() -> RunView:
        run = flow.start({"topic": "cats"}, workspace=False)
        view = RunView(run)
        while not run.done():
            await asyncio.sleep(0.01)
            seen.append(view.tokens.value)
        await run
        await asyncio.sleep(0.1)  # the last coalesced redraw
        return view

    view = asyncio.run(watch())
    live = [v for v in seen if "streaming" in v]
    assert live, seen
    first = (
        "<code>tell</code> #1 <b style='color:#2563eb'>streaming</b>: <span style='white-space:pre-wrap'>Once </span>"
    )
    assert any(first in v for v in live)
    assert (
        "<code>tell</code> #1 streamed: <span style='white-space:pre-wrap'>Once upon a &lt;time&gt;</span>"
        in view.tokens.value
    )


def test_run_view_shows_a_retried_stream_once_not_after_the_text_of_the_attempt_cut_off() -> None:
    """A stream cut off by the server and asked again by the step's retry shows the retry's text,
    marked with its attempt: the view showed the cut attempt's words and then the retry's after
    them, "reply to: one reply to: one two three", a reply the model never gave."""
    from llm_server import LLMServer

    flow = wf.Workflow("streamer")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, jitter=0))
    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        async with ctx.llm.stream("one two three", ctx=ctx) as stream:
            return {"answer": "".join([t async for t in stream])}

    async def watch(client: wf.llm.ChatClient) -> RunView:
        run = flow.start({}, workspace=False, llm=client)
        view = RunView(run)
        await run
        await asyncio.sleep(0.1)  # the last coalesced redraw
        return view

    with LLMServer() as server:
        server.script(("cut_stream", 3), "ok")
        view = asyncio.run(watch(wf.llm.ChatClient(server.url, model="test-model")))
    assert [("retry", 1), ("ok", 2)] == [(e.status, e.attempt) for e in view.run.events]
    assert (
        "<code>ask</code> #1 attempt 2 streamed: <span style='white-space:pre-wrap'>reply to: one two three </span>"
        in view.tokens.value
    ), view.tokens.value


def test_run_view_shows_each_map_items_stream_apart() -> None:
    """Three items of a map streaming at once each get their own line, marked with the item: the
    view keyed streamed text by step and visit only, so the items' words ran into one text."""
    from llm_server import LLMServer

    flow = wf.Workflow("fanout", inputs=["topics"])

    @flow.map(over="topics", into="answers")
    async def ask(topic: str, ctx: wf.StepContext) -> str:
        async with ctx.llm.stream(topic, ctx=ctx) as stream:
            return "".join([t async for t in stream])

    async def watch(client: wf.llm.ChatClient) -> RunView:
        run = flow.start({"topics": ["alpha beta", "gamma delta", "epsilon zeta"]}, workspace=False, llm=client)
        view = RunView(run)
        await run
        await asyncio.sleep(0.1)  # the last coalesced redraw
        return view

    with LLMServer(stream_gap=0.02) as server:
        view = asyncio.run(watch(wf.llm.ChatClient(server.url, model="test-model")))
    assert "succeeded" == view.run.status
    rows = view.tokens.value.split("</div>")[:-1]
    assert [
        f"<div class='wfk-stream'><code>ask</code> #1 item {i} streamed: "
        f"<span style='white-space:pre-wrap'>reply to: {topic} </span>"
        for i, topic in enumerate(["alpha beta", "gamma delta", "epsilon zeta"])
    ] == sorted(rows)


def test_run_view_shows_what_a_selected_step_read_and_wrote() -> None:
    """Choosing a step in the picker shows the state before it and the fields it wrote."""
    flow = _storyteller()
    run = flow.run({"topic": "cats"}, workspace=False)
    view = RunView(run)
    assert [("outline #1", 0), ("tell #1", 1)] == list(view.step_picker.options)
    view.step_picker.value = 0
    assert "state before it:" in view.step_detail.value
    assert "&quot;topic&quot;: &quot;cats&quot;" in view.step_detail.value
    assert "&quot;plan&quot;: &quot;a story about cats&quot;" in view.step_detail.value
    view.step_picker.value = 1
    before, wrote = view.step_detail.value.split("wrote:")
    assert "&quot;plan&quot;" in before
    assert "&quot;story&quot;" not in before
    assert "&quot;story&quot;: &quot;Once upon a &lt;time&gt;&quot;" in wrote


def test_run_view_expands_a_sub_workflow_coloured_by_its_events(workspace: Any) -> None:
    """With expand=True the graph holds the child's frame, its steps coloured by the child's events."""
    child = wf.Workflow("widget-child", inputs=["x"])
    child.step(lambda s: {"y": s["x"] * 2}, name="double")
    parent = wf.Workflow("widget-parent")
    parent.step(lambda s: {"x": 2}, name="start")
    parent.subflow(child, name="inner", inputs={"x": "x"}, outputs={"y": "y"})
    parent.edge("start", "inner")

    async def watch() -> RunView:
        run = parent.start({}, workspace=workspace)  # a task on this loop: the view subscribes before it runs
        view = RunView(run, expand=True)
        await run
        view.refresh()
        return view

    svg = asyncio.run(watch()).graph.value
    assert "step inner runs workflow widget-child" in svg
    panel = svg.split('class="wfk-subflow-panel"', 1)[1]
    assert 'fill="#dcfce7"' in panel  # the child's step drawn ok (green), from the child's own events


def test_run_view_step_detail_passes_the_redaction_boundary() -> None:
    """A key-shaped string a step read or wrote shows as [REDACTED] in the step inspector, never raw."""
    key = "sk-" + "b2" * 12
    flow = wf.Workflow("leaky-view")

    @flow.step
    def echo(state: dict[str, Any]) -> dict[str, Any]:
        return {"reply": f"the key is {key}"}

    run = flow.run({"prompt": f"use {key}"}, workspace=False)
    view = RunView(run)
    view.step_picker.value = 0
    assert key not in view.step_detail.value
    assert "[REDACTED]" in view.step_detail.value


def _note(view: Any) -> str:
    """What a view's note for after a kernel restart says, as shown (its CSS, tags dropped, entities decoded)."""
    import html
    import re

    [note] = [c for c in view.children if "wfk-restarted" in c._dom_classes]
    return html.unescape(re.sub(r"<[^>]+>", "", note.value.split("</style>", 1)[1]))


def test_a_run_views_note_for_after_a_kernel_restart_says_where_to_see_the_run_now() -> None:
    """A run's view holds, first, a note that shows once JupyterLab marks the view disconnected (a
    kernel restart left its "waiting_approval" and graph looking live): it stopped updating, and
    what it names shows the run now. The view is marked live only until the run ends."""
    import subprocess
    import sys

    run = _gated_flow().run({"amount": 70})
    view = RunView(run)
    assert "wfk-restarted" in view.children[0]._dom_classes
    assert "wfk-live" in view._dom_classes
    said = _note(view)
    assert f"The kernel restarted: this view of run {run.run_id} stopped updating then" in said
    assert f"wf.Workspace().run_info('{run.run_id}') in a cell, or wfkit show {run.run_id} in a shell" in said
    assert "waiting_approval" == wf.Workspace().run_info(run.run_id)["status"]
    shown = subprocess.run(
        [sys.executable, "-m", "wfkit", "show", run.run_id], check=True, capture_output=True, text=True
    ).stdout
    assert run.run_id in shown
    assert "waiting_approval" in shown

    [panel] = view.approvals.children
    panel.reviewer.value = "carol"
    panel.approve_button.click()
    run.wait(10)
    _eventually(lambda: "wfk-live" not in view._dom_classes)
    assert "succeeded" == run.status
    assert "wfk-live" not in view._dom_classes  # a finished run's view stays true: no note

    unkept = RunView(_storyteller().run({"topic": "cats"}, workspace=False))
    assert "The run kept no workspace, so it ended with that kernel." in _note(unkept)


def test_a_decided_panel_says_only_what_the_decision_led_to() -> None:
    """Open, the panel says what each decision would lead to; decided (here, or in a shell and found
    on a re-read), only what the decision led to: "If approved: ... If rejected: ..." read as if the
    choice were still open."""
    import html
    import re

    flow = wf.Workflow("widget-revise")
    flow.step(lambda s: {"amount": s["amount"]}, name="quote")
    flow.step(lambda s: {"refunded": s["amount"]}, name="refund", approval=wf.Approval("Big", on_reject="explain"))
    flow.step(lambda s: {"refunded": 0}, name="explain")
    flow.chain("quote", "refund")

    def outcome(panel: ApprovalPanel) -> str:
        header = panel.children[0].value
        return html.unescape(re.sub(r"<[^>]+>", "", header.split("class='wfk-gate-outcomes'>", 1)[1]))

    approved = flow.run({"amount": 70})
    [panel] = RunView(approved).approvals.children
    assert "If approved: refund runs. If rejected: the run goes on at explain." == outcome(panel)
    panel.reviewer.value = "bob"
    panel.approve_button.click()
    approved.wait(10)
    _eventually(lambda: "If rejected" not in outcome(panel))
    assert "Approved: refund runs." == outcome(panel)

    rejected = flow.run({"amount": 80})
    [shell] = RunView(rejected).approvals.children
    _shell("reject", shell.ticket.ticket_id, "alice")
    shell._recheck()  # what the kernel's loop does every RECHECK_S seconds
    assert "Rejected: the run goes on at explain." == outcome(shell)

    failing = _gated_flow().run({"amount": 90})
    [fails] = RunView(failing).approvals.children
    _shell("reject", fails.ticket.ticket_id, "alice")
    fails._recheck()
    assert "Rejected: the run fails." == outcome(fails)


def test_every_open_panel_of_a_ticket_decided_elsewhere_says_the_run_continues_here() -> None:
    """A shell's decision found by wf.pending()'s panel (its re-read came first) continues the run
    here: the run's own panel, closed by the run's decision event, says so too (it showed only the
    decision, while "Run R continues in this kernel" stood on whichever panel re-read first)."""
    from wfkit.notebook._pending import resume_after_decision

    flow = _gated_flow()

    async def scenario() -> tuple[wf.Run, list[str]]:
        run = flow.start({"amount": 60})
        await run
        view = RunView(run, elsewhere=lambda t: resume_after_decision(wf.Workspace(t.workspace), t))
        pending = wf.pending()
        listing = PendingView(pending.workspace, pending.tickets, lambda t: resume_after_decision(pending.workspace, t))
        panels = [listing.children[1], view.approvals.children[0]]
        await asyncio.to_thread(_shell, "approve", panels[0].ticket.ticket_id, "alice")
        panels[0]._recheck()  # wf.pending()'s panel re-reads first; the run's own never gets to
        await run
        await asyncio.sleep(0.2)  # the view's last coalesced redraw, which shows the run's decision event
        return run, [(_title(p), p.result.value) for p in panels]

    run, said = asyncio.run(scenario())
    assert "succeeded" == run.status
    for title, value in said:
        assert title.startswith("Approved by alice at ")
        assert f"Run {run.run_id} continues in this kernel." == value


def test_a_stale_panels_click_on_a_gate_decided_elsewhere_shows_the_decision_taken() -> None:
    """A click on a panel whose ticket was decided meanwhile (in a shell, before the panel re-read
    it) shows in its header who decided it and when, and says under the buttons that this click
    changed nothing (the same decision) or was refused (the other): the run's own panel and the
    pending panel alike (the header still read "Approval needed" after a refusal, and a click the
    same way said nothing of the earlier decision)."""
    import functools

    from wfkit.notebook._pending import resume_after_decision

    flow = _gated_flow()
    for shell, click in (("approve", "approve"), ("reject", "approve"), ("reject", "reject")):
        for where in ("run view", "pending"):
            run = flow.run({"amount": 70})
            if where == "run view":
                [panel] = RunView(run).approvals.children
            else:
                pending = wf.pending()
                resume = functools.partial(resume_after_decision, pending.workspace)
                listing = PendingView(pending.workspace, pending.tickets, resume)
                panel = listing.children[1]
            _shell(shell, panel.ticket.ticket_id, "alice")
            decided = wf.Workspace().ticket(panel.ticket.ticket_id)
            assert decided.decided_at is not None
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decided.decided_at))
            panel.reviewer.value = "carol"
            getattr(panel, f"{click}_button").click()
            verb = f"{shell}d" if shell == "approve" else "rejected"
            case = (shell, click, where)
            assert _title(panel).startswith(f"{verb.capitalize()} by alice at {when} (gate refund"), case
            already = f"ticket {decided.ticket_id} was already {verb} by alice at {when}"
            if shell == click:
                assert f"{already}: nothing changed" in panel.result.value, case
            else:
                assert f"{already}; a decision is applied once" in panel.result.value, case
            assert panel.approve_button.disabled, case
            assert panel.reject_button.disabled, case
            assert decided == wf.Workspace().ticket(decided.ticket_id), case
            if shell == "approve":
                run.wait(10)
