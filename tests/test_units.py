"""Durations and counts as people read them: the unit that keeps three significant figures, no
exponents; a noun plural unless the count is one."""

from __future__ import annotations

import pytest

from wfkit.logs._units import axis_seconds, count_of, format_seconds


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


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.125, "125 ms"),
        (0.175, "175 ms"),
        (0.1, "100 ms"),
        (0.1 + 0.2, "300 ms"),  # a locator's float sum reads as the round value it is
        (0.279, "279 ms"),
        (1.25, "1.25 s"),
        (0.05005, "50.05 ms"),
        (0.0005, "500 µs"),
        (0, "0 s"),
        (-0.025, "-25 ms"),
        (62.5, "62.5 s"),
        (90, "1 min 30 s"),
        (120, "2 min 0 s"),
        (4000, "1 h 6 min 40 s"),
        (7200, "2 h 0 min"),
    ],
)
def test_axis_labels_are_true_to_their_ticks(seconds: float, text: str) -> None:
    """A tick label writes its tick's position exactly, with the fewest figures that do: a tick at
    125 ms reads "125 ms", never "120 ms"; past a minute every second is kept."""
    assert text == axis_seconds(seconds, None)


@pytest.mark.parametrize(("count", "text"), [(0, "0 runs"), (1, "1 run"), (2, "2 runs"), (1200, "1,200 runs")])
def test_count_of_is_singular_for_one(count: int, text: str) -> None:
    """One run is "1 run", every other count plural, thousands separated."""
    assert text == count_of(count, "run")
