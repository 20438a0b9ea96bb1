"""Durations as the public API takes them: seconds (an int or a float) or a ``datetime.timedelta``,
one conversion for every place that takes one (step and run timeouts, retry delays, cache expiry)."""

from __future__ import annotations

import datetime as dt
import math
import re
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


def as_timeout(value: Seconds | None, what: str) -> float | None:
    """``value`` as a time limit in seconds (None: no limit), or the error saying why it is none;
    ``what`` names the limit in the message: "step 'fetch': timeout", "a run's timeout".

    A bool is refused (``True`` would be one second), and so is a string (compared with a number
    it fails late, far from where it was given): both a TypeError. Infinity is refused too, as no
    limit is said by leaving the timeout unset, and a flow spec can hold no infinity (``flow.save``
    would write one its loader refuses)."""
    seconds = as_seconds(value)
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(
            f"{what} must be seconds, as a number or a datetime.timedelta, got {value!r} "
            f"({type(value).__name__}){_meant(value)}"
        )
    if seconds == math.inf:
        raise ValueError(
            f"{what} must be a finite number of seconds, got {value!r}: leave the timeout unset (None) "
            f"for no time limit"
        )
    if not seconds > 0:  # zero, negative, NaN
        raise ValueError(f"{what} must be > 0 seconds, got {seconds!r}")
    return seconds


def _meant(value: object) -> str:
    """What a timeout of the wrong type likely meant, as the end of its error."""
    if isinstance(value, bool):
        return ": a bool is no duration; pass seconds (timeout=1 for one second), or leave it unset for no limit"
    seconds = seconds_in_text(value)
    if seconds is not None:
        return f": pass timeout={seconds!r} (a number of seconds, not a string)"
    return ""


# "5", "5s", "1.5 sec", "500ms", "2m", "1h": how a duration is written as text (in a config, a
# spec, another tool's API); its unit, in seconds. Years and days are no step's time limit.
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_UNITS = {
    **dict.fromkeys(("", "s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("ms", "msec", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
}


def seconds_in_text(value: object) -> int | float | None:
    """The seconds a duration written as text says (``"5s"`` 5, ``"500ms"`` 0.5, ``"2m"`` 120),
    a whole number as an int; None when ``value`` is no such text (or says no time at all)."""
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value)
    unit = None if match is None else _UNITS.get(match[2].lower())
    if match is None or unit is None:
        return None
    seconds = round(float(match[1]) * unit, 6)  # (0.1 s in ms is 0.1, not 0.10000000000000002)
    if not (math.isfinite(seconds) and seconds > 0):
        return None
    return int(seconds) if seconds.is_integer() else seconds
