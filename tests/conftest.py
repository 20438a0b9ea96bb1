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
    from browsers import start_lab

    with start_lab(tmp_path, workspace) as server:
        yield server
