"""Whether a process of this host is still alive, by its pid: the store asks it of a run's lease
holder, the step log of a Dask job's driver.

Why two bodies: POSIX answers with signal 0, which checks a pid and delivers nothing. On Windows
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
        return True
    return True


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
