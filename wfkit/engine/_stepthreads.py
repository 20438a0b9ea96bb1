"""The threads where plain ``def`` steps run, so they never block the event loop.

Daemon threads, unlike ``concurrent.futures.ThreadPoolExecutor``'s, which the interpreter joins
at exit: a body that overstayed its timeout is abandoned by its run, and one that never returns (a
socket read without a timeout) must not keep ``wfkit run`` or a script from exiting once its runs
ended. At exit such a body stops where it is, as it would on a kill. An irreversible step's body
is never abandoned so (its run waits for it), so this leaves no side effect half done unknown.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_Work = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]


class StepThreads:
    """At most ``size`` daemon threads, started as work comes and kept for the next."""

    def __init__(self, size: int, name: str) -> None:
        self._size, self._name = size, name
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one per thread waiting for work
        self._lock = threading.Lock()
        self._started = 0

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in a thread; its future can be cancelled until the thread takes it."""
        future: Future[T] = Future()
        self._work.put((future, fn, args))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if self._started < self._size:
                    self._started += 1
                    name = f"{self._name}_{self._started - 1}"
                    threading.Thread(target=self._serve, name=name, daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            future, fn, args = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # the step's to judge, as the pool's futures do
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args  # hold no result or traceback while idle
            self._idle.release()
