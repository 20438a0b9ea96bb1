"""Where coroutines run: run_blocking from plain code or a running loop, and the background loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest
from kernels import Kernel, running_kernel

from wfkit.engine import _loops

_REQUEST: ContextVar[str] = ContextVar("test_loops_request", default="unset")


async def _thread_ident() -> int:
    return threading.get_ident()


async def _read_request() -> str:
    return _REQUEST.get()


async def _fail() -> None:
    raise KeyError("missing thing")


# ---- running_loop() ------------------------------------------------------------------------------


def test_running_loop_is_none_outside_a_loop() -> None:
    """running_loop() returns None from plain synchronous code."""
    assert _loops.running_loop() is None


def test_running_loop_is_the_current_loop_inside_one() -> None:
    """running_loop() returns the loop the calling coroutine runs on."""

    async def cell() -> bool:
        return _loops.running_loop() is asyncio.get_running_loop()

    assert asyncio.run(cell())


# ---- run_blocking() ------------------------------------------------------------------------------


def test_run_blocking_from_plain_code_returns_the_result_on_this_thread() -> None:
    """From plain code run_blocking runs the coroutine on the calling thread and returns its result."""
    assert threading.get_ident() == _loops.run_blocking(_thread_ident())


def test_run_blocking_inside_a_running_loop_uses_another_thread() -> None:
    """Inside a running loop run_blocking does the work on a worker thread, not the loop's thread."""

    async def cell() -> tuple[int, int, str]:
        loop_thread = threading.get_ident()

        async def where() -> tuple[int, str]:
            return threading.get_ident(), threading.current_thread().name

        work_thread, name = _loops.run_blocking(where())
        return loop_thread, work_thread, name

    loop_thread, work_thread, name = asyncio.run(cell())
    assert loop_thread != work_thread
    assert name.startswith("wfkit-run")


def test_run_blocking_inside_a_loop_leaves_that_loop_usable() -> None:
    """After run_blocking returns inside a running loop, the loop keeps running coroutines."""

    async def cell() -> tuple[int, int]:
        blocked = _loops.run_blocking(asyncio.sleep(0, result=1))
        await asyncio.sleep(0)
        return blocked, 2

    assert (1, 2) == asyncio.run(cell())


def test_run_blocking_sees_the_callers_context_vars_from_plain_code() -> None:
    """A ContextVar the caller set is visible inside the coroutine run from plain code."""
    token = _REQUEST.set("plain")
    try:
        assert "plain" == _loops.run_blocking(_read_request())
    finally:
        _REQUEST.reset(token)


def test_run_blocking_sees_the_callers_context_vars_inside_a_loop() -> None:
    """A ContextVar set in a notebook cell reaches the coroutine run on the worker thread."""

    async def cell() -> str:
        _REQUEST.set("in-cell")  # the task's own context copy: nothing leaks out of asyncio.run
        return _loops.run_blocking(_read_request())

    assert "in-cell" == asyncio.run(cell())


def test_run_blocking_does_not_leak_context_changes_back() -> None:
    """ContextVar changes made inside the coroutine stay inside it."""

    async def change() -> str:
        _REQUEST.set("changed inside")
        return _REQUEST.get()

    token = _REQUEST.set("outside")
    try:
        assert "changed inside" == _loops.run_blocking(change())
        assert "outside" == _REQUEST.get()
    finally:
        _REQUEST.reset(token)


def test_run_blocking_propagates_exceptions_from_plain_code() -> None:
    """An exception raised by the coroutine reaches the plain-code caller unchanged."""
    with pytest.raises(KeyError, match="missing thing"):
        _loops.run_blocking(_fail())


def test_run_blocking_propagates_exceptions_inside_a_loop() -> None:
    """An exception raised on the worker thread's loop reaches the caller inside the running loop."""

    async def cell() -> None:
        _loops.run_blocking(_fail())

    with pytest.raises(KeyError, match="missing thing"):
        asyncio.run(cell())


# ---- background_loop() ---------------------------------------------------------------------------


def test_background_loop_is_the_same_running_loop_each_time() -> None:
    """Repeated calls give one loop, which runs coroutines and stays running."""
    loop = _loops.background_loop()
    assert loop is _loops.background_loop()
    assert 7 == asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result=7), loop).result(timeout=2)
    assert loop.is_running()
    assert not loop.is_closed()


def test_background_loop_runs_on_its_own_daemon_thread() -> None:
    """Coroutines sent to the background loop run on a daemon thread named wfkit-loop."""

    async def where() -> tuple[int, str, bool]:
        thread = threading.current_thread()
        return threading.get_ident(), thread.name, thread.daemon

    ident, name, daemon = asyncio.run_coroutine_threadsafe(where(), _loops.background_loop()).result(2)
    assert threading.get_ident() != ident
    assert "wfkit-loop" == name
    assert daemon


