"""Registering the ``df.wf`` accessor with pandas, without making ``import wfkit`` import pandas.

A step-log frame read by pandas itself (``pd.read_parquet(workspace / "steps")``) should answer to
``df.wf`` as soon as wfkit is imported, yet pandas costs some 0.3 s to import and a kernel that
only runs workflows never needs it. So:

- if pandas is already imported when wfkit is, the accessor is registered at once;
- otherwise a one-shot finder waits at the head of ``sys.meta_path`` for the import of ``pandas``
  (whoever triggers it: the user, pyarrow's ``to_pandas``, a library), lets the normal finders and
  loader do all the work, and registers the accessor right after the pandas package has finished
  executing. The finder then leaves ``sys.meta_path``, and the module it loaded keeps its own
  loader (``pandas.__loader__`` and ``__spec__.loader`` are the originals), so nothing of the hook
  remains visible.

Registration is idempotent and never overrides a ``wf`` attribute somebody else put on DataFrame.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

# Re-entrant: importing pandas below fires the watcher, which registers from inside that import.
_lock = threading.RLock()
_state = {"registered": False}


def _done() -> bool:
    # A call, not a name: the check after `import pandas` sees what the watcher did meanwhile.
    return _state["registered"]


def register_accessor() -> None:
    """Make ``df.wf`` available on every pandas DataFrame (idempotent; imports pandas)."""
    with _lock:
        if _done():
            return
        import pandas as pd

        from wfkit.logs._analysis import StepsAccessor

        if _done():  # done by the watcher while pandas was being imported just now
            return
        if "wf" not in pd.DataFrame.__dict__:  # someone else's `wf` stays theirs
            pd.api.extensions.register_dataframe_accessor("wf")(StepsAccessor)
        _state["registered"] = True


class _ThenRegister(importlib.abc.Loader):
    """Wraps the loader of ``pandas`` for one import: executes the module, then registers."""

    def __init__(self, loader: importlib.abc.Loader, then: Callable[[], None]) -> None:
        self._loader = loader
        self._then = then

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps the real loader: importlib.resources, reload() and pickling see no wrapper.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._then()

    def __getattr__(self, name: str) -> Any:  # is_package, get_resource_reader, ...
        return getattr(self._loader, name)


class _PandasWatcher(importlib.abc.MetaPathFinder):
    """A one-shot finder: hands the import of ``pandas`` to the usual finders, then registers."""

    def __init__(self, then: Callable[[], None]) -> None:
        self._then = then
        self._finding = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "pandas" or self._finding:
            return None
        self._finding = True  # the import lock of "pandas" is held: no other thread gets here now
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._finding = False
        uninstall()
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # pandas is not installed (ImportError as usual), or loads some odd way
        spec.loader = _ThenRegister(spec.loader, self._then)
        return spec


_watcher: _PandasWatcher | None = None


def _register_quietly() -> None:
    try:
        register_accessor()
    except Exception:  # a broken pandas install must not break the import that triggered us
        import logging

        logging.getLogger("wfkit").exception("wfkit: registering the df.wf accessor failed")


def install() -> None:
    """Register ``df.wf`` now if pandas is imported, else as soon as it is (called by ``import wfkit``)."""
    global _watcher
    if "pandas" in sys.modules:
        if hasattr(sys.modules["pandas"], "api"):  # fully imported, not mid-import
            _register_quietly()
        return
    with _lock:
        if _watcher is None:
            _watcher = _PandasWatcher(_register_quietly)
            sys.meta_path.insert(0, _watcher)


def uninstall() -> None:
    """Take the finder off ``sys.meta_path`` (it does so itself once pandas is imported)."""
    global _watcher
    watcher, _watcher = _watcher, None
    if watcher is not None:
        with contextlib.suppress(ValueError):  # someone took it off already
            sys.meta_path.remove(watcher)
