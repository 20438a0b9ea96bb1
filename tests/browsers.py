"""What the browser tests share: Debian's chromium with the flags it needs here, a JupyterLab
server (``start_lab``: the ``lab`` fixture in conftest starts one per test, test_builder_browser.py
one per module), and a page that keeps a screenshot and the server log when a scenario fails (in a
browser of its own, or in a fresh context of the module's browser: ``Lab.browser``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
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

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Playwright

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
VISIBLE = ".jp-NotebookPanel:visible"  # hidden notebook panels must never match a locator


@dataclass
class Lab:
    """A JupyterLab server started for one test."""

    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    root: Path  # the folder it serves
    # Where the test's notebooks are, from the server's root: "" when the server is the test's own,
    # "FOLDER/" when one server serves a whole module (see test_builder_browser.py).
    prefix: str = ""
    # A chromium the module keeps running (see test_builder_browser.py): each page gets a context of
    # its own in it (no cookie, storage or cache of another test's). None: a chromium per page.
    browser: Browser | None = None

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server by its PID: SIGTERM (it shuts its kernels down), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def delete_sessions(lab: Lab) -> None:
    """Shut down every session (and kernel) of this test's server. A notebook panel whose kernel
    was just shut down may still be asking for a new session, so this deletes until none is left."""

    def none_left() -> bool:
        sessions = lab.api("GET", "/api/sessions")
        for session in sessions:
            lab.api("DELETE", f"/api/sessions/{session['id']}")
        return not sessions

    wait_for(none_left, 15, "every session of the server to be shut down")


def launch(playwright: Playwright) -> Browser:
    """Headless Debian chromium (``playwright install`` cannot work here)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless chromium, closed when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def lab_page(lab: Lab, viewport: dict[str, int], failure_shot: Path) -> Iterator[Page]:
    """A chromium page for a scenario on ``lab``, in a browser context of its own (in ``lab.browser``
    if the module shares one, else in a chromium started for it). If the scenario fails: a
    screenshot to ``failure_shot`` and the server log's tail printed (the first error is kept:
    cleanup trouble after it is secondary). Either way every session of the server is shut down."""
    with contextlib.ExitStack() as stack:
        browser = lab.browser or stack.enter_context(chromium())
        context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        failed = False
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        except BaseException:
            failed = True
            with contextlib.suppress(Exception):
                page.screenshot(path=str(failure_shot))
            print(f"screenshot: {failure_shot}\nserver log:\n{lab.log_tail()}")
            raise
        finally:
            # Its pages closed before the sessions go: an open notebook panel would start its kernel again.
            context.close()
            if failed:
                with contextlib.suppress(Exception):
                    delete_sessions(lab)
            else:
                delete_sessions(lab)


def run_notebook(page: Page, lab: Lab, notebook: str, expect: Any) -> Locator:
    """Open ``notebook`` in a JupyterLab workspace of its own (``?reset``: nothing reopened from an
    earlier session), wait for its kernel, run all its cells with the Run menu; its panel."""
    page.goto(f"{lab.url}/lab/workspaces/w{secrets.token_hex(4)}/tree/{lab.prefix}{notebook}?reset&token={lab.token}")
    panel = page.locator(VISIBLE)
    expect(panel).to_have_count(1, timeout=30_000)
    expect(page.get_by_role("contentinfo", name="Bottom Panel").get_by_text("| Idle")).to_be_visible(timeout=30_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator("li[data-command='runmenu:run-all']").click()
    return panel


@contextlib.contextmanager
def start_lab(root: Path, workspace: Path) -> Iterator[Lab]:
    """``jupyter lab`` on 127.0.0.1 (a free port, a random token) serving ``root``, its kernels with
    ``workspace`` as $WFKIT_HOME; stopped on exit."""
    port, token = free_port(), secrets.token_hex(16)
    private = root / ".jupyter"  # hidden, so not in the file browser
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
        f"--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = root / ".jupyter" / "server.log"
    with log.open("wb") as out:  # a file, not a pipe: nobody has to read it while the test runs
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}", token, proc, log, root)
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
        stop(proc)
