"""Interactive or headless, and the approval policy that follows."""

from __future__ import annotations

import pytest

from wfkit.engine._mode import current_mode, default_policy, in_kernel, under_papermill


def test_plain_python_is_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a kernel there is no one to click: headless, and scripts halt to resume later."""
    monkeypatch.delenv("WFKIT_MODE", raising=False)
    monkeypatch.delenv("WFKIT_POLICY", raising=False)
    assert not in_kernel()
    assert not under_papermill()
    assert "headless" == current_mode()
    assert "halt" == default_policy("headless")
    assert "halt" == default_policy("interactive")


def test_explicit_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit mode wins over $WFKIT_MODE, which wins over detection."""
    monkeypatch.setenv("WFKIT_MODE", "interactive")
    assert "interactive" == current_mode()
    assert "headless" == current_mode("headless")


def test_policy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """$WFKIT_POLICY sets the headless policy."""
    monkeypatch.setenv("WFKIT_POLICY", "reject")
    assert "reject" == default_policy("headless")


@pytest.mark.parametrize("bad", ["sometimes", ""])
def test_bad_mode_is_refused(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mode that is neither interactive nor headless is refused with the choices."""
    if bad:
        monkeypatch.setenv("WFKIT_MODE", bad)
        with pytest.raises(ValueError, match=r"\$WFKIT_MODE must be 'interactive' or 'headless'"):
            current_mode()
    with pytest.raises(ValueError, match="mode must be 'interactive' or 'headless'"):
        current_mode("sometimes")
