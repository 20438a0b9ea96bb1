"""The test kit: capture step events, and a test mode with instant backoff and seeded randomness.

from wfkit.testing import capture_events, test_mode

with test_mode(seed=7), capture_events() as events:
    flow.run({"query": "..."})
assert [e.status for e in events] == ["retry", "ok"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from wfkit.model import _settings
from wfkit.model._events import StepEvent

if TYPE_CHECKING:
    from wfkit.llm._cassette import Cassette
    from wfkit.llm._simulated import SimulatedModel

__all__ = ["Cassette", "MemorySink", "SimulatedModel", "capture_events", "test_mode"]


class MemorySink:
    """Keeps every event in a list: ``Workflow.run(..., sinks=[sink])``, then ``sink.events``."""

    def __init__(self) -> None:
        self.events: list[StepEvent] = []
        self.emit = self.events.append  # bound once: emitting is one C call

    def clear(self) -> None:
        self.events.clear()

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[StepEvent]:
        return iter(self.events)

    def __repr__(self) -> str:
        return f"<MemorySink {len(self.events)} events>"


@contextmanager
def capture_events() -> Iterator[list[StepEvent]]:
    """Collect the events of every run started inside the block into the yielded list."""
    events: list[StepEvent] = []
    current = _settings.current()
    token = _settings.push(dataclasses.replace(current, extra_sinks=(*current.extra_sinks, events.append)))
    try:
        yield events
    finally:
        _settings.pop(token)


@contextmanager
def test_mode(seed: int = 0) -> Iterator[None]:
    """Inside the block: backoff sleeps return at once, and each run's randomness is seeded."""
    token = _settings.push(_settings.testing_settings(seed))
    try:
        yield
    finally:
        _settings.pop(token)


test_mode.__test__ = False  # type: ignore[attr-defined]  # keep pytest from collecting it


def __getattr__(name: str) -> object:
    # The simulated model and cassettes belong to the test kit too; they import httpx, so lazily.
    if name == "SimulatedModel":
        from wfkit.llm._simulated import SimulatedModel

        return SimulatedModel
    if name == "Cassette":
        from wfkit.llm._cassette import Cassette

        return Cassette
    raise AttributeError(f"module 'wfkit.testing' has no attribute {name!r}")
