"""Tests for wfkit.replay._pytest_plugin: `pytest --wfkit-replay notebooks/` collects each notebook as a
test item compared with its baseline. Each test runs a real pytest in a throw-away project."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = (
    "import wfkit as wf\nflow = wf.Workflow('tiny')\nflow.step(lambda s: {'y': s['x'] * 2}, name='double')\n"
    "run = flow.run({'x': x}, workspace=workspace, seed=0)"
)


def _notebook(path: Path, source: str, params: str = "x = 1\nworkspace = None") -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _pytest(project: Path, *args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (extra_path, ROOT) if p)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill): about 20 s
def test_notebooks_are_test_items_compared_with_their_baselines(tmp_path: Path) -> None:
    """Recorded with --wfkit-update-baseline, a notebook passes; one whose writes changed fails with the
    difference; one without a baseline fails with the hint; other files are not collected."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    _notebook(project / "notebooks" / "same.ipynb", TINY)
    _notebook(project / "notebooks" / "changes.ipynb", TINY)
    (project / "notebooks" / "notes.txt").write_text("not a notebook")
    plugin = ["-p", "wfkit.replay._pytest_plugin"]
    env_off = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    os.environ.update(env_off)
    try:
        recorded = _pytest(project, *plugin, "--wfkit-replay", "--wfkit-update-baseline", "notebooks", "-q")
        assert 0 == recorded.returncode, recorded.stdout + recorded.stderr
        assert "2 passed" in recorded.stdout
        assert (project / "data" / "baselines" / "notebooks" / "same.json").exists()
        _notebook(project / "notebooks" / "changes.ipynb", TINY.replace("* 2", "* 3"))
        _notebook(project / "notebooks" / "new.ipynb", TINY)
        result = _pytest(project, *plugin, "--wfkit-replay", "notebooks", "-q", "-rA")
    finally:
        os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    out = result.stdout
    assert 1 == result.returncode, out + result.stderr
    assert "2 failed, 1 passed" in out
    assert "PASSED notebooks/same.ipynb::same.ipynb" in out
    assert "run 1 (tiny), double visit 1: writes 'y' 2 -> 3" in out
    assert "no baseline at" in out
    assert "executed notebook: " in out
    assert (project / "replay-report" / "runs" / "notebooks" / "changes" / "changes.ipynb").exists()


def test_the_package_registers_the_plugin_through_an_entry_point(tmp_path: Path) -> None:
    """The pytest11 entry point in pyproject loads the plugin by itself: with wfkit's metadata on the
    path, `pytest --help` knows --wfkit-replay without -p. Without the option nothing is collected."""
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert {"wfkit": "wfkit.replay._pytest_plugin"} == entry_points
    meta = tmp_path / "site" / "wfkit-0.0.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: wfkit\nVersion: 0.0.0\n")
    (meta / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    _notebook(project / "a.ipynb", TINY)
    helped = _pytest(project, "--help", extra_path=tmp_path / "site")
    assert 0 == helped.returncode, helped.stderr
    assert "--wfkit-replay" in helped.stdout
    plain = _pytest(project, ".", "-q", extra_path=tmp_path / "site")
    assert 5 == plain.returncode, plain.stdout  # no tests collected: notebooks only with --wfkit-replay


def test_importing_wfkit_does_not_import_pytest() -> None:
    """The plugin is pytest's to load: `import wfkit` never pulls pytest in."""
    code = "import sys, wfkit, wfkit.replay; print('pytest' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "False" == done.stdout.strip()


def test_a_cell_timeout_papermill_would_take_for_no_limit_is_a_usage_error(tmp_path: Path) -> None:
    """`--wfkit-cell-timeout 0` (papermill: no limit at all) is refused before anything is collected,
    saying what the option takes."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    _notebook(project / "a.ipynb", TINY)
    refused = _pytest(project, "--wfkit-replay", "--wfkit-cell-timeout", "0", ".")  # the entry point loads it
    assert 4 == refused.returncode, refused.stdout + refused.stderr  # pytest's usage error
    assert "--wfkit-cell-timeout: must be a number of seconds above 0, got 0" in refused.stderr
    assert not (project / "replay-report").exists()
