"""The cyclic garbage collector, kept out of the way of many concurrent runs.

Ten thousand runs sleeping in their steps hold a few hundred thousand container objects, which
live exactly as long as their runs. CPython's collector walks its youngest generation every 700
net new containers, the middle one every tenth time and, as the heap grows, the whole heap: with
that many runs in flight, half of the scheduler's time went to those passes (benchmark W6), and
they could free nothing, since a run's objects hold no reference cycle (tests check that).

So while at least one run is executing in this process, the youngest generation's threshold is
raised to :data:`YOUNG_THRESHOLD` net new containers, and when the last run ends it goes back to
what it was. Nothing is kept from the collector: cyclic garbage, the engine's or the user's, is
still collected, after at most that many container allocations instead of 700 (a few MB of
garbage at most), ``gc.collect()`` works as ever, and a threshold the user sets meanwhile is
left as the user set it. ``WFKIT_GC_THRESHOLD`` sets the raised threshold; ``0`` leaves the
collector's thresholds alone.

The oldest generation's threshold is raised too, to :data:`OLD_THRESHOLD` passes over the middle
one (from 10). Why: a burst of runs starts by creating its coroutines and tasks (an
``asyncio.gather`` of ten thousand ``arun`` calls) before any of them executes, at the default
thresholds: some 120 passes over the youngest generation and a dozen over the middle one, and
that count made a pass in the middle of the burst a full one, over the whole heap (80 to 180 ms
with ten thousand runs in flight, benchmark W6). Raised, the full pass waits until the last run
ended (with the thresholds put back, the collector's next pass is a full one, when CPython's
own rule allows: enough objects reached the oldest generation since the last) or until a
hundred passes over the middle generation, some 50 million net new containers while runs
execute: a cycle that became garbage after it reached the oldest generation waits that long at
most. Measured on W6, 5 runs each way (3 bursts each), interleaved: 0.80 s median against 0.89
s, and 12 full passes in a run's 3 bursts and their asyncio baselines against 15.
"""

from __future__ import annotations

import gc
import threading

from wfkit.model._environ import setting

YOUNG_THRESHOLD = 50_000
"""Net new containers between two passes over the youngest generation while runs execute."""
OLD_THRESHOLD = 100
"""Passes over the middle generation between two full passes while runs execute (CPython's: 10)."""

_ENV = "WFKIT_GC_THRESHOLD"

_lock = threading.Lock()
_in_flight = 0  # runs executing in this process, on any thread's loop
_before: tuple[int, int, int] | None = None  # the thresholds when the first of them started
_raised: tuple[int, int, int] | None = None  # the thresholds set then (to tell a user's change)


def young_threshold() -> int:
    """The threshold to raise the youngest generation's to, from ``WFKIT_GC_THRESHOLD`` (0: none)."""
    raw = setting(_ENV)  # read each time a first run starts: os.environ.get costs 1.2 us when unset
    if raw is None or raw.strip() == "":
        return YOUNG_THRESHOLD
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"{_ENV}={raw!r} is not a whole number >= 0: set it to the net new containers between the "
            f"collector's passes while wfkit runs execute (default {YOUNG_THRESHOLD}), or to 0 to leave "
            f"the collector's thresholds alone"
        )
    return value


def run_started() -> None:
    """A run starts executing: the first of several raises the threshold."""
    global _in_flight, _before, _raised
    with _lock:
        if _in_flight == 0:
            young = young_threshold()  # raises before the count moves: no run_ended() follows
            current = gc.get_threshold()
            if young > current[0]:
                _before, _raised = current, (young, current[1], max(OLD_THRESHOLD, current[2]))
                gc.set_threshold(*_raised)
        _in_flight += 1


def run_ended() -> None:
    """A run stops executing (it ended or halted): the last one puts the threshold back."""
    global _in_flight, _before, _raised
    with _lock:
        _in_flight -= 1
        if _in_flight == 0 and _before is not None:
            if gc.get_threshold() == _raised:  # else the user set thresholds since: theirs stay
                gc.set_threshold(*_before)
            _before = _raised = None
