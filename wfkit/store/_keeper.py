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

**The fence.** A process stopped for longer than the lease (SIGSTOP, a laptop's lid, a paused VM)
comes back to runs that another process may have taken over meanwhile, and its event loop goes on
where it stopped: without a fence its checkpoints would land in the journal between the new
holder's, and an irreversible step's intent would be written again and its body run a second time.
So every write of a run this process holds a lease on is checked, but only once that lease may be
gone: a lease no one can take over before it expires (``_store._lease_holder``: a live holder on
this host keeps it until then, and so does any holder on another host) is this process's until then
for certain, and a write before that time needs no look at the file. The keeper knows until when
each lease is good (``granted``: when it was written, and at every renewal); past that time
(``due``), a write first reads the lease inside its own transaction (``fence``), and a run another
process holds now is refused with a :class:`~wfkit.LeaseError` before anything of it is written. The
writes of a live process pay one clock read per commit. A third of the TTL is kept in hand
(``granted``): the clocks of two hosts may disagree by up to that much, and a renewal may come late.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable

from wfkit.model._errors import LeaseError
from wfkit.store import _writer

logger = logging.getLogger("wfkit")


Holder = Callable[[sqlite3.Connection, str], "str | None"]
"""Who holds a run's lease now, read in the caller's transaction: None when it is still this
process's, else what became of it, for the error (``process 4242 on host-a took this run over``)."""


class LeaseKeeper:
    """Calls ``renew`` with the ids of the live runs (:meth:`keep` ... :meth:`drop`) every third of
    the leases' ``ttl`` (seconds), from a daemon thread that runs while there are any; and fences
    the writes of runs whose lease may have been taken over (:meth:`due`, :meth:`fence`; see the
    module's docstring).
    ``holder``: who holds a run's lease now (the store's read of its row)."""

    __slots__ = (
        "_every",
        "_holder",
        "_live",
        "_lock",
        "_lost",
        "_name",
        "_next",
        "_pid",
        "_renew",
        "_thread",
        "_ttl",
        "_until",
    )

    def __init__(
        self, renew: Callable[[tuple[str, ...]], object], *, ttl: float, name: str, holder: Holder | None = None
    ) -> None:
        self._renew = renew
        self._ttl = ttl
        self._every = ttl / 3
        self._name = name
        self._holder = holder
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = _writer._process_id  # kept by a fork hook: os.getpid() is a system call
        # The fence: until when each lease this process wrote is surely its own (a third of the
        # TTL before it expires), the earliest of those times (before it no write needs a check;
        # it may lag behind after a run ends, which costs one needless check), and the runs found
        # taken over, with who holds them now.
        self._until: dict[str, float] = {}
        self._next = math.inf
        self._lost: dict[str, str] = {}

    def keep(self, run_id: str) -> None:
        """Renew the lease of ``run_id`` from now on, until :meth:`drop`."""
        if self._pid != _writer._process_id:
            # A forked child: the parent's runs are not its own, its thread is not running here,
            # and the lock may have been copied held by it.
            self._live, self._lock, self._thread, self._pid = set(), threading.Lock(), None, _writer._process_id
            self._until, self._lost, self._next = {}, {}, math.inf
        with self._lock:
            self._live.add(run_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name=f"wfkit-leases {self._name}", daemon=True)
                self._thread.start()

    def drop(self, run_id: str) -> None:
        """The run stopped here (its last write releases the lease): no more renewals, no fence."""
        with self._lock:
            self._live.discard(run_id)
        self._until.pop(run_id, None)
        self._lost.pop(run_id, None)

    # ---- the fence -------------------------------------------------------------------------------

    def granted(self, run_id: str, expires: float) -> None:
        """This process wrote the run's lease, to expire at ``expires`` (time.time()): created, taken
        over or renewed. (Called from the loop and the writer's thread without a lock: a grant's
        time is never earlier than an earlier grant's, so ``fence`` recomputing the earliest while
        one comes in can only miss a time later than the one it finds.)"""
        until = expires - self._every
        self._until[run_id] = until
        if until < self._next:
            self._next = until

    def renewed(self, run_ids: Iterable[str], expires: float) -> None:
        """The keeper's renewal of these leases is durable: :meth:`granted` for each, and the
        earliest time a write must be fenced moves on with them."""
        until = expires - self._every
        for run_id in run_ids:
            self._until[run_id] = until
        self._next = min(self._until.values(), default=math.inf)

    def due(self) -> bool:
        """Whether a write must be fenced (:meth:`fence`): a lease may have run out, or a run was
        found taken over. One clock read while every lease is good."""
        return bool(self._lost) or time.time() >= self._next

    def fence(self, conn: sqlite3.Connection, run_ids: Iterable[str]) -> None:
        """Raise :class:`~wfkit.LeaseError` if another process holds any of these runs now. Called
        by a write in its transaction (which holds the file's write lock, so no takeover can come
        between this read and the write), when :meth:`due`. Runs this process holds no lease on
        (a parked run, decided from a notebook) and leases still surely good are not looked at."""
        now = time.time()
        for run_id in run_ids:
            holder = self._lost.get(run_id)
            if holder is None:
                until = self._until.get(run_id)
                if until is None or until > now or self._holder is None:
                    continue
                holder = self._holder(conn, run_id)
                if holder is None:
                    continue  # still ours, though it may have run out: the keeper renews it next
                self._lost[run_id] = holder
            raise LeaseError(
                f"{holder}: its lease had run out here (this process was stopped, or could not "
                f"renew the lease, for longer than its {self._ttl:g} s), so this process stops "
                f"executing the run and wrote nothing of it since; `wfkit show {run_id}` shows the run",
                run_id=run_id,
            )
        self._next = min(self._until.values(), default=math.inf)

    def _main(self) -> None:
        while True:
            time.sleep(self._every)
            with self._lock:
                if not self._live:
                    self._thread = None
                    return
                live = tuple(self._live)
            try:
                self._renew(live)  # it reports the leases it renewed (``granted``)
            except Exception:  # the next renewal tries again; the lease lasts until then
                logger.exception("wfkit: renewing the leases of this process's runs failed")
