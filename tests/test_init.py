"""The public surface: a complete, sorted __all__ and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import wfkit


def test_all_is_sorted_and_complete() -> None:
    """Every public name is in __all__, sorted, and each resolves."""
    public = {n for n in dir(wfkit) if not n.startswith("_")} - {"examples", "testing", "widgets"}
    public = {n for n in public if not isinstance(getattr(wfkit, n), type(sys))}
    assert public | {"__version__"} | set(wfkit._LAZY) == set(wfkit.__all__)
    for name in wfkit.__all__:
        assert getattr(wfkit, name) is not None


def test_llm_names_load_on_first_use() -> None:
    """The LLM layer's names resolve lazily, and an unknown name is an AttributeError."""
    for name in wfkit._LAZY:
        assert getattr(wfkit, name) is not None
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
