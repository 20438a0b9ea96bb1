"""Which notebooks a replay means, and where each one's baseline lives.

``wfkit replay [PATHS...]`` takes notebook files, folders (searched recursively, skipping hidden
folders, ``.ipynb_checkpoints`` and earlier replay reports) and globs (``notebooks/0*.ipynb``,
``**/*.ipynb``). A notebook is known by its path relative to the project root (the nearest folder
up from here holding ``pyproject.toml``, ``setup.cfg``, ``setup.py`` or ``.git``), and its baseline
sits at the same relative path under the baseline folder, as ``.json``: two notebooks of the same
name in different folders never share a baseline, and a renamed notebook finds none, which replay
reports (with a hint when a baseline is left over) instead of passing it silently.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wfkit.replay._errors import ReplayError

ROOT_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", ".git")
REPORT_MARKER = ".wfkit-replay-report"  # written into every report folder, so a search skips it
_GLOB_CHARS = set("*?[")


def project_root(start: Path) -> Path:
    """The nearest folder from ``start`` upwards that holds a project marker; ``start`` if none does."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return start


def _search(folder: Path) -> list[Path]:
    found: list[Path] = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d != "__pycache__" and not (Path(here) / d / REPORT_MARKER).exists()
        )
        found.extend(Path(here) / f for f in sorted(files) if f.endswith(".ipynb"))
    return found


def _skipped(notebook: Path) -> bool:
    """A file a glob matched inside a replay report or a checkpoints folder (a folder search never enters them)."""
    folders = notebook.resolve().parents
    return ".ipynb_checkpoints" in notebook.parts or any((f / REPORT_MARKER).exists() for f in folders)


def find_notebooks(paths: Sequence[str], *, root: Path) -> list[Path]:
    """Notebooks named by files, folders and globs, in the order given, each once; the project's
    ``notebooks/`` folder when no path is given. A path that yields no notebook is an error."""
    if not paths:
        default = root / "notebooks"
        if not default.is_dir():
            raise ReplayError(f"no notebooks given, and {default} is not a folder: name notebooks, folders or globs")
        paths = [str(default)]
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if _GLOB_CHARS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            hits = [
                n
                for m in matches
                for n in (_search(m) if m.is_dir() else [m] if m.suffix == ".ipynb" and not _skipped(m) else [])
            ]
            if not hits:
                raise ReplayError(f"no notebooks match {text!r}")
        elif path.is_dir():
            hits = _search(path)
            if not hits:
                raise ReplayError(f"no notebooks (.ipynb) under the folder {text}")
        elif path.is_file():
            if path.suffix != ".ipynb":
                raise ReplayError(f"not a notebook: {text} (replay takes .ipynb files, folders holding them, or globs)")
            hits = [path]
        else:
            raise ReplayError(f"no such notebook or folder: {text}")
        found.extend(hits)
    unique: dict[Path, Path] = {}
    for nb in found:
        unique.setdefault(nb.resolve(), nb)
    return list(unique.values())


def notebook_key(notebook: Path, root: Path) -> str:
    """The notebook's path relative to the project root, with forward slashes."""
    try:
        return notebook.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ReplayError(
            f"{notebook} is outside the project root {root}: baselines are keyed by the path from the root, so "
            f"run wfkit replay from inside the notebook's project, or name its root with --root"
        ) from None


def baseline_file(baseline: Path, key: str) -> Path:
    return baseline / Path(key).with_suffix(".json")


_JSON_TYPES = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def read_baseline(file: Path) -> dict[str, Any]:
    """The baseline in ``file``, or a :class:`ReplayError` saying what is wrong with the file (a
    broken merge, a truncated write, a file that is not a baseline) before any comparison trips on it."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReplayError(f"the baseline {file} is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        held = _JSON_TYPES.get(type(data), "null")
        raise ReplayError(f"the baseline {file} is not a baseline (a JSON object), it holds {held}")
    runs = data.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise ReplayError(f"the baseline {file} is not a baseline: its runs are not a list of objects")
    for part in ("latency", "outputs"):
        if not isinstance(data.get(part, {}), dict):
            raise ReplayError(f"the baseline {file} is not a baseline: its {part} is not an object")
    return data


def _recorded(baseline: Path) -> Iterable[tuple[Path, dict[str, object]]]:
    for file in sorted(baseline.rglob("*.json")) if baseline.is_dir() else []:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            yield file, data


def missing_baseline_hint(baseline: Path, key: str, digest: str, root: Path) -> str:
    """What to say when ``key`` has no baseline: which left-over baseline it may have been renamed
    from (the same code, or any baseline whose notebook is gone), and how to move or record one."""
    expected = baseline_file(baseline, key)
    orphans = [
        (file, str(data.get("notebook")))
        for file, data in _recorded(baseline)
        if data.get("notebook") and not (root / str(data["notebook"])).exists()
    ]
    same_code = [o for o in orphans if digest and _digest_of(o[0]) == digest]
    record = f"record one with `wfkit replay {key} --update-baseline`"
    if same_code:
        file, old = same_code[0]
        return (
            f"no baseline at {expected}. The baseline of {old} (a notebook that is gone) was recorded from the same "
            f"code: if {old} was renamed to {key}, move its baseline (git mv {file} {expected}); otherwise {record}"
        )
    if orphans:
        listed = ", ".join(old for _f, old in orphans[:5])
        return (
            f"no baseline at {expected}. Baselines whose notebook is gone: {listed}. If one of them was renamed to "
            f"{key}, move its baseline to {expected}; otherwise {record}"
        )
    return f"no baseline at {expected}; {record}"


def _digest_of(file: Path) -> str:
    try:
        return str(json.loads(file.read_text(encoding="utf-8")).get("source_digest", ""))
    except (OSError, ValueError):
        return ""
