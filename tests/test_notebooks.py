"""Tests for wfkit.replay._notebooks: files, folders and globs; baselines keyed by the path from the root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wfkit.replay._errors import ReplayError
from wfkit.replay._notebooks import (
    REPORT_MARKER,
    baseline_file,
    find_notebooks,
    missing_baseline_hint,
    notebook_key,
    project_root,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    for name in (
        "nb/a.ipynb",
        "nb/b.ipynb",
        "nb/deep/c.ipynb",
        "nb/.ipynb_checkpoints/a-checkpoint.ipynb",
        "nb/.hidden/h.ipynb",
        "report/runs/nb/a.ipynb",
        "other/readme.txt",
        "empty/x.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    (tmp_path / "report" / REPORT_MARKER).write_text("")
    return tmp_path


def _names(found: list[Path], root: Path) -> list[str]:
    return [p.resolve().relative_to(root).as_posix() for p in found]


def test_files_folders_and_globs_find_notebooks_once_each(project: Path) -> None:
    """A folder is searched recursively without hidden folders, checkpoints or replay reports; a glob
    expands; a notebook named twice counts once; the order is the order given."""
    p = str(project)
    assert ["nb/a.ipynb", "nb/b.ipynb", "nb/deep/c.ipynb"] == _names(find_notebooks([f"{p}/nb"], root=project), project)
    assert ["nb/b.ipynb", "nb/a.ipynb", "nb/deep/c.ipynb"] == _names(
        find_notebooks([f"{p}/nb/b.ipynb", f"{p}/nb/*.ipynb", f"{p}/nb/deep"], root=project), project
    )
    assert ["nb/deep/c.ipynb"] == _names(find_notebooks([f"{p}/**/c.ipynb"], root=project), project)
    everywhere = find_notebooks([f"{p}/**/*.ipynb"], root=project)  # not the report's, nor checkpoints
    assert ["nb/a.ipynb", "nb/b.ipynb", "nb/deep/c.ipynb"] == _names(everywhere, project)
    assert ["nb/a.ipynb", "nb/b.ipynb", "nb/deep/c.ipynb"] == _names(find_notebooks([p], root=project), project)


def test_no_paths_means_the_projects_notebooks_folder(project: Path) -> None:
    """Without paths, ROOT/notebooks is replayed; without that folder, an error says what to pass."""
    (project / "notebooks").mkdir()
    (project / "notebooks" / "z.ipynb").write_text("{}")
    assert ["notebooks/z.ipynb"] == _names(find_notebooks([], root=project), project)
    with pytest.raises(ReplayError, match="no notebooks given"):
        find_notebooks([], root=project / "nb")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("other/readme.txt", "not a notebook: .*readme.txt"),
        ("missing.ipynb", "no such notebook or folder"),
        ("empty", "no notebooks \\(.ipynb\\) under the folder"),
        ("nb/*.txt", "no notebooks match"),
    ],
)
def test_a_path_without_notebooks_is_an_error(project: Path, path: str, message: str) -> None:
    """Each way a path can hold no notebook is refused with a message saying so."""
    with pytest.raises(ReplayError, match=message):
        find_notebooks([str(project / path)], root=project)


def test_keys_are_paths_from_the_project_root(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The root is the nearest folder with a project marker; the key is the path from it; outside it is an error."""
    assert project == project_root(project / "nb" / "deep")
    assert "nb/deep/c.ipynb" == notebook_key(project / "nb" / "deep" / "c.ipynb", project)
    assert project / "base" / "nb" / "deep" / "c.json" == baseline_file(project / "base", "nb/deep/c.ipynb")
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "x.ipynb"
    with pytest.raises(ReplayError, match=r"outside the project root .* --root"):
        notebook_key(elsewhere, project)


def test_a_renamed_notebook_gets_a_hint_naming_its_old_baseline(project: Path) -> None:
    """No baseline at the key: a left-over baseline of the same code is named with the git mv to do;
    other left-over baselines are listed; with none, the hint says how to record one."""
    base = project / "base"
    (base / "nb").mkdir(parents=True)
    (base / "nb" / "old.json").write_text(json.dumps({"notebook": "nb/old.ipynb", "source_digest": "d1"}))
    (base / "nb" / "a.json").write_text(json.dumps({"notebook": "nb/a.ipynb", "source_digest": "d2"}))
    hint = missing_baseline_hint(base, "nb/new.ipynb", "d1", project)
    assert "The baseline of nb/old.ipynb (a notebook that is gone) was recorded from the same code" in hint
    assert f"git mv {base / 'nb' / 'old.json'} {base / 'nb' / 'new.json'}" in hint
    hint = missing_baseline_hint(base, "nb/new.ipynb", "d9", project)
    assert "Baselines whose notebook is gone: nb/old.ipynb." in hint
    (base / "nb" / "old.json").unlink()
    assert missing_baseline_hint(base, "nb/new.ipynb", "d9", project).endswith(
        "record one with `wfkit replay nb/new.ipynb --update-baseline`"
    )
