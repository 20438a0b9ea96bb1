"""Resources that belong to one event loop: an httpx connection pool per loop, closed with it."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One resource per event loop, closed when that loop shuts down or on :meth:`aclose`.

    httpx connections belong to the loop that opened them, and ``Workflow.run`` gives every run a
    fresh loop. A started async generator per loop is the hook: ``asyncio.run`` closes every live
    async generator (``shutdown_asyncgens``) before closing its loop, which runs our ``finally``
    and closes the resource there, so no socket outlives its loop.
    """

    def __init__(self, factory: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> None:
        self._factory, self._close = factory, close
        self._lock = threading.Lock()
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[T, AsyncGenerator[None, None]]]
        self._items = weakref.WeakKeyDictionary()

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._items.get(loop)
            if entry is not None:
                return entry[0]
            resource = self._factory()
            keeper = self._keeper(loop, resource)
            self._items[loop] = (resource, keeper)
        await keeper.asend(None)  # registers it with the loop's async-generator hooks
        return resource

    async def _keeper(self, loop: asyncio.AbstractEventLoop, resource: T) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._release(loop, resource) is not None:
                await self._close(resource)

    def _release(self, loop: asyncio.AbstractEventLoop, resource: T | None = None) -> T | None:
        """Forget the loop's resource and return it, unless it is gone (or another one) already.

        Whoever releases it closes it, exactly once: shutdown_asyncgens closes every keeper at
        the same time, and one resource's close may close another (a client its transport)."""
        with self._lock:
            entry = self._items.get(loop)
            if entry is None or (resource is not None and entry[0] is not resource):
                return None
            del self._items[loop]
            return entry[0]

    async def aclose(self) -> None:
        """Close the running loop's resource now (other loops' close when those loops end)."""
        resource = self._release(asyncio.get_running_loop())
        if resource is not None:
            await self._close(resource)
