"""Durations as people read them: the unit that keeps three significant figures, no exponents."""

from __future__ import annotations

import pytest

from wfkit.logs._units import axis_seconds, format_seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.000147, "147 µs"),
        (0.0012345, "1.23 ms"),
        (0.279, "279 ms"),
        (0.99996, "1 s"),
        (1.5, "1.5 s"),
        (12.34, "12.3 s"),
        (83.2, "1 min 23 s"),
        (7200, "2 h 0 min"),
        (0, "0 s"),
        (-0.02, "-20 ms"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_format_seconds_picks_the_unit(seconds: float | None, text: str) -> None:
    """Each duration is written in µs, ms, s, min or h, never as 0.0001472 or 2.8e+02."""
    assert text == format_seconds(seconds)


def test_axis_labels_keep_two_figures() -> None:
    """Tick labels use two significant figures: 279 ms is "280 ms"."""
    assert "280 ms" == axis_seconds(0.279)
    assert "1.2 s" == axis_seconds(1.234, None)