def test_background_loop_propagates_exceptions_through_the_future() -> None:
    """An exception in a coroutine on the background loop is raised by the future's result()."""
    future = asyncio.run_coroutine_threadsafe(_fail(), _loops.background_loop())
    with pytest.raises(KeyError, match="missing thing"):
        future.result(timeout=2)


def test_background_loop_is_replaced_once_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the remembered background loop has been closed, a fresh running one takes its place."""
    closed = asyncio.new_event_loop()
    closed.close()
    monkeypatch.setattr(_loops, "_background", closed)
    fresh = _loops.background_loop()
    try:
        assert fresh is not closed
        assert fresh is _loops.background_loop()
        assert 3 == asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result=3), fresh).result(timeout=2)
    finally:
        fresh.call_soon_threadsafe(fresh.stop)
        deadline = time.monotonic() + 2
        while fresh.is_running() and time.monotonic() < deadline:
            time.sleep(0.001)
        fresh.close()


# ---- an interrupt in a notebook ------------------------------------------------------------------

_SLOW_CELL = """
import asyncio, pathlib, wfkit as wf
flow = wf.Workflow("slow-refund")

@flow.step
async def refund(state):
    pathlib.Path({started!r}).touch()
    await asyncio.sleep(30)
    pathlib.Path({finished!r}).touch()  # the side effect the stop button must prevent
    return {{"refunded": True}}
