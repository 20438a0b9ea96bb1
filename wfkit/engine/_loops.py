"""Where a run's coroutine executes when the caller is not already inside an event loop.

Jupyter cells run inside the kernel's loop, so wfkit never calls ``asyncio.run`` there and never
needs nest_asyncio: a blocking call is sent to a fresh loop in a worker thread, and a started run
becomes a task on the kernel's own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from wfkit.engine._mode import in_kernel

P = ParamSpec("P")
T = TypeVar("T")

_background: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, inside a running loop or not.

    An interrupt (Ctrl-C; a notebook's stop button) cancels ``coro``: outside a loop
    ``asyncio.run`` does; inside one the interrupt reaches this thread while ``coro`` runs in the
    worker's, so it is cancelled there (a run ends ``cancelled``, resumable, as in a script), and
    the KeyboardInterrupt it raises in turn (one noting what it gave up) is raised, else the
    interrupt. Waited for all the same, a run went on to its end (its side effects too) behind
    the KeyboardInterrupt the notebook showed."""
    ctx = contextvars.copy_context()
    if running_loop() is None:
        return ctx.run(asyncio.run, coro)
    # Inside a running loop (a notebook cell): a fresh loop in a worker thread does the work.
    started: concurrent.futures.Future[asyncio.Task[T]] = concurrent.futures.Future()

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None  # a coroutine asyncio.run runs is in a task
        started.set_result(task)
        return await coro

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wfkit-run") as pool:
        done = pool.submit(ctx.run, asyncio.run, main())
        try:
            return done.result()
        except KeyboardInterrupt:
            task = started.result()
            task.get_loop().call_soon_threadsafe(task.cancel)
            try:
                done.result()
            except KeyboardInterrupt as own:
                raise own from None
            except BaseException:  # cancelled, or failed meanwhile: the interrupt is the news
                pass
            raise


def woken_by_signals(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``fn`` awaited while a signal (the notebook's stop button: SIGINT) wakes the running loop of
    the main thread: in a notebook cell, the stop button cancels it at once.

    ipykernel stops a cell awaiting a coroutine by cancelling it from its SIGINT handler with a
    plain ``call_soon`` (tornado's ``add_callback`` on the loop's own thread), which does not wake a
    loop asleep in ``select``: the cancellation waited for the loop's next timer or I/O, for a long
    step the end of that step. A wakeup fd (``signal.set_wakeup_fd``) makes the signal itself wake
    it; one serves every call under way on the loop (a cell gathering many runs, an eval's runs)."""

    @functools.wraps(fn)
    def woken(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        if not in_kernel():
            # Outside a kernel the handler wakes the loop itself (asyncio.run's Ctrl-C handler
            # does), where a wakeup fd's reader would only make a quiet loop look busy (the store's
            # writer commits on a quiet loop at FULL). ``fn``'s own coroutine, with no second one
            # around it: ten thousand runs awaited together would each keep one more object for
            # the cyclic collector.
            return fn(*args, **kwargs)
        return _awaited_woken(fn(*args, **kwargs))

    return woken


async def _awaited_woken(call: Coroutine[Any, Any, T]) -> T:
    """``call`` awaited with the main thread's loop woken by signals (:func:`woken_by_signals`).
    Where it is awaited decides, not where it was made: a kernel's cell may make it on the main
    thread and hand it to another thread's loop (``run_blocking``)."""
    if threading.current_thread() is not threading.main_thread():
        return await call  # signals reach the main thread only
    _Waker.enter()
    try:
        return await call
    finally:
        _Waker.leave()


class _Waker:
    """The wakeup fd of the main thread's running loop: set by the first call under way, taken
    away by the last (main thread only: no lock). Kept when another one is set already
    (``asyncio``'s signal handlers, a runner)."""

    users = 0
    loop: asyncio.AbstractEventLoop | None = None
    pair: tuple[socket.socket, socket.socket] | None = None  # None while another wakeup fd serves

    @classmethod
    def enter(cls) -> None:
        loop = asyncio.get_running_loop()
        if cls.users and cls.loop is loop:
            cls.users += 1
            return
        if cls.users:  # calls left behind by a loop that is gone: its wakeup fd goes too
            cls.users = 1
            cls._release()
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        if previous == -1:
            try:
                loop.add_reader(reader.fileno(), _drain, reader)
            except NotImplementedError:  # a loop without readers (Windows' proactor): none here
                signal.set_wakeup_fd(-1)
            else:
                cls.users, cls.loop, cls.pair = 1, loop, (reader, writer)
                return
        else:  # someone wakes the loop already
            signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        cls.users, cls.loop, cls.pair = 1, loop, None

    @classmethod
    def leave(cls) -> None:
        if cls.users and cls.loop is running_loop():
            cls._release()

    @classmethod
    def _release(cls) -> None:
        cls.users -= 1
        if cls.users or cls.pair is None or cls.loop is None:
            return
        (reader, writer), loop = cls.pair, cls.loop
        cls.pair = cls.loop = None
        if not loop.is_closed():
            loop.remove_reader(reader.fileno())
        current = signal.set_wakeup_fd(-1)
        if current != writer.fileno():  # set by someone else meanwhile: theirs stays
            signal.set_wakeup_fd(current)
        reader.close()
        writer.close()


def _drain(reader: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while reader.recv(4096):
            pass


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
