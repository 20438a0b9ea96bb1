"""Every test gets its own workspace, so runs never land in the repository's ./.wfkit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from browsers import Lab


@pytest.fixture(autouse=True)
def _forget_exports() -> Iterator[None]:
    """Runs of a test's workspace are not exported after the test (its folder may be gone)."""
    yield
    from wfkit.logs._steplog import exporter

    exporter.clear()


@pytest.fixture(autouse=True)
def _forget_started_runs() -> Iterator[None]:
    """Runs a test started and never awaited (a decision resumed them) do not reach the next test's drain()."""
    yield
    from wfkit.engine._run import _started

    for run in list(_started):
        if run.done():
            _started.discard(run)


@pytest.fixture(autouse=True)
def _workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "ws"
    monkeypatch.setenv("WFKIT_HOME", str(folder))
    # Tests run with SQLite's NORMAL sync (crash-safe, not power-loss-safe) unless they say otherwise.
    monkeypatch.setenv("WFKIT_SYNCHRONOUS", "normal")
    return folder


@pytest.fixture
def workspace(_workspace: Path) -> Path:
    """The test's workspace folder (also in $WFKIT_HOME)."""
    return _workspace


@pytest.fixture
def lab(tmp_path: Path, workspace: Path) -> Iterator[Lab]:
    """``jupyter lab`` for this test only: 127.0.0.1, a free port, a random token, root tmp_path."""
    import json
    import os
    import secrets
    import subprocess
    import sys
    import time
    import urllib.error

    from browsers import Lab, free_port, stop

    port, token = free_port(), secrets.token_hex(16)
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
        stop(proc)
