"""Who drives a job sent to Dask, and whether that process still lives.

The driver writes :data:`DRIVER_FILE` into the job's marker folder before any work is sent, and
``_job.json`` once the job ends (taken or given up). A driver killed in between (SIGKILL, a closed
laptop, a killed kernel) writes no end: the job's committed partitions would count for good, beside
those of the job run again. This record lets a later process tell such a job from one still
running. Only a process on the same host can be checked; elsewhere the answer is "cannot tell".
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from wfkit.model._process import pid_alive

DRIVER_FILE = "_driver.json"
"""In a job's marker folder: the host, pid and start time of the process that sent the job, its
label, and how many partitions it sent (``partitions``): with that count, ``wfkit doctor`` tells a
job whose driver died after all its partitions committed (whole: recorded as committed) from one
it cut short. A record without that count is read as cut short."""


def driver_record(**about: Any) -> dict[str, Any]:
    """This process, as the driver of a job starting now."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(), **about}


def driver_alive(record: dict[str, Any]) -> bool | None:
    """Whether the driver ``record`` names still runs: None when it ran on another host (this
    process cannot look there)."""
    if record.get("host") != socket.gethostname():
        return None
    pid = int(record["pid"])
    if not pid_alive(pid):
        return False
    started = _process_started_at(pid)
    # A pid is used again once its process ended (after a reboot, soon): a process that started
    # after the job did is not its driver.
    return started is None or started <= float(record["started_at"]) + 1.0


def _process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where /proc says (Linux); else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        boot = next(
            line for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines() if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    ticks = int(stat.rpartition(")")[2].split()[19])  # field 22, counted after the command's name
    return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
