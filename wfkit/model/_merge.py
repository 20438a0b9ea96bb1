"""Merge rules: how a state field combines writes from several steps (parallel branches, loops).

A merge rule is a plain function ``(current, update) -> merged``. ``current`` is ``None`` when the
field has no value yet. Declare them per field: ``Workflow("x", merge={"notes": wfkit.append})``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

Merge: TypeAlias = Callable[[Any, Any], Any]


def append(current: Any, update: Any) -> list[Any]:
    """Collect every written value into a list, in completion order."""
    return [*(current or ()), update]


def extend(current: Any, update: Any) -> list[Any]:
    """Concatenate lists."""
    return [*(current or ()), *update]


def add(current: Any, update: Any) -> Any:
    """Sum numbers (counters, costs)."""
    return update if current is None else current + update


def union(current: Any, update: Any) -> Any:
    """Merge dicts (later keys win) or sets."""
    if current is None:
        return update
    if isinstance(current, Mapping):
        return {**current, **update}
    return current | update


def check_merges(merge: Mapping[str, Merge]) -> dict[str, Merge]:
    for name, fn in merge.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(
                f"merge rules map a field name to a function (current, update) -> merged, "
                f"e.g. {{'notes': wfkit.append}}; got {name!r}: {fn!r}"
            )
    return dict(merge)
