"""Process-wide knobs held in a ContextVar: defaults, push/pop, test settings, and what the engine reads."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from typing import Any

import pytest

import wfkit as wf
from wfkit.model import _settings


def test_current_defaults() -> None:
    """Outside any override: real asyncio.sleep, no seed, not testing, no extra sinks."""
    settings = _settings.current()
    assert asyncio.sleep is settings.sleep
    assert settings.seed is None
    assert settings.testing is False
    assert () == settings.extra_sinks
    assert _settings.Settings() == settings


def test_settings_are_frozen() -> None:
    """A Settings value cannot be changed in place; replace() makes a new one."""
    settings = _settings.current()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 3  # type: ignore[misc]
    assert 3 == dataclasses.replace(settings, seed=3).seed
    assert settings.seed is None


def test_push_then_pop_restores_the_previous_settings() -> None:
    """push() makes settings current; pop() with its token puts back what was there before."""
    before = _settings.current()
    pushed = _settings.Settings(seed=11)
    token = _settings.push(pushed)
    try:
        assert pushed is _settings.current()
    finally:
        _settings.pop(token)
    assert before is _settings.current()


def test_nested_push_pop_restores_each_level() -> None:
    """Nested pushes unwind level by level."""
    base = _settings.current()
    outer = _settings.Settings(seed=1)
    inner = _settings.Settings(seed=2)
    outer_token = _settings.push(outer)
    try:
        inner_token = _settings.push(inner)
        try:
            assert 2 == _settings.current().seed
        finally:
            _settings.pop(inner_token)
        assert outer is _settings.current()
    finally:
        _settings.pop(outer_token)
    assert base is _settings.current()


def test_push_in_another_context_does_not_leak() -> None:
    """Settings pushed inside a copied context (a task, a thread) stay in that context."""
    before = _settings.current()

    def inside() -> int | None:
        _settings.push(_settings.Settings(seed=99))
        return _settings.current().seed

    assert 99 == contextvars.copy_context().run(inside)
    assert before is _settings.current()


def test_testing_settings_carries_the_seed_and_the_testing_flag() -> None:
    """testing_settings(seed) gives that seed and testing=True; the default seed is 0."""
    settings = _settings.testing_settings(seed=42)
    assert (42, True) == (settings.seed, settings.testing)
    assert 0 == _settings.testing_settings().seed


def test_testing_settings_sleep_is_instant() -> None:
    """Awaiting the test sleep for 100 s returns at once."""
    sleep = _settings.testing_settings(seed=1).sleep

    async def nap() -> None:
        async with asyncio.timeout(2):
            await sleep(100)

    t0 = time.monotonic()
    asyncio.run(nap())
    assert time.monotonic() - t0 < 2


def test_testing_settings_does_not_make_itself_current() -> None:
    """testing_settings() only builds a value; current() is unchanged until it is pushed."""
    before = _settings.current()
    _settings.testing_settings(seed=5)
    assert before is _settings.current()


def test_testing_settings_keeps_current_extra_sinks() -> None:
    """testing_settings() starts from the current settings, so sinks already installed stay."""
    sink = [].append
    token = _settings.push(_settings.Settings(extra_sinks=(sink,)))
    try:
        assert (sink,) == _settings.testing_settings(seed=3).extra_sinks
    finally:
        _settings.pop(token)


def _one_step() -> wf.Workflow:
    flow = wf.Workflow("one")
    flow.step(lambda s: {"done": True}, name="only")
    return flow


def test_engine_emits_to_extra_sinks_while_pushed() -> None:
    """A run started while extra sinks are pushed emits to them; after pop it does not."""
    got: list[wf.StepEvent] = []
    flow = _one_step()
    token = _settings.push(dataclasses.replace(_settings.current(), extra_sinks=(got.append,)))
    try:
        run = flow.run({})
    finally:
        _settings.pop(token)
    flow.run({})
    assert run.events == got


def test_engine_backs_off_with_the_current_sleep() -> None:
    """Retry backoff awaits the current settings' sleep with each event's retry delay."""
    slept: list[float] = []

    async def fake_sleep(delay: float) -> Any:
        slept.append(delay)

    flow = wf.Workflow("backoff")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=20, jitter=0))
    def call(state: Any, ctx: wf.StepContext) -> None:
        if ctx.attempt < 3:
            raise ConnectionError("down")

    token = _settings.push(_settings.Settings(sleep=fake_sleep))
    try:
        run = flow.run({})
    finally:
        _settings.pop(token)
    assert [20.0, 40.0] == slept
    assert slept == [e.retry_delay_s for e in run.events if e.status == "retry"]
