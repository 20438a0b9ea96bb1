"""Dask worker processes that the stop button of the notebook that started them does not kill.

Jupyter's stop button interrupts a kernel with SIGINT sent to the kernel's whole process group (as
Ctrl-C in a terminal reaches a script's), and the worker processes of a ``LocalCluster`` started in
that kernel are in it: each raised KeyboardInterrupt and died, the cluster's nannies did not start
them again, and the next cell's work on the cluster found no workers. The interrupt is the driver's
to handle (a job given up, its partitions cancelled; see ``_dask``); a worker is stopped by its
nanny (SIGTERM), and exits by itself once the process that started it is gone. So a worker process
in the process group of the process that sent it work ignores SIGINT; any other worker (another
machine's, one started in its own terminal, where Ctrl-C must stop it) is left as it is.

Imported only where Dask is (it subclasses Dask's ``WorkerPlugin``).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class InterruptShield(WorkerPlugin):
    """A worker plugin: the workers sharing this process's group (on this host) ignore SIGINT."""

    idempotent = True  # registered again by each job: once per worker is enough

    def __init__(self) -> None:
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.group = _group()
        self.name = f"wfkit-interrupt-shield-{self.host}-{self.group}"

    def setup(self, worker: Any) -> None:
        if self.group is None or os.getpid() == self.pid:  # (processes=False: the driver's own signals)
            return
        if (socket.gethostname(), _group()) != (self.host, self.group):
            return
        if threading.current_thread() is threading.main_thread():  # where signals are handled
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _group() -> int | None:
    getpgrp = getattr(os, "getpgrp", None)  # POSIX only: Windows interrupts a kernel otherwise
    return None if getpgrp is None else int(getpgrp())
