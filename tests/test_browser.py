"""The approval notebook in a real browser: JupyterLab, Debian's chromium, clicks on the panels.

Needs /usr/bin/chromium (``apt-get install chromium``; ``playwright install`` is not used) and the
``playwright`` Python package. It skips only when the browser is missing. The repository's
notebook and workspace are never touched: a copy of the notebook and the workspace live in the
test's tmp_path, and JupyterLab's settings, workspaces and runtime files in tmp_path/.jupyter.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browsers import CHROMIUM, VISIBLE, Lab, lab_page, run_notebook, wait_for

from wfkit.store._workspace import Workspace

# JupyterLab and chromium for every test: 10-30 s each (`pytest -m "not slow"` leaves them out).
pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_approval_gates.ipynb"

# How many pixels of an SVG drawing lie below the lowest thing drawn in it.
BLANK_UNDER = """(svg) => {
    let lowest = svg.getBoundingClientRect().top;
    for (const el of svg.querySelectorAll("rect, text, path, circle")) {
        if (!el.closest("defs")) lowest = Math.max(lowest, el.getBoundingClientRect().bottom);
    }
    return svg.getBoundingClientRect().bottom - lowest;
}"""


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_approval_notebook_in_a_browser(tmp_path: Path, workspace: Path, lab: Lab) -> None:
    """Run All in JupyterLab: ada's small refund (under the gate's threshold) goes through with no
    panel; grace's is rejected from its run's live panel, which decides once; the run resumes in the
    kernel and the workspace records who decided."""
    from playwright.sync_api import expect

    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    with lab_page(lab, {"width": 1400, "height": 1000}, tmp_path / "failure.png") as page:
        _scenario(page, expect, lab, workspace)


def _scenario(page: Page, expect: Any, lab: Lab, workspace: Path) -> None:
    notebook = run_notebook(page, lab, NOTEBOOK.name, expect)

    # What a learner reads first says, in two sentences, what the notebook shows and what to click.
    opening = notebook.locator(".jp-MarkdownCell .jp-RenderedMarkdown p").first
    expect(opening).to_contain_text("Approve")
    sentences = re.split(r"(?<=[.!?])\s+", opening.inner_text().strip())
    assert 2 >= len(sentences), sentences
    assert "Reject" in opening.inner_text()
    expect(opening.locator("mjx-container")).to_have_count(0)  # its amounts read as text, not typeset as math
    expect(opening).to_contain_text("(900)")

    # The live views of the two runs (cells `small = ...` and `large = ...`), one panel in each.
    ada_cell = notebook.locator(".jp-CodeCell", has_text="small = flow.start")
    grace_cell = notebook.locator(".jp-CodeCell", has_text="large = flow.start")

    def panel(cell: Locator) -> Locator:
        return cell.locator(".jp-OutputArea .wfk-approval")

    ada, grace = panel(ada_cell), panel(grace_cell)
    expect(grace).to_have_count(1, timeout=30_000)
    expect(grace).to_be_visible()
    expect(grace).to_contain_text('"customer": "grace"')
    expect(ada).to_have_count(0)  # $40 is under the gate's threshold: no ticket, no panel
    # What the reviewer's click leads to, in the run's panel and in wf.pending()'s.
    listed = panel(notebook.locator(".jp-CodeCell", has_text="wf.pending(workspace)"))
    for shown in (grace, listed):
        expect(shown).to_contain_text("workflow refunds")
        expect(shown).to_contain_text("If approved: refund runs (irreversible: it cannot be undone)")
        expect(shown).to_contain_text("If rejected: the run goes on at explain")

    grace.locator(".widget-text input").fill("bob")
    grace.locator("textarea").fill("too large for self-service")
    grace.get_by_role("button", name="Reject").click()  # the name includes the icon's glyph

    # Its header says so: a reviewer scrolling past must not take it for an open gate.
    header = grace.locator(".widget-html").first
    expect(header).to_contain_text(re.compile(r"^Rejected by bob at \S+ \S+ UTC: too large for self-service"))
    expect(header).not_to_contain_text("Approval needed")
    expect(grace.get_by_role("button", name="Approve")).to_be_disabled()
    expect(grace.get_by_role("button", name="Reject")).to_be_disabled()
    # Once: not again under the disabled buttons ("rejected by bob: too large..." repeated the header).
    assert 1 == grace.inner_text().count("by bob"), grace.inner_text()
    # Only what the decision led to, there and in wf.pending()'s panel: not the choice as if open.
    for shown in (grace, listed):
        expect(shown.locator(".wfk-gate-outcomes")).to_have_text("Rejected: the run goes on at explain.")
    header.scroll_into_view_if_needed()
    page.screenshot(path=str(workspace.parent / "decided-panel.png"))

    # The clicks resumed both runs in the kernel; the workspace says how they ended.
    ws = Workspace(workspace)

    def both_succeeded() -> dict[str, dict[str, Any]]:
        infos = [ws.run_info(row["run_id"]) for row in ws.runs()]
        done = {i["inputs"]["customer"]: i for i in infos if i["status"] == "succeeded"}
        return done if len(done) == 2 else {}

    runs = wait_for(both_succeeded, 10, "both runs to succeed in the workspace")
    assert 40 == runs["ada"]["state"]["refunded"]
    assert ["quote", "refund"] == [s["step"] for s in runs["ada"]["steps"]]
    assert 0 == runs["grace"]["state"]["refunded"]
    assert "explain" == runs["grace"]["steps"][-1]["step"]

    def decisions(customer: str) -> list[tuple[str, str | None, str | None]]:
        return [
            (e.status, e.approver, e.decision_comment)
            for e in ws.events(runs[customer]["run_id"])
            if e.status in ("approved", "rejected")
        ]

    assert [] == decisions("ada")
    assert [("rejected", "bob", "too large for self-service")] == decisions("grace")

    # The live views followed their runs to the end, with the steps done before the gate.
    for cell, steps in ((ada_cell, ["quote", "refund"]), (grace_cell, ["quote", "refund", "explain"])):
        expect(cell.locator(".jp-OutputArea .wfkit-run").first).to_contain_text("succeeded")
        expect(cell.locator(".jp-OutputArea .wfkit-steps tbody tr td:first-child")).to_have_text(steps)
        # Its graph ends under its lowest step: no blank band before the step picker (the drawing
        # kept a row for an end marker this workflow has none of).
        graph = cell.locator(".wfk-run-view svg").first
        assert 30 > graph.evaluate(BLANK_UNDER), "blank band under the graph"


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_an_executed_notebook_opened_later_shows_the_runs_graph(tmp_path: Path, workspace: Path, lab: Lab) -> None:
    """A notebook executed headless (nbclient, as papermill does) is not trusted when opened in
    JupyterLab, whose sanitizer strips inline SVG: the run's graph must still show, as a loaded image."""
    import nbformat
    from nbclient import NotebookClient
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    source = (
        "import wfkit as wf\n"
        "flow = wf.Workflow('shown-later')\n"
        "flow.step(lambda s: {'x': 1}, name='first')\n"
        "flow.step(lambda s: {'y': 2}, name='second')\n"
        "flow.chain('first', 'second')\n"
        f"run = flow.run({{}}, workspace={str(workspace)!r})\n"
        "run"
    )
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")

    with lab_page(lab, {"width": 1400, "height": 1000}, tmp_path / "failure.png") as page:
        page.goto(f"{lab.url}/lab/workspaces/t{secrets.token_hex(4)}/tree/executed.ipynb?reset&token={lab.token}")
        output = page.locator(VISIBLE).locator(".jp-OutputArea .wfkit-run")
        expect(output).to_contain_text("succeeded", timeout=30_000)
        graph = output.locator("img.wfk-graph")
        expect(graph).to_have_count(1)
        expect(graph).to_be_visible()
        assert 400 < graph.evaluate("img => img.naturalWidth")  # decoded and drawn, not a broken image
        assert "firstfirst" not in output.inner_text()  # not the SVG's labels left over as text


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_the_live_run_view_streams_tokens_and_inspects_a_step(tmp_path: Path, workspace: Path, lab: Lab) -> None:
    """Run All in JupyterLab: a started run's live view shows the text its step streamed, and
    choosing that step in the picker shows the state it read and the fields it wrote."""
    import nbformat
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    source = (
        "import wfkit as wf\n"
        "story = 'Once upon a time a retry saved the day.'\n"
        "llm = wf.llm.ChatClient(transport=wf.llm.SimulatedModel(p50=0.05, p99=0.1, seed=1, reply={'.': story}))\n"
        "flow = wf.Workflow('live-story')\n"
        "@flow.step\n"
        "def outline(state):\n"
        "    return {'plan': 'a story about ' + state['topic']}\n"
        "@flow.step\n"
        "async def tell(state, ctx):\n"
        "    async with ctx.llm.stream(state['plan']) as stream:\n"
        "        return {'story': ''.join([piece async for piece in stream])}\n"
        "flow.chain('outline', 'tell')\n"
        f"run = flow.start({{'topic': 'retries'}}, llm=llm, workspace={str(workspace)!r})\n"
        "run"
    )
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "live.ipynb")

    with lab_page(lab, {"width": 1400, "height": 1000}, tmp_path / "failure.png") as page:
        notebook = run_notebook(page, lab, "live.ipynb", expect)

        output = notebook.locator(".jp-OutputArea")
        expect(output.locator(".wfkit-run").first).to_contain_text("succeeded", timeout=60_000)
        expect(output).to_contain_text("tell #1 streamed: Once upon a time a retry saved the day.")
        picker = output.locator("select")
        expect(picker.locator("option")).to_have_text(["outline #1", "tell #1"])
        picker.select_option(label="tell #1")
        detail = output.locator(".wfk-step-detail")
        expect(detail).to_contain_text("state before it:")
        before, wrote = detail.inner_text().split("wrote:")
        assert '"plan": "a story about retries"' in before
        assert '"story"' not in before
        assert '"story": "Once upon a time a retry saved the day."' in wrote
        page.screenshot(path=str(tmp_path / "live-run-view.png"))


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_panel_shows_a_decision_made_from_another_kernel(tmp_path: Path, workspace: Path, lab: Lab) -> None:
    """grace's ticket is rejected from a second notebook (another kernel, the same workspace) while
    the first notebook shows its panel: that panel says who decided and why, and takes its buttons
    away, without anyone clicking it (a reviewer must not take an open-looking gate for undecided);
    and grace's run, which waits in the first kernel, goes on there, as after a click."""
    import nbformat
    from playwright.sync_api import expect

    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    second = nbformat.v4.new_notebook()
    second.cells = [
        nbformat.v4.new_code_cell(
            "import wfkit as wf\n"
            "ticket = wf.pending().reject(by='carol', comment='decided in kernel two')\n"
            "print('second kernel:', ticket.status, 'by', ticket.decided_by)"
        )
    ]
    second.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(second, tmp_path / "second.ipynb")

    with lab_page(lab, {"width": 1400, "height": 1000}, tmp_path / "failure.png") as page:
        notebook = run_notebook(page, lab, NOTEBOOK.name, expect)
        grace_cell = notebook.locator(".jp-CodeCell", has_text="large = flow.start")
        grace = grace_cell.locator(".jp-OutputArea .wfk-approval")
        expect(grace).to_have_count(1, timeout=30_000)
        expect(grace.get_by_role("button", name="Approve")).to_be_enabled()
        expect(grace.locator(".widget-html").first).to_contain_text(re.compile("^Approval needed at refund"))

        other = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[union-attr]
        decided = run_notebook(other, lab, "second.ipynb", expect).locator(".jp-OutputArea")
        expect(decided).to_contain_text("second kernel: rejected by carol", timeout=30_000)
        other.close()

        expect(grace.locator(".widget-html").first).to_contain_text(
            re.compile(r"^Rejected by carol at \S+ \S+ UTC: decided in kernel two")
        )
        expect(grace.get_by_role("button", name="Approve")).to_be_disabled()
        expect(grace.get_by_role("button", name="Reject")).to_be_disabled()

        # Kernel two does not define the workflow, so it could not continue the run: this kernel,
        # where grace's run waits, does, as after a click here (it stayed waiting_approval). Both
        # panels of the ticket say so, the run's and wf.pending()'s, whichever re-read it first
        # (only that one did, and it was often wf.pending()'s, while the run's showed the decision only).
        continues = re.compile(r"Run \w+ continues in this kernel\.")
        expect(grace_cell.locator(".jp-OutputArea .wfkit-run").first).to_contain_text("succeeded", timeout=15_000)
        expect(grace).to_contain_text(continues, timeout=10_000)
        listed = notebook.locator(".jp-CodeCell", has_text="wf.pending(workspace)").locator(".wfk-approval")
        expect(listed).to_contain_text(continues)
        grace.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "decided-in-another-kernel.png"))
        ws = Workspace(workspace)
        [run] = [r for r in ws.runs() if ws.run_info(r["run_id"])["inputs"]["customer"] == "grace"]
        info = ws.run_info(run["run_id"])
        assert "succeeded" == info["status"]
        assert 0 == info["state"]["refunded"]  # the rejection routed to explain
        assert "explain" == info["steps"][-1]["step"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_panel_from_before_a_kernel_restart_says_so_and_how_to_get_a_live_one(
    tmp_path: Path, workspace: Path, lab: Lab
) -> None:
    """After a kernel restart grace's panel is still on the page, but its comm is gone: it says the
    kernel restarted and how to get a live panel, and its buttons take no click (they looked live and
    a click did nothing). Doing what it says (define the workflow again, run `wf.pending(...)`) gives
    a live panel whose Approve resumes the run in the new kernel. The run's whole view says at its top
    that it stopped updating and how to see the run now (its "waiting_approval" and graph looked live);
    ada's finished run's view, still true, says nothing."""
    from playwright.sync_api import expect

    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    with lab_page(lab, {"width": 1400, "height": 1000}, tmp_path / "failure.png") as page:
        notebook = run_notebook(page, lab, NOTEBOOK.name, expect)
        grace_output = notebook.locator(".jp-CodeCell", has_text="large = flow.start").locator(".jp-OutputArea")
        grace = grace_output.locator(".wfk-approval")
        expect(grace).to_have_count(1, timeout=30_000)
        restarted = grace.locator(".wfk-restarted")
        expect(restarted).to_be_hidden()  # live: nothing to say
        expect(grace.get_by_role("button", name="Approve")).to_have_css("pointer-events", "auto")
        ada_output = notebook.locator(".jp-CodeCell", has_text="small = flow.start").locator(".jp-OutputArea")
        expect(ada_output.locator(".wfkit-run").first).to_contain_text("succeeded")
        views = {
            who: out.locator(".wfk-run-view > .wfk-restarted")
            for who, out in (("grace", grace_output), ("ada", ada_output))
        }
        for note in views.values():
            expect(note).to_be_hidden()

        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
        page.locator("li[data-command='kernelmenu:restart']").click()
        page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart Kernel?"
        expect(page.get_by_role("contentinfo", name="Bottom Panel").get_by_text("| Idle")).to_be_visible(timeout=30_000)

        expect(restarted).to_be_visible()
        expect(restarted).to_contain_text("The kernel restarted: this panel is no longer connected to it")
        expect(restarted).to_contain_text("run the cells that define workflow refunds again, then wf.pending()")
        for name in ("Approve", "Reject"):
            expect(grace.get_by_role("button", name=name)).to_have_css("pointer-events", "none")
        grace_output.locator(".wfkit-run").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "view-after-restart.png"))
        [run_id] = [r["run_id"] for r in Workspace(workspace).runs() if r["status"] == "waiting_approval"]
        expect(views["grace"]).to_be_visible()
        expect(views["grace"]).to_contain_text(f"The kernel restarted: this view of run {run_id} stopped updating then")
        expect(views["grace"]).to_contain_text(f"wf.Workspace().run_info('{run_id}') in a cell, or wfkit show {run_id}")
        expect(views["ada"]).to_be_hidden()  # ada's run ended before: its view is still true
        for control in ("select", ".widget-toggle-button"):  # the step picker and the state button
            expect(grace_output.locator(f".wfk-run-view {control}").first).to_have_css("pointer-events", "none")
        restarted.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "panel-after-restart.png"))

        # What it says to do, in the new kernel: the workflow's cells, then the pending tickets' cell.
        for source in ("# Parameters", 'flow = wf.Workflow("refunds")', "wf.pending(workspace)"):
            cell = notebook.locator(".jp-CodeCell", has_text=source)
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+Enter")
        live = notebook.locator(".jp-CodeCell", has_text="wf.pending(workspace)").locator(".wfk-approval")
        expect(live).to_have_count(1, timeout=30_000)
        expect(live.locator(".wfk-restarted")).to_be_hidden()
        live.locator(".widget-text input").fill("bob")
        live.get_by_role("button", name="Approve").click()
        expect(live.locator(".widget-html").first).to_contain_text(re.compile("^Approved by bob at "))

        ws = Workspace(workspace)

        def grace_succeeded() -> dict[str, Any] | None:
            infos = [ws.run_info(row["run_id"]) for row in ws.runs()]
            return next((i for i in infos if i["inputs"]["customer"] == "grace" and i["status"] == "succeeded"), None)

        assert 900 == wait_for(grace_succeeded, 15, "grace's run to succeed in the new kernel")["state"]["refunded"]