"""


def test_the_stop_button_cancels_a_blocking_run_in_a_notebook(tmp_path: Path) -> None:
    """`flow.run(...)` in a notebook cell (a running loop: the run goes to a worker thread's loop)
    interrupted by the kernel's stop button: the cell ends at once with KeyboardInterrupt and the
    run is cancelled (resumable), as Ctrl-C does in a script. Before, the interrupt was held until
    the run had finished: the step's side effect happened and the run succeeded behind the
    KeyboardInterrupt the notebook showed."""
    import wfkit as wf

    started, finished, workspace = tmp_path / "started", tmp_path / "finished", tmp_path / "ws"
    with running_kernel(workspace) as kernel:
        kernel.run(_SLOW_CELL.format(started=str(started), finished=str(finished)), timeout=60)
        sent = kernel.send("run = flow.run({})", started=started.exists, timeout=60)
        t0 = time.monotonic()
        reply = kernel.interrupt(sent, timeout=20)
        waited = time.monotonic() - t0
    assert ("error", "KeyboardInterrupt") == (reply["status"], reply["ename"])
    assert waited < 15, f"the cell ended {waited:.1f} s after the interrupt: the run was waited for"
    assert not finished.exists()
    (stored,) = wf.Workspace(workspace).runs()
    assert "cancelled" == stored["status"]


_HELD_FLOW = """
import asyncio, pathlib, wfkit as wf
RELEASE = pathlib.Path({release!r})
flow = wf.Workflow("held-refund")

@flow.step
async def prepare(state):
    with open({prepared!r}, "a") as f:
        f.write("x")
    return {{"amount": 120}}

@flow.step
async def refund(state):
    pathlib.Path({started!r}).touch()
    if not RELEASE.exists():
        await asyncio.sleep(120)  # nothing else on the kernel's loop wakes it meanwhile
    return {{"refunded": True}}

flow.edge("prepare", "refund")
"""


def _interrupted_while_held(kernel: Kernel, tmp_path: Path, cell: str) -> dict[str, Any]:
    """Define ``_HELD_FLOW`` in ``kernel``, send ``cell``, and press the stop button once its step
    sleeps and the kernel's loop has gone quiet: the content of that cell's reply."""
    started, release, prepared = tmp_path / "started", tmp_path / "release", tmp_path / "prepared"
    kernel.run(_HELD_FLOW.format(release=str(release), started=str(started), prepared=str(prepared)), timeout=60)
    sent = kernel.send(cell, started=started.exists, timeout=60)
    time.sleep(2)  # the step sleeps and the kernel's loop has gone quiet
    return kernel.interrupt(sent, timeout=60)  # before the fix: a timeout, the step sleeping on


def test_the_stop_button_stops_a_run_awaited_in_a_notebook(tmp_path: Path) -> None:
    """`await flow.arun(...)` in a notebook cell (top-level await) interrupted by the kernel's stop
    button: the cell ends while the step still sleeps, the run is stored cancelled with the step
    cut off, and resuming it runs only that step. Before, the cell stayed busy until the step's
    sleep ended: the interrupt waited for the loop's next wake-up."""
    with running_kernel(tmp_path / "ws") as kernel:
        reply = _interrupted_while_held(kernel, tmp_path, "run = await flow.arun({})")
        check = (
            "(stored,) = wf.Workspace().runs()\n"
            "print('run', stored['status'])\n"
            "rows = wf.steps(run_id=stored['run_id'])\n"
            "print('rows', list(zip(rows['step'], rows['error_type'].astype(object).fillna(''))))\n"
            "release = RELEASE.touch()\n"
            "print('resumed', flow.resume(stored['run_id']).status)"
        )
        printed = kernel.run(check, timeout=120).printed
    assert "error" == reply["status"]
    assert reply["ename"] in ("CancelledError", "KeyboardInterrupt")
    assert "run cancelled\n" in printed, printed
    assert "rows [('prepare', ''), ('refund', 'CancelledError')]\n" in printed, printed
    assert "resumed succeeded\n" in printed, printed
    assert "x" == (tmp_path / "prepared").read_text()  # the completed step did not run again


def test_a_signal_wakes_the_loop_for_a_call_still_under_way_when_another_has_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two calls under `woken_by_signals` (a cell gathering two runs): once the quick one has
    ended, a signal still wakes the loop for the other, so a handler that cancels it with a plain
    `call_soon` (as ipykernel's stop button does) cancels it at once; before, the first call to end
    took the wakeup fd away and the cancellation waited for the other's step to end."""
    import signal

    monkeypatch.setattr(_loops, "in_kernel", lambda: True)  # (a wakeup fd serves a kernel's handler only)
    release = threading.Event()

    @_loops.woken_by_signals
    async def quick() -> str:
        return "quick"

    @_loops.woken_by_signals
    async def held() -> str:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)  # nothing wakes the loop
        return "held"

    async def main() -> tuple[list[object], bool]:
        loop = asyncio.get_running_loop()
        # held() first: it is under way when quick() starts and ends.
        task = asyncio.ensure_future(asyncio.gather(held(), quick(), return_exceptions=True))
        previous = signal.signal(signal.SIGUSR1, lambda *_: loop.call_soon(task.cancel))
        try:
            await asyncio.sleep(0.5)  # quick() has ended, held() waits in its thread
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            try:
                got = await task
            except asyncio.CancelledError:
                got = ["cancelled"]
            return got, release.is_set()
        finally:
            signal.signal(signal.SIGUSR1, previous)
            release.set()

    unheld = threading.Timer(30, release.set)  # without a wake-up, the cancellation comes only now
    unheld.start()
    try:
        got, released = asyncio.run(main())
    finally:
        unheld.cancel()
    assert not released, "the cancellation waited for the held call to end"
    assert ["cancelled"] == got
    assert -1 == signal.set_wakeup_fd(-1)  # the last call to end took its wakeup fd away


def test_the_stop_button_frees_a_cell_awaiting_a_started_run_and_leaves_the_run_going(tmp_path: Path) -> None:
    """`run = flow.start(...)` then `await run` in a notebook cell, interrupted by the stop button:
    the cell ends while the step still sleeps, and the run goes on (it is cancelled only by
    `run.cancel()`). Before, the cell stayed busy until the step's sleep ended."""
    with running_kernel(tmp_path / "ws") as kernel:
        reply = _interrupted_while_held(kernel, tmp_path, "run = flow.start({})\nawait run")
        printed = kernel.run("print('run', run.status)", timeout=60).printed
        kernel.run("run.cancel()", timeout=60)  # (its outcome is not this test's)
    assert ("error", "CancelledError") == (reply["status"], reply["ename"])
    assert "run running\n" == printed


def test_a_step_the_stop_button_stopped_is_no_failure_in_the_step_log(tmp_path: Path) -> None:
    """The stop button on a notebook cell running `flow.run(...)` cancels the run; the attempt it
    stopped is recorded as `cancelled` in the journal and the step log, and `failures()` counts no
    failure of the step (it recorded the user's own stop as a failure of kind unknown)."""
    import wfkit as wf

    started, finished, workspace = tmp_path / "started", tmp_path / "finished", tmp_path / "ws"
    with running_kernel(workspace) as kernel:
        kernel.run(_SLOW_CELL.format(started=str(started), finished=str(finished)), timeout=60)
        sent = kernel.send("run = flow.run({})", started=started.exists, timeout=60)
        reply = kernel.interrupt(sent, timeout=60)
    assert ("error", "KeyboardInterrupt") == (reply["status"], reply["ename"])
    (stored,) = wf.Workspace(workspace).runs()
    assert "cancelled" == stored["status"]
    events = wf.Workspace(workspace).events(stored["run_id"])
    assert [("refund", 1, "cancelled", None, "CancelledError")] == [
        (e.step, e.attempt, e.status, e.error_kind, e.error_type) for e in events
    ]
    failures = wf.steps(workspace).wf.failures()
    assert (1, 0) == tuple(failures.loc[("slow-refund", "refund"), ["attempts", "failed"]])
