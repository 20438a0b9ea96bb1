"""Durations as people read them: 0.000147 s is "0.147 ms", 83.2 s is "1 min 23 s"."""

from __future__ import annotations

import math


def _sig(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant figures, never in exponent form: 279 -> "280"."""
    return f"{float(f'{value:.{digits}g}'):g}" if value < 10**digits else f"{value:.0f}"


def format_seconds(seconds: float | None, *, digits: int = 3) -> str:
    """A duration with a unit that keeps ``digits`` significant figures: µs, ms, s, min or h."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    value = float(seconds)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value == 0:
        return "0 s"
    # Round first: 0.99996 s is "1 s", not "1000 ms".
    value = float(f"{value:.{digits}g}")
    if value < 1e-3:
        return f"{sign}{_sig(value * 1e6, digits)} µs"
    if value < 1:
        return f"{sign}{_sig(value * 1e3, digits)} ms"
    if value < 60:
        return f"{sign}{_sig(value, digits)} s"
    if value < 3600:
        minutes, rest = divmod(round(value), 60)
        return f"{sign}{minutes} min {rest} s"
    hours, rest = divmod(round(value), 3600)
    return f"{sign}{hours} h {rest // 60} min"


def axis_seconds(value: float, _position: object = None) -> str:
    """Tick labels of a seconds axis (a matplotlib FuncFormatter): "10 ms", "1 s", "2 min 0 s"."""
    return format_seconds(value, digits=2)
