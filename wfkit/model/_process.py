"""Whether a process of this host is still alive, by its pid: the store asks it of a run's lease
holder, the step log of a Dask job's driver.

Why two bodies: POSIX answers with signal 0, which checks a pid and delivers nothing (on Linux,
a zombie's pid answers too, so its state is read from /proc). On Windows
``os.kill`` has no such signal: 0 is ``CTRL_C_EVENT``, so asking would interrupt the console
process group the pid leads (a kernel, a driver), and any other number terminates the process.
There the process is opened for a query of its exit code, which never touches it.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

# Windows: the access right that lets a process's exit code be read, the exit code of one that
# has not ended, and the errors OpenProcess gives for a pid of another user's process (it
# exists) and for one that does not exist.
_QUERY_LIMITED_INFORMATION = 0x1000
_STILL_ACTIVE = 259
_ACCESS_DENIED = 5


def _posix_pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return not _linux_zombie(pid)


def _linux_zombie(pid: int) -> bool:
    """Whether ``pid`` is a process that died and waits for its parent to reap it (state ``Z``,
    or ``X`` as it goes). Signal 0 still finds such a pid, but it runs nothing: a notebook that
    started a run with ``subprocess.Popen`` and never waited would otherwise hold that run's lease
    after a kill -9 until it expired. Read, never reaped: the zombie is its parent's to wait for.
    Linux only (elsewhere, and when /proc cannot be read, the pid counts as alive, as signal 0 says)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # "PID (NAME) STATE ...": the name may hold spaces and parentheses, so the state follows the last ')'.
    after = stat[stat.rfind(b")") + 1 :].split(maxsplit=1)
    return bool(after) and after[0] in (b"Z", b"X")


def windows_pid_alive(pid: int, kernel32: Any, last_error: Any) -> bool:
    """``pid_alive`` through the Windows API: ``kernel32`` is the DLL (loaded with
    ``use_last_error``) and ``last_error`` reads the error of its last call."""
    import ctypes

    handle = kernel32.OpenProcess(_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return bool(last_error() == _ACCESS_DENIED)  # another user's process; else there is none
    try:
        code = ctypes.c_ulong()  # a DWORD
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # it could be opened, so it exists; its state could not be read
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


@functools.lru_cache(maxsize=1)
def _kernel32() -> Any:  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    # A HANDLE is pointer-wide: ctypes' default (a C int) would cut it in half on 64-bit Windows.
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    return kernel32


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts: it exists, it is not ours)."""
    if sys.platform == "win32":  # pragma: no cover - exercised through windows_pid_alive's test
        import ctypes

        return windows_pid_alive(pid, _kernel32(), ctypes.get_last_error)  # type: ignore[attr-defined]
    return _posix_pid_alive(pid)
