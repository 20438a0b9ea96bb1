"""Warnings said at the user's definition: a step's function, a route's ``flow.route(...)`` line.

Why: a warning about a run's state or routes is noticed while the run runs, deep in wfkit's engine
(often in a task, with no user frame on the stack at all), and ``warnings.warn`` would point at the
engine's line and print that line under the message. Said at the definition, Python prints the
user's line instead, and its default filter shows the same words there once: a batch of a
thousand runs that write one secret into their state says so once, not once per run.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import os
import sys
import warnings
from types import CodeType
from typing import Any, TypeAlias

Site: TypeAlias = tuple[str, int, str]
"""Where something was defined: its file, its line, its module's name."""

# The warnings registry of every warning said at a site (``warnings.warn_explicit``'s ``registry``):
# its default filter records there what it showed, so that each is shown once per place and text.
_registry: dict[Any, Any] = {}


def site_of(fn: object) -> Site | None:
    """Where a function was defined (the first line of its ``def``; decorators and partials seen
    through), None for what has no Python code (a builtin, a C extension's callable)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if callable(fn):
        try:
            fn = inspect.unwrap(fn)
        except ValueError:  # a cycle of __wrapped__
            return None
    code = getattr(fn, "__code__", None)
    if code is None and callable(fn):  # an object with a __call__ method
        code = getattr(type(fn).__call__, "__code__", None)
    if code is None:
        return None
    return (
        code.co_filename,
        _def_line(code),
        str(getattr(fn, "__module__", None) or "__main__"),
    )


def _def_line(code: CodeType) -> int:
    """The line of the ``def`` itself: a decorated function's first line is its first decorator's
    (``@flow.step``), which Python would print under the warning instead of the function's name.
    Found by its name among the lines that follow (a lambda has no ``def``: its own line)."""
    first, name = code.co_firstlineno, code.co_name
    if not name.isidentifier():  # <lambda>
        return first
    for line in range(first, first + 50):
        text = linecache.getline(code.co_filename, line)
        if not text:
            break  # no source to read, or past its end: keep the first line
        if text.lstrip().startswith((f"def {name}(", f"async def {name}(")):
            return line
    return first


def warn_at(warning: Warning, site: Site | None, *, stacklevel: int = 1) -> None:
    """Say ``warning`` at ``site``; without one, as ``warnings.warn`` would, ``stacklevel`` frames
    above the caller (1: the caller's own line)."""
    if site is None:
        warnings.warn(warning, stacklevel=stacklevel + 1)
        return
    filename, lineno, module = site
    warnings.warn_explicit(warning, type(warning), filename, lineno, module=module, registry=_registry)


# This package's folder: a frame or a warning's file inside it is wfkit's own, not the user's.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def in_wfkit(filename: str) -> bool:
    """Whether ``filename`` (a code object's, a warning's) is one of wfkit's own files."""
    return os.path.abspath(filename).startswith(_PACKAGE)


def user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside wfkit, for a warning its caller says: a dataset
    is read from ``wf.steps``, ``wf.StepLog``, an eval or a report, each some frames deep, and a
    fixed level pointed at wfkit's own line (``_steplog.py:697``) and printed it under the message."""
    frame = sys._getframe(1)  # the caller, whose own line is stacklevel 1
    level = 1
    while frame.f_back is not None and in_wfkit(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return level
