"""Durations as the public API takes them: seconds (an int or a float) or a ``datetime.timedelta``,
one conversion for every place that takes one (step and run timeouts, retry delays, cache expiry)."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeAlias, overload

Seconds: TypeAlias = float | dt.timedelta
"""A duration: seconds, or a timedelta."""


@overload
def as_seconds(value: Seconds) -> float: ...
@overload
def as_seconds(value: None) -> None: ...
@overload
def as_seconds(value: Any) -> Any: ...
def as_seconds(value: Any) -> Any:
    """A timedelta in seconds (a float); anything else as given, for the caller to check, so a bad
    value is refused in the caller's own words."""
    return value.total_seconds() if isinstance(value, dt.timedelta) else value
