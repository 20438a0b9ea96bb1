"""wfkit.pending(): open tickets of the workspace, with text, HTML and widget forms."""

from __future__ import annotations

from pathlib import Path

import wfkit as wf


def test_empty_workspace_says_so() -> None:
    """With no tickets the text form says there are none."""
    wf.Workspace(create=True)
    pending = wf.pending()
    assert 0 == len(pending)
    assert "no open approval tickets" in repr(pending)


def test_tickets_are_listed_after_a_fresh_open() -> None:
    """Tickets come from the workspace, so a new handle (a restarted kernel) still lists them."""
    flow = wf.Workflow("pending-demo")
    flow.step(lambda s: None, name="gate", approval="Check this")
    run = flow.run({"who": "x"})
    pending = wf.pending()
    [ticket] = list(pending)
    assert (run.run_id, "gate", "Check this") == (ticket.run_id, ticket.step, ticket.reason)
    assert ticket is pending[0]
    bundle = pending._repr_mimebundle_()
    assert "Check this" in bundle["text/html"]
    assert "Check this" in bundle["text/plain"]


def test_a_headless_notebook_halted_at_a_gate_says_how_to_decide_it(tmp_path: Path, workspace: Path) -> None:
    """Notebook 04 under papermill with no policy halts grace's refund at its gate (nobody said
    yes): the open ticket it lists says how to decide it, and which policy a headless run takes."""
    import nbformat
    import papermill

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "04_approval_gates.ipynb"
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(notebook), str(out), parameters={"workspace": str(workspace)}, kernel_name="python3", cwd=str(tmp_path)
    )
    [ticket] = wf.pending(workspace)
    [listing] = [c for c in nbformat.read(out, as_version=4).cells if c.source == "wf.pending(workspace)"]
    shown = "".join(o.get("data", {}).get("text/plain", "") for o in listing.outputs)
    assert f"ticket {ticket.ticket_id}: run {ticket.run_id} of 'refunds', step 'refund'" in shown
    assert f"`wfkit approve {ticket.ticket_id} --by NAME`" in shown
    assert f"wf.pending().approve({ticket.ticket_id!r}, by=NAME)" in shown
    assert "policy='approve' or 'reject', or a decisions file" in shown


def test_a_ticket_of_another_workspace_says_how_to_decide_it_there(tmp_path: Path, workspace: Path) -> None:
    """A ticket listed from a workspace other than the default one (a notebook's `workspace`
    parameter) names that workspace in both ways it gives to decide it, so that each, copied, finds
    the ticket: `wf.pending(DIR)` in a kernel and `wfkit approve ... --workspace DIR` in a shell."""
    import re
    import shlex
    import subprocess
    import sys

    elsewhere = tmp_path / "team's runs"
    flow = wf.Workflow("pending-elsewhere")
    flow.step(lambda s: None, name="gate", approval="Check this")
    flow.run({}, workspace=elsewhere, policy="halt")
    [ticket] = wf.pending(elsewhere)
    shown = repr(wf.pending(elsewhere))
    assert f"wf.pending({str(elsewhere)!r}).approve({ticket.ticket_id!r}, by=NAME)" in shown
    [command] = re.findall(r"`(wfkit approve [^`]*)`", shown)
    assert f"wfkit approve {ticket.ticket_id} --workspace {shlex.quote(str(elsewhere))} --by NAME" == command
    argv = [sys.executable, "-m", *shlex.split(command.replace("NAME", "ana"))]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert 0 == done.returncode, done.stderr
    assert "approved" == wf.Workspace(elsewhere).ticket(ticket.ticket_id).status
