"""Interactive or headless: whether a person can click an approval button in this process.

Decided in this order: an explicit argument; a ``wfkit_mode`` parameter in the notebook (papermill
injects parameters into the kernel's namespace); ``$WFKIT_MODE``; then detection: a JupyterLab
kernel has a frontend (JupyterLab sets ``JPY_SESSION_NAME`` in the kernel's environment;
papermill does not), anything else has none.

Headless runs never wait for a click: the approval policy decides (``wfkit_policy`` parameter,
``$WFKIT_POLICY``, else "fail" under papermill, where a halted gate would leave the notebook with
no one to decide, and "halt" in a plain script, which exits and resumes later).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, Literal

from wfkit._jupyter import in_kernel as in_kernel  # re-exported: the mode reads them
from wfkit._jupyter import under_papermill as under_papermill

Mode = Literal["interactive", "headless"]
MODES: tuple[str, ...] = ("interactive", "headless")


def _user_ns() -> Mapping[str, Any]:
    """The notebook's namespace, read only (no copy: it may hold large objects)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return {}
    shell = ipython.get_ipython()
    namespace: Mapping[str, Any] = getattr(shell, "user_ns", None) or {}
    return namespace


def _check(value: str, where: str) -> Mode:
    lowered = value.strip().lower()
    if lowered not in MODES:
        raise ValueError(f"{where} must be 'interactive' or 'headless', got {value!r}")
    return lowered  # type: ignore[return-value]


def current_mode(explicit: str | None = None) -> Mode:
    """The mode: explicit argument, notebook parameter, $WFKIT_MODE, then detection."""
    if explicit is not None:
        return _check(explicit, "mode")
    param = _user_ns().get("wfkit_mode")
    if param:
        return _check(str(param), "the notebook parameter wfkit_mode")
    env = os.environ.get("WFKIT_MODE")
    if env:
        return _check(env, "$WFKIT_MODE")
    return "interactive" if in_kernel() and not under_papermill() else "headless"


def default_policy(mode: Mode) -> str:
    """The approval policy when a run names none."""
    return default_policy_from(mode)[0]


def default_policy_from(mode: Mode) -> tuple[str, str | None]:
    """The approval policy when a run names none, and where it was read (``$WFKIT_POLICY``, the
    notebook parameter ``wfkit_policy``; None: wfkit's own default), for an error to name."""
    if mode == "interactive":
        return "halt", None  # the widget, wfkit.pending() or the CLI decides
    param = _user_ns().get("wfkit_policy")
    if param:
        return str(param), "the notebook parameter wfkit_policy"
    env = os.environ.get("WFKIT_POLICY")
    if env:
        return env, "$WFKIT_POLICY"
    return ("fail" if under_papermill() else "halt"), None
