"""The public surface: a complete, sorted __all__ and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import wfkit


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("module", ["wfkit", "wfkit.llm", "wfkit.evals", "wfkit.widgets", "wfkit.distributed"])
def test_all_is_sorted_and_complete(module: str) -> None:
    """Each public namespace lists every public name in __all__, in order, and each resolves."""
    import importlib

    namespace = importlib.import_module(module)
    names = list(namespace.__all__)
    assert sorted(names, key=_isort_key) == names
    public = {n for n in vars(namespace) if not n.startswith("_")}
    public = {n for n in public if not isinstance(getattr(namespace, n), type(sys))}
    assert public | ({"__version__"} if module == "wfkit" else set()) == set(names)
    for name in names:
        assert getattr(namespace, name) is not None


def test_heavy_namespaces_load_on_first_use() -> None:
    """wf.llm and wf.evals are submodules loaded when first touched; an unknown name is an AttributeError."""
    code = (
        "import sys, wfkit as wf; assert 'wfkit.llm' not in sys.modules; assert 'wfkit.evals' not in sys.modules; "
        "print(wf.llm.ChatClient.__name__, wf.evals.Suite.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ChatClient Suite" == out.stdout.strip()
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        wfkit.no_such_name  # noqa: B018


def test_import_stays_light() -> None:
    """`import wfkit` pulls in none of the heavy optional libraries."""
    code = (
        "import sys, wfkit; heavy = ('pandas', 'pyarrow', 'matplotlib', 'ipywidgets', 'papermill', "
        "'httpx', 'numpy', 'IPython'); print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version_is_a_string() -> None:
    """The version is exposed for `wfkit --version`."""
    assert isinstance(wfkit.__version__, str)
    assert 2 == wfkit.__version__.count(".")
