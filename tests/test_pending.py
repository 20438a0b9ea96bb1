"""wfkit.pending(): open tickets of the workspace, with text, HTML and widget forms."""

from __future__ import annotations

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
