"""Durations and counts as people read them: 0.000147 s is "0.147 ms", 83.2 s is "1 min 23 s",
1 run is "1 run" and 1200 are "1,200 runs"."""

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
    """Tick labels of a seconds axis (a matplotlib FuncFormatter): "10 ms", "125 ms", "1 s",
    "2 min 30 s", "1 h 6 min 40 s". A label is true to its tick: it has the fewest significant
    figures that write the tick's position exactly (175 ms is "175 ms", never "180 ms"; up to six),
    and past a minute it keeps every second (62.5 s, not a whole second, is "62.5 s")."""
    value = float(value)
    if not math.isfinite(value):
        return ""
    if value == 0:
        return "0 s"
    digits = next((d for d in range(1, 7) if math.isclose(float(f"{value:.{d}g}"), value, rel_tol=1e-9)), 6)
    size = abs(value)
    if size < 60:
        return format_seconds(value, digits=digits)
    sign = "-" if value < 0 else ""
    whole = round(size)
    if not math.isclose(size, whole, rel_tol=0, abs_tol=1e-6):
        return f"{sign}{_sig(size, digits)} s"
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    if not hours:
        return f"{sign}{minutes} min {seconds} s"
    return f"{sign}{hours} h {minutes} min" + (f" {seconds} s" if seconds else "")


def count_of(count: int, noun: str) -> str:
    """``count`` with ``noun``, plural unless it is one: "1 run", "0 runs", "1,200 runs"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
