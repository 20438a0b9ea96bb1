"""df.wf on any step-log frame after `import wfkit`, without `import wfkit` importing pandas:
each case runs in a fresh interpreter, as a user's kernel would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import wfkit as wf


@pytest.fixture(scope="module")
def log_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding the step log of two runs, exported to parquet."""
    folder = tmp_path_factory.mktemp("register") / "ws"
    flow = wf.Workflow("reg")
    flow.step(lambda s: {"x": 1}, name="only")
    for _ in range(2):
        flow.run({}, workspace=folder)
    wf.steps(folder)  # exports the rows
    return folder


def run_fresh(code: str, folder: Path) -> str:
    """Run ``code`` in a new interpreter (this worktree's wfkit first on the path); its stdout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(wf.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code).replace("FOLDER", repr(str(folder)))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert 0 == done.returncode, done.stderr
    return done.stdout.strip()


def test_import_wfkit_does_not_import_pandas(log_folder: Path) -> None:
    """After `import wfkit` alone, neither pandas nor DuckDB nor matplotlib is loaded."""
    out = run_fresh(
        """
        import sys
        import wfkit
        print(sorted(m for m in ("pandas", "duckdb", "matplotlib") if m in sys.modules))
        """,
        log_folder,
    )
    assert "[]" == out


def test_pandas_imported_after_wfkit_has_the_accessor(log_folder: Path) -> None:
    """`import wfkit` then pandas reading the steps folder by itself: df.wf works."""
    out = run_fresh(
        """
        import wfkit
        import pandas as pd
        df = pd.read_parquet(FOLDER + "/steps")
        print(int(df.wf.latency()["count"].sum()), type(pd.__loader__).__name__, type(pd.__spec__.loader).__name__)
        """,
        log_folder,
    )
    assert "2 SourceFileLoader SourceFileLoader" == out


def test_pandas_imported_before_wfkit_has_the_accessor(log_folder: Path) -> None:
    """pandas first, then `import wfkit`: df.wf works."""
    out = run_fresh(
        """
        import pandas as pd
        import wfkit
        print(int(pd.read_parquet(FOLDER + "/steps").wf.failures()["attempts"].sum()))
        """,
        log_folder,
    )
    assert "2" == out


def test_pandas_loaded_by_pyarrow_has_the_accessor(log_folder: Path) -> None:
    """pandas imported indirectly (pyarrow's to_pandas) still gets df.wf, and the hook leaves sys.meta_path."""
    out = run_fresh(
        """
        import sys
        import wfkit
        import pyarrow.parquet as pq
        import pyarrow.dataset as ds
        df = ds.dataset(FOLDER + "/steps", partitioning="hive").to_table().to_pandas()
        print(len(df.wf.runs()), any(type(f).__name__ == "_PandasWatcher" for f in sys.meta_path))
        """,
        log_folder,
    )
    assert "2 False" == out


def test_someone_elses_wf_accessor_is_left_alone(log_folder: Path) -> None:
    """A `wf` attribute another library put on DataFrame first is not overridden."""
    out = run_fresh(
        """
        import pandas as pd
        pd.DataFrame.wf = "theirs"
        import wfkit
        print(pd.DataFrame().wf)
        """,
        log_folder,
    )
    assert "theirs" == out
