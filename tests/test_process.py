"""Whether a process is alive, by its pid: signal 0 on POSIX, the exit code's query on Windows
(where ``os.kill(pid, 0)`` would send Ctrl+C to the process group the pid leads)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from wfkit.model._process import pid_alive, windows_pid_alive


def test_this_process_is_alive_and_a_reaped_child_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert pid_alive(os.getpid())
    assert not pid_alive(child.pid)


class _Kernel32:
    """The three calls of the Windows API that ``windows_pid_alive`` makes (Windows cannot be
    reached from this machine): OpenProcess fails with ``error`` when ``exit_code`` is None."""

    def __init__(self, *, exit_code: int | None = None, error: int = 0, readable: bool = True) -> None:
        self.exit_code, self.error, self.readable = exit_code, error, readable
        self.opened: list[tuple[int, bool, int]] = []
        self.closed: list[int] = []

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        self.opened.append((access, inherit, pid))
        return 0 if self.exit_code is None else 4242

    def GetExitCodeProcess(self, handle: int, code: Any) -> int:
        if not self.readable:
            return 0
        code._obj.value = self.exit_code
        return 1

    def CloseHandle(self, handle: int) -> int:
        self.closed.append(handle)
        return 1


@pytest.mark.parametrize(
    ("kernel32", "alive"),
    [
        (_Kernel32(exit_code=259), True),  # STILL_ACTIVE
        (_Kernel32(exit_code=0), False),  # it ended (its handle is still held by someone)
        (_Kernel32(exit_code=259, readable=False), True),  # it could be opened: it exists
        (_Kernel32(error=5), True),  # access denied: another user's process
        (_Kernel32(error=87), False),  # invalid parameter: no such process
    ],
)
def test_on_windows_a_pid_is_asked_for_its_exit_code_and_its_handle_closed(kernel32: _Kernel32, alive: bool) -> None:
    assert windows_pid_alive(1234, kernel32, lambda: kernel32.error) is alive
    # Opened for a query only (PROCESS_QUERY_LIMITED_INFORMATION), never for termination or a signal.
    assert kernel32.opened == [(0x1000, False, 1234)]
    assert kernel32.closed == ([] if kernel32.exit_code is None else [4242])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a zombie is read from /proc on Linux only")
def test_a_killed_child_not_yet_waited_for_is_not_alive_whatever_its_name(tmp_path: Any) -> None:
    """A zombie (killed, its parent has not waited) is not alive, though signal 0 still finds its
    pid: its state is read after the last ``)`` of /proc/PID/stat, as its name may hold ``) R (``."""
    tricky = tmp_path / "a) R (b"
    tricky.symlink_to(sys.executable)
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [str(tricky), "-c", f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(300)"]
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None
            assert time.monotonic() < deadline, "the child did not start in 60 s"
            time.sleep(0.01)
        assert pid_alive(child.pid)
        child.kill()
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0] != "Z":  # until the kill landed
            assert time.monotonic() < deadline, "the child is not a zombie after 60 s"
            time.sleep(0.01)
        assert "(a) R (b)" in stat.read_text(encoding="utf-8")  # the name as the kernel shows it
        assert not pid_alive(child.pid)
        assert child.returncode is None  # the check reaped nothing: the zombie is still ours to wait for
        assert stat.exists()
    finally:
        child.wait(timeout=60)
