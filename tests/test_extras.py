"""Optional parts: a missing extra says which one to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wfkit._extras import MissingExtraError, require


def test_an_installed_module_is_returned() -> None:
    """require() hands back the module when it is installed."""
    assert sys.modules["json"] is require("json", "none", purpose="this test")


def test_a_missing_module_names_the_extra_to_install() -> None:
    """A module that is not installed raises MissingExtraError (an ImportError) naming the extra."""
    with pytest.raises(MissingExtraError, match=r'wfkit replay needs .*pip install "wfkit\[replay\]"') as info:
        require("no_such_module_wfkit_test", "replay", purpose="wfkit replay")
    assert isinstance(info.value, ImportError)


def test_a_broken_installed_module_shows_its_own_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that is installed but imports something missing is not blamed on the extra."""
    (tmp_path / "wfkit_broken_extra.py").write_text("import no_such_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_it") as info:
        require("wfkit_broken_extra", "x", purpose="this test")
    assert not isinstance(info.value, MissingExtraError)
