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
import signal
import socket
import threading
from collections.abc import Coroutine, Iterator
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


@contextlib.contextmanager
def woken_by_signals() -> Iterator[None]:
    """While it lasts, a signal (the notebook's stop button: SIGINT) wakes the running loop of the
    main thread.

    ipykernel stops a cell awaiting a coroutine by cancelling it from its SIGINT handler with a
    plain ``call_soon`` (tornado's ``add_callback`` on the loop's own thread), which does not wake a
    loop asleep in ``select``: the cancellation waited for the loop's next timer or I/O, for a long
    step the whole eval. A wakeup fd (``signal.set_wakeup_fd``) makes the signal itself wake it.
    Kept when another one is set already (``asyncio``'s signal handlers, a runner)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    loop = asyncio.get_running_loop()
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    ours = writer.fileno()
    try:
        previous = signal.set_wakeup_fd(ours, warn_on_full_buffer=False)
        if previous != -1:  # someone wakes the loop already
            signal.set_wakeup_fd(previous)
        else:
            try:
                loop.add_reader(reader.fileno(), _drain, reader)
            except NotImplementedError:  # a loop without readers (Windows' proactor): none here
                signal.set_wakeup_fd(-1)
                previous = ours
    except BaseException:
        reader.close()
        writer.close()
        raise
    try:
        yield
    finally:
        if previous == -1:
            loop.remove_reader(reader.fileno())
            current = signal.set_wakeup_fd(-1)
            if current != ours:  # set by someone else meanwhile: theirs stays
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
