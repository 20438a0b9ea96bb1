"""Whether a process is alive, by its pid: signal 0 on POSIX, the exit code's query on Windows
(where ``os.kill(pid, 0)`` would send Ctrl+C to the process group the pid leads)."""

from __future__ import annotations

import os
import subprocess
import sys
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
