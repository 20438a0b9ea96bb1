"""The approval notebook in a real browser: JupyterLab, Debian's chromium, clicks on the panels.

Needs /usr/bin/chromium (``apt-get install chromium``; ``playwright install`` is not used) and the
``playwright`` Python package. It skips only when the browser is missing. The repository's
notebook and workspace are never touched: a copy of the notebook and the workspace live in the
test's tmp_path, and JupyterLab's settings, workspaces and runtime files in tmp_path/.jupyter.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from wfkit.store._workspace import Workspace

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_approval_gates.ipynb"
VISIBLE = ".jp-NotebookPanel:visible"  # hidden notebook panels must never match a locator


@dataclass
class Lab:
    """A JupyterLab server started for one test."""

    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server by its PID: SIGTERM (it shuts its kernels down), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def lab(tmp_path: Path, workspace: Path) -> Iterator[Lab]:
    """``jupyter lab`` for this test only: 127.0.0.1, a free port, a random token, root tmp_path."""
    port, token = _free_port(), secrets.token_hex(16)
    private = tmp_path / ".jupyter"  # hidden, so not in the file browser
    settings = private / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "Would you like to get notified about official Jupyter news?" toast over the page.
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFKIT_", "JUPYTER", "JPY_"))}
    env.update(
        WFKIT_HOME=str(workspace),  # no WFKIT_REVIEWER (the test types it) and no WFKIT_MODE/POLICY
        WFKIT_SYNCHRONOUS="normal",
        JUPYTER_CONFIG_DIR=str(private / "config"),
        JUPYTER_RUNTIME_DIR=str(private / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(private / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(private / "workspaces"),
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",  # ServerApp.token is deprecated since jupyter_server 2
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = tmp_path / ".jupyter" / "server.log"
    with log.open("wb") as out:  # a file, not a pipe: nobody has to read it while the test runs
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}", token, proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer /api/status within 30 s:\n{server.log_tail()}")
                time.sleep(0.2)
        yield server
    finally:
        _stop(proc)


def _delete_sessions(lab: Lab) -> None:
    """Shut down every session (and kernel) of this test's server."""
    for session in lab.api("GET", "/api/sessions"):
        lab.api("DELETE", f"/api/sessions/{session['id']}")
    assert [] == lab.api("GET", "/api/sessions")


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_approval_notebook_in_a_browser(tmp_path: Path, workspace: Path, lab: Lab) -> None:
    """Run All in JupyterLab: ada's small refund (under the gate's threshold) goes through with no
    panel; grace's is rejected from its run's live panel, which decides once; the run resumes in the
    kernel and the workspace records who decided."""
    from playwright.sync_api import expect, sync_playwright

    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            try:
                _scenario(page, expect, lab, workspace)
            except BaseException:
                # Keep the first error: cleanup trouble after it is secondary.
                shot = tmp_path / "failure.png"
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(shot))
                print(f"screenshot: {shot}\nserver log:\n{lab.log_tail()}")
                with contextlib.suppress(Exception):
                    _delete_sessions(lab)
                raise
            _delete_sessions(lab)
        finally:
            browser.close()


def _scenario(page: Page, expect: Any, lab: Lab, workspace: Path) -> None:
    # A unique workspace with ?reset: JupyterLab reopens nothing from an earlier session.
    page.goto(f"{lab.url}/lab/workspaces/t{secrets.token_hex(4)}/tree/{NOTEBOOK.name}?reset&token={lab.token}")
    notebook = page.locator(VISIBLE)
    expect(notebook).to_have_count(1, timeout=30_000)
    status_bar = page.get_by_role("contentinfo", name="Bottom Panel")
    expect(status_bar.get_by_text("| Idle")).to_be_visible(timeout=30_000)

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator("li[data-command='runmenu:run-all']").click()

    # The live views of the two runs (cells `small = ...` and `large = ...`), one panel in each.
    ada_cell = notebook.locator(".jp-CodeCell", has_text="small = flow.start")
    grace_cell = notebook.locator(".jp-CodeCell", has_text="large = flow.start")

    def panel(cell: Locator) -> Locator:
        header = cell.locator(".jp-OutputArea .widget-html", has_text="Approval needed")
        return header.locator("xpath=..")  # the ApprovalPanel VBox around its header

    ada, grace = panel(ada_cell), panel(grace_cell)
    expect(grace).to_have_count(1, timeout=30_000)
    expect(grace).to_be_visible()
    expect(grace).to_contain_text('"customer": "grace"')
    expect(ada).to_have_count(0)  # $40 is under the gate's threshold: no ticket, no panel

    grace.locator(".widget-text input").fill("bob")
    grace.locator("textarea").fill("too large for self-service")
    grace.get_by_role("button", name="Reject").click()  # the name includes the icon's glyph

    expect(grace).to_contain_text("rejected by bob")
    expect(grace.get_by_role("button", name="Approve")).to_be_disabled()
    expect(grace.get_by_role("button", name="Reject")).to_be_disabled()

    # The clicks resumed both runs in the kernel; the workspace says how they ended.
    ws = Workspace(workspace)

    def both_succeeded() -> dict[str, dict[str, Any]]:
        infos = [ws.run_info(row["run_id"]) for row in ws.runs()]
        done = {i["inputs"]["customer"]: i for i in infos if i["status"] == "succeeded"}
        return done if len(done) == 2 else {}

    runs = _wait_for(both_succeeded, 10, "both runs to succeed in the workspace")
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


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_an_executed_notebook_opened_later_shows_the_runs_graph(tmp_path: Path, workspace: Path, lab: Lab) -> None:
    """A notebook executed headless (nbclient, as papermill does) is not trusted when opened in
    JupyterLab, whose sanitizer strips inline SVG: the run's graph must still show, as a loaded image."""
    import nbformat
    from nbclient import NotebookClient
    from playwright.sync_api import expect, sync_playwright

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

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            page.goto(f"{lab.url}/lab/workspaces/t{secrets.token_hex(4)}/tree/executed.ipynb?reset&token={lab.token}")
            output = page.locator(VISIBLE).locator(".jp-OutputArea .wfkit-run")
            expect(output).to_contain_text("succeeded", timeout=30_000)
            graph = output.locator("img.wfk-graph")
            expect(graph).to_have_count(1)
            expect(graph).to_be_visible()
            assert 400 < graph.evaluate("img => img.naturalWidth")  # decoded and drawn, not a broken image
            assert "firstfirst" not in output.inner_text()  # not the SVG's labels left over as text
            _delete_sessions(lab)
        finally:
            browser.close()
