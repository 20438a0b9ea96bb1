"""Where a run's coroutine executes when the caller is not already inside an event loop.

Jupyter cells run inside the kernel's loop, so wfkit never calls ``asyncio.run`` there and never
needs nest_asyncio: a blocking call is sent to a fresh loop in a worker thread, and a started run
becomes a task on the kernel's own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_background: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, inside a running loop or not."""
    ctx = contextvars.copy_context()
    if running_loop() is None:
        return ctx.run(asyncio.run, coro)
    # Inside a running loop (a notebook cell): a fresh loop in a worker thread does the work.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wfkit-run") as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()


def background_loop() -> asyncio.AbstractEventLoop:
    """A daemon thread's loop for runs started from plain synchronous code."""
    global _background
    with _lock:
        if _background is None or _background.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="wfkit-loop", daemon=True)
            thread.start()
            _background = loop
        return _background
