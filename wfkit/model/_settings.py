"""Process-wide knobs the engine reads at run start: test mode (instant backoff, seeded
randomness) and extra sinks from ``wfkit.testing.capture_events``. Held in a ContextVar so a test
or a notebook cell can switch them for its own scope only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from wfkit.model._events import StepEvent


async def _instant_sleep(delay: float) -> None:
    await asyncio.sleep(0)


@dataclass(frozen=True)
class Settings:
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    seed: int | None = None
    testing: bool = False
    extra_sinks: tuple[Callable[[StepEvent], object], ...] = field(default=())


_current: ContextVar[Settings] = ContextVar(
    "wfkit_settings",
    default=Settings(),  # noqa: B039 - Settings is a frozen dataclass, never mutated
)


def current() -> Settings:
    return _current.get()


def testing_settings(seed: int = 0) -> Settings:
    return replace(current(), sleep=_instant_sleep, seed=seed, testing=True)


def push(settings: Settings) -> Any:
    return _current.set(settings)


def pop(token: Any) -> None:
    _current.reset(token)
