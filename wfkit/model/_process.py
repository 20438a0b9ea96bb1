"""Whether a process of this host is still alive, by its pid: the store asks it of a run's lease
holder, the step log of a Dask job's driver."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts: it exists, it is not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
