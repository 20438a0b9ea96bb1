"""Keeps the leases of the runs a store executes for as long as they run, whatever their steps do.

Why a thread of its own: a lease lasts ``lease_ttl`` seconds, and a run's writes renew it; a step
body that runs longer without writing (an LLM call with a long timeout, a person at a tool) let it
expire while its process was still in the step, and a resume from another process then took the
run and ran the step a second time beside the first. This thread renews the leases of every run
that is live in the store every third of the TTL, in one write for all of them, whatever the event
loop does (a notebook cell that blocks the kernel's loop stops the run's task, but neither a sync
step's thread nor this one). So an expired lease always means its holder stopped renewing it.

What it costs: a run is added to a set as it starts and removed as it stops, under a lock; its
steps cost nothing. The thread ends at the first renewal that finds no live run (a store at rest
has none), and the next run starts it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from wfkit.store import _writer

logger = logging.getLogger("wfkit")


class LeaseKeeper:
    """Calls ``renew`` with the ids of the live runs (:meth:`keep` ... :meth:`drop`) every ``every``
    seconds, from a daemon thread that runs while there are any."""

    __slots__ = ("_every", "_live", "_lock", "_name", "_pid", "_renew", "_thread")

    def __init__(self, renew: Callable[[tuple[str, ...]], object], *, every: float, name: str) -> None:
        self._renew = renew
        self._every = every
        self._name = name
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = _writer._process_id  # kept by a fork hook: os.getpid() is a system call

    def keep(self, run_id: str) -> None:
        """Renew the lease of ``run_id`` from now on, until :meth:`drop`."""
        if self._pid != _writer._process_id:
            # A forked child: the parent's runs are not its own, its thread is not running here,
            # and the lock may have been copied held by it.
            self._live, self._lock, self._thread, self._pid = set(), threading.Lock(), None, _writer._process_id
        with self._lock:
            self._live.add(run_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name=f"wfkit-leases {self._name}", daemon=True)
                self._thread.start()

    def drop(self, run_id: str) -> None:
        """The run stopped here (its last write releases the lease): no more renewals."""
        with self._lock:
            self._live.discard(run_id)

    def _main(self) -> None:
        while True:
            time.sleep(self._every)
            with self._lock:
                if not self._live:
                    self._thread = None
                    return
                live = tuple(self._live)
            try:
                self._renew(live)
            except Exception:  # the next renewal tries again; the lease lasts until then
                logger.exception("wfkit: renewing the leases of this process's runs failed")
