"""The store's writer thread: every durable write of a process goes through it, in group commits.

Why a thread of its own: a commit at ``synchronous=FULL`` waits for the disk (an fsync), and an
event loop that waits for the disk stops every run in the process. Here the loop hands a write
(a plain function of a connection) to the writer and keeps going; the run that needs the write
durable awaits its future, the others never notice.

Why group commit: writes that arrive while a commit is under way are taken together in the next
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a thousand runs checkpointing at once pay a
handful of fsyncs, not a thousand in a row. Each write runs inside its own savepoint, so one that
raises (a duplicate run id, a ticket already decided) is rolled back and reported to its own
waiter without touching its neighbours in the batch.

Waiters are resolved after the commit returned, so a resolved future means durable at the
store's ``synchronous`` level. An asyncio waiter is resolved on its own loop through
``loop.call_soon_threadsafe``: one call per loop per batch, so a batch of a thousand
checkpoints wakes a loop once, not a thousand times. Synchronous callers (the CLI, ``Workspace``
methods) block on a ``concurrent.futures.Future``.

Why a small write may commit on the loop itself (``writer.inline_budget = 0`` switches it off): a
hop to the writer and back costs two thread wake-ups, and on a loaded machine each is a trip
through the OS scheduler (measured: 0.05 ms at best, 0.6 ms on average with 8 busy processes per
core), more than a commit at NORMAL and a good part of one at FULL. So when the writer has nothing
queued and nothing under way, a coroutine's write may be committed at once on the loop's own
connection, which never waits for a lock (its lock is only tried: a lock held by another process
sends the write to the writer instead) and never checkpoints the WAL (the writer does, in its
thread). And only an idle loop commits: nothing else ready to run and no timer due within a few
milliseconds (``_idle``). A commit on a loop where other runs are waiting would hold them up, and
the step latencies they record would grow by it while their timeouts do not (a timeout is a timer,
ordered against the step's own): the timeout-prediction test of the step-log advice, which
compares latencies of two interleaved sets of runs, drifted with commits on a busy loop. A
sequential run (one chain, nothing else on the loop) is what gains: its commit costs no thread hop.

At NORMAL a WAL commit waits for no disk (no fsync: that is what NORMAL means). At FULL it waits
for an fsync, so the loop must be more than idle: quiet (``_quiet``), watching no socket or pipe
but its own wake-up pipe (a reply arriving meanwhile would wait behind the disk, and the step
awaiting it would record the wait as its own latency) and with no timer due for a while, and the
disk not stalling: a commit on the loop that took longer than that while (``_QUIET_FOR``) sends the
writes of the next second to the writer thread. A sequential run at FULL then pays the
fsync it must wait for anyway, without the two thread hops around it (issue 11's W4 chain: 1.6-1.8
times a plain sqlite3 commit per step through the writer thread).

A budget bounds the loop's time in such commits per loop iteration: a write past it is still
committed on the idle loop, but its waiter goes on only in the next iteration, so a long
sequential run lets the loop poll now and then without a thread hop, and a burst of writes (many
runs checkpointing together, or one run handing over many writes at once) goes to the writer in
group commits, since the loop is not idle once that wake-up is queued.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger("wfkit")

T = TypeVar("T")

WriteOp = Callable[[sqlite3.Connection], T]
"""A durable write: runs on the writer's connection inside a transaction; its return value is the
waiter's result."""

_MAX_BATCH = 4096  # bounds one transaction (and the time its lock is held) under a flood of writes
# Seconds per loop iteration the loop may spend committing small writes itself.
INLINE_BUDGET = 0.001
# A commit on the loop is made only when no timer is due sooner than this: a commit takes some
# 0.1 ms, but on a loaded machine the loop thread may lose the CPU in the middle of it.
_IDLE_FOR = 0.002
# At FULL (a commit waits for an fsync) the loop commits only with no timer due within
# ``_QUIET_FOR``, and a commit on the loop that took longer than that says the disk is stalling: the
# writes of the next ``_SLOW_DISK_PAUSE`` seconds go to the writer thread. So a commit on the loop
# holds up no timer, but for one commit a second on a stalling disk. Measured on a 2-core VM whose
# disk other processes kept busy: an fsync'd commit P50 0.22 ms, P90 4 ms, P99.9 10 ms, max 12 ms.
_QUIET_FOR = 0.02
_SLOW_DISK_PAUSE = 1.0
# The writer copies the WAL into the database (a checkpoint) once commits grew it by some 1,000
# pages, as often as SQLite checkpoints a plain connection's WAL (``wal_autocheckpoint``), but
# never inside a commit: see ``_serve``. Pages counted per commit: the two a lone row dirties (a
# leaf of the journal and one of its key), and one more per 8 rows.
_CHECKPOINT_PAGES = 1000


def _pages(rows: int) -> int:
    """The pages of WAL a commit of ``rows`` rows is counted for (see _CHECKPOINT_PAGES)."""
    return 2 + rows // 8


Rows = Sequence[Sequence[Any]]
"""Rows for the writer's ``bulk`` insert (journal rows): written together with every other
write's rows of the batch, in a few statements."""


class _Pending(Generic[T]):
    """One write waiting for a commit, and whoever waits for it."""

    __slots__ = ("error", "fn", "future", "loop", "result", "rows")

    def __init__(
        self,
        fn: WriteOp[T] | None,
        rows: Rows,
        future: concurrent.futures.Future[T] | asyncio.Future[T],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.fn = fn
        self.rows = rows
        self.future = future
        self.loop = loop  # set for asyncio waiters: resolved on that loop
        self.result: Any = None
        self.error: BaseException | None = None


# This process's id, kept by a fork hook: every write asks whether it runs in the process that
# started the writer's thread (a forked child must start its own), and ``os.getpid()`` is a system
# call (0.31 us on a 2-core VM, where a whole in-memory step of a chain costs 1.6-1.8 us).
_process_id = os.getpid()


def _forked() -> None:
    global _process_id
    _process_id = os.getpid()


if hasattr(os, "register_at_fork"):  # no fork, no hook (Windows)
    os.register_at_fork(after_in_child=_forked)

_STOP = object()
# What _commit_here did with a write: committed, its waiter may go on now or in the loop's next iteration.
_NOW = object()
_NEXT_ITERATION = object()
_Future = asyncio.Future
_CHECKPOINT = object()  # the writer copies the WAL into the database (commits on the loop never do)


class Writer:
    """A daemon thread that commits the writes handed to it, many per transaction.

    ``connect`` opens the writer's own connection (in the writer thread); ``translate`` turns an
    SQLite error into the error a caller should see (a damaged file is a ``StoreCorruptError``);
    ``bulk`` writes the rows handed over with writes, all of a batch's at once, after the
    batch's functions ran, and says per row what its waiter learns of it (a journal row's seq;
    None: nothing): a write whose function returned nothing, or that has none, resolves to what
    its first row says. Rows rather than a function per row because every SQLite statement
    lets go of the GIL and has to win it back from a busy event loop: a thousand checkpoints
    cost a few statements, not a thousand. ``stale`` tells ``bulk`` that what it remembers of the
    file (the journal's next seqs) may no longer hold: called after every rollback, after a write
    function ran (it may have written rows of its own), and in a forked child. A write committed
    on the loop whose rows fail goes to the writer thread after that (see ``_commit_one``); a
    batch is run again anyway.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        name: str,
        translate: Callable[[sqlite3.DatabaseError], BaseException] | None = None,
        bulk: Callable[[sqlite3.Connection, Rows], Sequence[Any]] | None = None,
        inline: Callable[[], sqlite3.Connection] | None = None,
        inline_waits_for_disk: bool = False,
        stale: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._bulk = bulk
        self._stale = stale if stale is not None else _nothing
        self._name = name
        self._translate = translate
        self._queue: queue.SimpleQueue[_Pending[Any] | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.commits = 0  # transactions committed (for tests and benchmarks: writes per commit)
        self.writes = 0
        # Commits on the loop (see the module's docstring): ``inline`` opens a loop thread's
        # connection for them (None: never); ``inline_waits_for_disk``: its commits wait for an
        # fsync (FULL), so only a quiet loop makes them, while the disk is fast (``_slow_until``:
        # perf_counter time until which a slow commit sent them to the writer). ``_outstanding`` counts
        # what was queued and is not committed yet, ``_gate`` is held by whoever commits: a write
        # commits on the loop only when nothing handed over before it is still on its way.
        self._inline = inline
        self._waits_for_disk = inline_waits_for_disk
        self._slow_until = 0.0
        # Seconds per loop iteration (0 switches commits on the loop off).
        self.inline_budget = INLINE_BUDGET if inline is not None else 0.0
        self.inline_commits = 0
        self._outstanding = 0
        self._gate = threading.Lock()
        # The loop iteration whose budget is open: its loop, the seconds it spent in commits, and
        # the callback that closes it when the next iteration starts. One at a time (a sequential
        # run is on one loop): loops in several threads that commit in turn close each other's
        # budget, and a loop that finds its own closing callback still queued is not idle, so its
        # write goes to the writer thread.
        self._budget: tuple[asyncio.AbstractEventLoop, float, asyncio.Handle] | None = None
        self._local = threading.local()
        self._inline_conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        # Pages of WAL committed since the last checkpoint (guessed: _CHECKPOINT_PAGES), under the gate.
        self._pages = 0

    # ---- handing writes over -------------------------------------------------------------------

    def submit(self, fn: WriteOp[T] | None, rows: Rows = ()) -> concurrent.futures.Future[T]:
        """Queue a write (a function, rows for ``bulk``, or both); the future resolves once it is
        durable (or raises what the write raised)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Pending(fn, rows, future, None))
        return future

    def run(self, fn: WriteOp[T] | None, rows: Rows = ()) -> T:
        """Queue a write and block until it is durable: for synchronous callers, never on a loop."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a write handed to the store's writer tried to wait for another write")
        return self.submit(fn, rows).result()

    def submit_async(
        self, fn: WriteOp[T] | None, rows: Rows = (), loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Future[T]:
        """Queue a write from a coroutine; await the future to know it is durable. ``loop``: the
        running loop, if the caller knows it (asking asyncio costs a system call on Python 3.11)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = _Future(loop=loop)  # what loop.create_future makes, without its frame
        pending = _Pending(fn, rows, future, loop)
        # Writes still on their way to the writer rule a commit here out (``_commit_here`` asks
        # again under the lock): in a burst of checkpoints, the idle loop's checks are skipped.
        if self.inline_budget > 0 and not self._outstanding and self._inline is not None:
            committed = self._commit_here(pending, loop)
            if committed is _NOW:  # durable already: the waiter need not wait for anyone
                # (None of this loop's earlier waiters is still to be woken: the loop was idle.)
                if pending.error is None:
                    future.set_result(pending.result)
                else:
                    future.set_exception(pending.error)
                return future
            if committed is _NEXT_ITERATION:
                loop.call_soon(_resolve_on_loop, [pending])
                return future
        self._put(pending)
        return future

    def _put(self, pending: _Pending[Any] | object) -> None:
        # Under the lock, so that no write lands in a queue behind the stop mark of close().
        with self._lock:
            if self._pid != _process_id:  # first use, after close(), or in a forked child
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._main, args=(self._queue,), name=f"wfkit-writer {self._name}", daemon=True
                )
                self._thread.start()
                if self._pid and self._pid != _process_id:
                    # A forked child: the parent's queue and commits are not ours (and its gate
                    # may have been copied held by the parent's writer thread).
                    self._outstanding = 0
                    self._gate = threading.Lock()
                    self._stale()  # the parent goes on writing
                self._pid = _process_id
                _live.add(self)
            self._outstanding += 1
            self._queue.put(pending)

    # ---- committing on the loop ---------------------------------------------------------------------

    def _commit_here(self, pending: _Pending[Any], loop: asyncio.AbstractEventLoop) -> object:
        """Commit a coroutine's write on its loop's thread, if that costs the loop no wait: nothing
        queued or being committed before it, nothing else ready on the loop, and the store's lock
        free at once. ``_NOW``: its waiter may go on at once; ``_NEXT_ITERATION``: this loop
        iteration's budget was spent, so its waiter goes on only after the loop polled again (a
        sequential run yields the loop once, where a hop to the writer thread and back would cost it
        two thread wake-ups; a burst goes to the writer, since the loop is no longer idle once that
        wake-up is queued). None: not committed, hand it to the writer."""
        budget = self._budget
        if budget is not None and budget[0] is not loop:
            budget = None  # another loop's: this one's iteration starts its own
        reset = None if budget is None else budget[2]
        waits_for_disk = self._waits_for_disk
        if not _idle(loop, reset, _QUIET_FOR if waits_for_disk else _IDLE_FOR):
            return None  # other runs are ready to go on, or a timer is due: the commit would hold them up
        if waits_for_disk and not (_quiet(loop) and time.perf_counter() >= self._slow_until):
            return None  # an fsync on the loop could hold up a reply, or the disk stalls
        if self._pid not in (0, _process_id):
            return None  # a forked child: its first write goes through _put, which starts afresh
        if not self._gate.acquire(blocking=False):
            return None  # the writer is committing: this write joins its next batch
        try:
            with self._lock:
                if self._outstanding:
                    return None  # earlier writes are on their way: this one must not overtake them
            conn = self._loop_connection()
            t0 = time.perf_counter()
            if pending.fn is None and len(pending.rows) == 1:
                if not self._commit_alone(conn, pending):
                    return None  # the lock is held elsewhere, or its row was behind: the writer writes it
            else:
                try:
                    conn.execute("BEGIN IMMEDIATE")  # busy_timeout 0: a lock held elsewhere is not waited for
                except sqlite3.OperationalError:
                    return None
                if not self._commit_one(conn, pending):
                    return None  # its rows were behind another process's: the writer writes them
            self.inline_commits += 1
            self._pages += _pages(len(pending.rows))
            if self._pages >= _CHECKPOINT_PAGES:
                self._put(_CHECKPOINT)
        finally:
            self._gate.release()
        spent = time.perf_counter() - t0
        if self._waits_for_disk and spent > _QUIET_FOR:
            self._slow_until = t0 + spent + _SLOW_DISK_PAUSE
        if budget is None:  # the loop iteration's first: its budget closes when the next one starts
            self._budget = (loop, spent, loop.call_soon(self._close_budget, loop))
            return _NOW
        self._budget = (loop, budget[1] + spent, budget[2])
        return _NOW if budget[1] < self.inline_budget else _NEXT_ITERATION

    def _close_budget(self, loop: asyncio.AbstractEventLoop) -> None:
        budget = self._budget
        if budget is not None and budget[0] is loop:
            self._budget = None

    def _loop_connection(self) -> sqlite3.Connection:
        """This thread's connection for commits on the loop (made by ``inline``; one per thread)."""
        made: tuple[int, sqlite3.Connection] | None = getattr(self._local, "conn", None)
        if made is not None and made[0] == _process_id:
            return made[1]
        assert self._inline is not None
        conn = self._inline()
        self._local.conn = (_process_id, conn)
        with self._lock:
            ended = [c for t, c in self._inline_conns if not t.is_alive()]
            self._inline_conns = [(t, c) for t, c in self._inline_conns if t.is_alive()]
            self._inline_conns.append((threading.current_thread(), conn))
        for old in ended:
            old.close()
        return conn

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what was handed over, then stop the thread (a later write starts it again).
        Connections for commits on the loop are closed too, except those of other live threads
        (closing one under a running transaction would crash SQLite): they are used again."""
        self._close_loop_connections()
        with self._lock:
            thread = self._thread
            if thread is None or self._pid != _process_id:
                return
            self._queue.put(_STOP)
            self._thread, self._pid = None, 0
        if thread is not threading.current_thread():
            thread.join(timeout)

    def _close_loop_connections(self) -> None:
        me = threading.current_thread()
        with self._lock:
            closing = [c for t, c in self._inline_conns if t is me or not t.is_alive()]
            self._inline_conns = [(t, c) for t, c in self._inline_conns if not (t is me or not t.is_alive())]
        for conn in closing:
            conn.close()
        self._local.conn = None  # this thread's, if it had one, is closed

    # ---- the thread ----------------------------------------------------------------------------

    def _main(self, jobs: queue.SimpleQueue[_Pending[Any] | object]) -> None:
        try:
            conn = self._connect()
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer checkpoints itself: see _serve
            conn.execute("PRAGMA busy_timeout = 0")  # it waits for the lock itself: see begin_immediate
        except BaseException as exc:  # the file went bad: every waiting write says why, none hangs
            self._abandon(jobs, exc)
            return
        try:
            self._serve(conn, jobs)
        finally:
            conn.close()

    def _abandon(self, jobs: queue.SimpleQueue[_Pending[Any] | object], exc: BaseException) -> None:
        """Fail what is queued and let the next write start a fresh thread (which tries again)."""
        with self._lock:
            if self._queue is jobs:
                self._thread, self._pid = None, 0
        while True:
            try:
                item = jobs.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                continue
            with self._lock:
                self._outstanding -= 1
            if item is not _CHECKPOINT:
                pending: _Pending[Any] = item  # type: ignore[assignment]
                pending.error = self._error(exc) if isinstance(exc, Exception) else exc
                self._resolve([pending])

    def _serve(self, conn: sqlite3.Connection, jobs: queue.SimpleQueue[_Pending[Any] | object]) -> None:
        get, get_nowait = jobs.get, jobs.get_nowait
        stopping = False
        while not stopping:
            first = get()
            if first is _STOP:
                break
            batch: list[_Pending[Any]] = []
            checkpoints = 0
            item = first
            # Everything that arrived while the previous commit waited for the disk joins this one.
            while True:
                if item is _CHECKPOINT:
                    checkpoints += 1
                else:
                    batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
            if batch:
                with self._gate:  # a commit on the loop is never interleaved with this one
                    if not self._commit(conn, batch, isolate=False):
                        # A write raised: run the batch again, each write in a savepoint of its own,
                        # so the one that failed is rolled back alone and reported to its own waiter.
                        self._commit(conn, batch, isolate=True)
                    self._pages += _pages(sum(len(pending.rows) for pending in batch))
                with self._lock:
                    self._outstanding -= len(batch)
                self._resolve(batch)
            if checkpoints or self._pages >= _CHECKPOINT_PAGES:
                # After the batch's waiters were woken (their writes are committed): a checkpoint
                # waits for the disk (two fsyncs, even at NORMAL), and SQLite's automatic one, run
                # inside the commit that passed its threshold, made that commit's waiters wait for
                # it too (measured: a lone write's commit 5.9 ms instead of 0.2 after 512 commits
                # on the loop). In two passes. The first copies the pages while commits on the
                # loop go on (a checkpoint never blocks a writer): held under the gate, it stopped
                # a sequential run at NORMAL for its whole length (measured: 4.8-5.3 ms every 500
                # steps). The second, under the gate, copies what they added meanwhile, with no
                # commit overlapping it (1.2-2.3 ms: its two fsyncs): SQLite writes a WAL from its
                # start again only once a checkpoint copied every frame in it, and under a steady
                # run of commits that each overlapped a checkpoint the WAL would never be reset and
                # grow without bound (measured: 11 KB per step of a sequential run). When nothing
                # was committed during the first (at FULL the writer makes every commit), the
                # first copied everything, and there is no second.
                with self._gate:
                    self._pages = 0  # commits from now on count toward the next checkpoint
                if checkpoints:
                    with self._lock:
                        self._outstanding -= checkpoints
                copied_all = self._checkpoint(conn)
                with self._gate:
                    if self._pages or not copied_all:
                        self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> bool:
        """Copy the WAL into the database (commits never do it: a checkpoint waits for the disk).
        PASSIVE: it never waits for readers, so it may leave frames a reader still needs. Whether
        it copied every frame the WAL held when it started."""
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            logger.exception("wfkit: checkpointing the run store's WAL failed (the next one tries again)")
            return False
        return not busy and frames == copied

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending[Any]], *, isolate: bool) -> bool:
        """One transaction for the batch. Without ``isolate`` it stops (rolled back, False) at the
        first write that raises; with it, that write alone is undone. True once committed."""
        try:
            begin_immediate(conn)
        except sqlite3.DatabaseError as exc:
            for pending in batch:
                pending.error = self._error(exc)
            return True
        # The GIL changes hands sooner while the transaction lasts (not while the lock is waited
        # for: each try needs the GIL only for a moment).
        _shorten_switches()
        try:
            return self._apply(conn, batch, isolate=isolate)
        finally:
            _restore_switches()

    def _apply(self, conn: sqlite3.Connection, batch: list[_Pending[Any]], *, isolate: bool) -> bool:
        """The batch's writes and rows, then COMMIT, in the transaction the caller began."""
        stale = self._stale
        try:
            functions = False
            for pending in batch:
                pending.error = None
                if pending.fn is None and (not isolate or not pending.rows):
                    continue
                if isolate:
                    conn.execute("SAVEPOINT w")
                try:
                    if pending.fn is not None:
                        functions = True
                        pending.result = pending.fn(conn)
                        if isolate:
                            stale()
                    if isolate and pending.rows:
                        self._write_own_rows(conn, pending)
                except Exception as exc:
                    stale()
                    if not isolate:
                        conn.execute("ROLLBACK")
                        return False
                    pending.error = self._error(exc)
                    conn.execute("ROLLBACK TO w")
                if isolate:
                    conn.execute("RELEASE w")
            if not isolate:
                rows = [row for pending in batch for row in pending.rows]
                if rows:
                    if functions:
                        stale()
                    try:
                        said = self._write_rows(conn, rows)
                    except Exception:
                        stale()
                        conn.execute("ROLLBACK")
                        return False
                    at = 0
                    for pending in batch:  # each write is told what its first row says
                        if pending.rows:
                            if pending.result is None:
                                pending.result = said[at]
                            at += len(pending.rows)
            conn.execute("COMMIT")
            self.commits += 1
            self.writes += len(batch)
        except BaseException as exc:
            # The commit itself failed (disk full, I/O error): nothing of this batch is durable.
            stale()
            roll_back(conn, "a failed group commit")
            error = self._error(exc) if isinstance(exc, Exception) else exc
            for pending in batch:
                pending.result, pending.error = None, error
            if not isinstance(exc, Exception):
                raise
        return True

    def _commit_alone(self, conn: sqlite3.Connection, pending: _Pending[Any]) -> bool:
        """A lone row and no function (a sequential run's checkpoint), committed as its own
        statement: SQLite's autocommit makes it a transaction of its own, as BEGIN IMMEDIATE ...
        COMMIT would, for two statements fewer (``bulk`` makes one row one statement; a journal row
        whose seq is not known yet is read first, and a row written in between by another process
        makes the primary key refuse it). False, nothing written, when the lock is held elsewhere
        (busy timeout 0) or the row was refused as already there: the writer thread writes it."""
        pending.error = None
        try:
            self._write_own_rows(conn, pending)
        except (sqlite3.OperationalError, sqlite3.IntegrityError):
            self._stale()  # what ``bulk`` remembered of the row's seq was not written
            roll_back(conn, "a failed commit on the loop")  # (no transaction is left open)
            pending.result = None
            return False
        except BaseException as exc:
            return self._failed_here(conn, pending, exc)
        self.commits += 1
        self.writes += 1
        return True

    def _commit_one(self, conn: sqlite3.Connection, pending: _Pending[Any]) -> bool:
        """A single write, then COMMIT, in the transaction the caller began. No savepoint: a write
        that raises has its whole transaction rolled back, which undoes exactly what a savepoint
        would, for two statements fewer; its error goes to its waiter. False, rolled back, when its
        rows were refused as already there: what ``bulk`` remembered was behind the file (another
        process wrote rows of the run), so after ``stale`` the writer thread writes it, as a group
        commit's isolated pass does (not here: a second try on the loop could not wait for a lock)."""
        pending.error = None
        try:
            if pending.fn is not None:
                pending.result = pending.fn(conn)
                self._stale()
            if pending.rows:
                try:
                    self._write_own_rows(conn, pending)
                except sqlite3.IntegrityError:
                    if self._stale is _nothing:
                        raise
                    self._stale()
                    conn.execute("ROLLBACK")
                    pending.result = None
                    return False
            conn.execute("COMMIT")
        except BaseException as exc:
            return self._failed_here(conn, pending, exc)
        self.commits += 1
        self.writes += 1
        return True

    def _failed_here(self, conn: sqlite3.Connection, pending: _Pending[Any], exc: BaseException) -> bool:
        """A write that raised on the loop: rolled back whole, its error for its waiter (True: it
        is settled); one that is no Exception (a KeyboardInterrupt) goes on up once rolled back."""
        self._stale()
        roll_back(conn, "a failed commit on the loop")
        pending.result = None
        pending.error = self._error(exc) if isinstance(exc, Exception) else exc
        if not isinstance(exc, Exception):
            raise exc
        return True

    def _write_own_rows(self, conn: sqlite3.Connection, pending: _Pending[Any]) -> None:
        """Write one write's rows alone; it resolves to what its first row says, unless its
        function returned something (a group commit tells each write the same from the batch's rows)."""
        said = self._write_rows(conn, pending.rows)
        if pending.result is None:
            pending.result = said[0]

    def _write_rows(self, conn: sqlite3.Connection, rows: Rows) -> Sequence[Any]:
        if self._bulk is None:
            raise TypeError(f"the store writer of {self._name} was handed rows but has no bulk insert")
        return self._bulk(conn, rows)

    def _error(self, exc: BaseException) -> BaseException:
        if self._translate is not None and isinstance(exc, sqlite3.DatabaseError):
            return self._translate(exc)
        return exc

    @staticmethod
    def _resolve(batch: list[_Pending[Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending[Any]]] = {}
        for pending in batch:
            if pending.loop is None:
                future: concurrent.futures.Future[Any] = pending.future  # type: ignore[assignment]
                if future.set_running_or_notify_cancel():
                    if pending.error is None:
                        future.set_result(pending.result)
                    else:
                        future.set_exception(pending.error)
            else:
                by_loop.setdefault(pending.loop, []).append(pending)
        for loop, waiters in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to wake
                loop.call_soon_threadsafe(_resolve_on_loop, waiters)


# How long the writer waits for the write lock another process holds (as the store's busy timeout
# did), and how often it tries again meanwhile: see begin_immediate.
LOCK_WAIT = 60.0
_LOCK_POLL_FIRST = 0.0002
_LOCK_POLL_MOST = 0.002


def begin_immediate(conn: sqlite3.Connection, wait: float = LOCK_WAIT) -> None:
    """``BEGIN IMMEDIATE`` on a connection whose busy timeout is 0, tried again while another
    process holds the write lock, for up to ``wait`` seconds (then SQLite's "database is locked").

    Why not SQLite's busy timeout: its handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and
    then 100 ms between tries, so a writer that found the lock taken once sleeps on long after it
    was freed, while other processes' commits take a millisecond or a few. With several processes
    writing one workspace (issue 11's F3: 8 processes x 100 runs), the lock then stood free between
    commits while each waiter slept, and a run's latency grew by those sleeps. Here the tries come
    every 0.2 ms at first and every 2 ms at the most: a try is one statement, and the sleep between
    lets go of the GIL."""
    pause = _LOCK_POLL_FIRST
    deadline = 0.0
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + wait
            elif now >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, _LOCK_POLL_MOST)


def _idle(loop: asyncio.AbstractEventLoop, own: asyncio.Handle | None, margin: float) -> bool:
    """Whether nothing else waits on the loop: no callback ready to run (but ``own``, the writer's
    budget reset) and no timer due within ``margin`` seconds (``_IDLE_FOR``; ``_QUIET_FOR`` for a
    commit that waits for an fsync). Only asyncio's own loops say (their ready queue and timer
    heap); any other loop counts as busy, so its writes go to the writer."""
    ready: Any = getattr(loop, "_ready", None)
    timers: Any = getattr(loop, "_scheduled", None)
    if ready is None or timers is None:
        return False
    if ready and not (len(ready) == 1 and ready[0] is own):
        return False
    return not timers or timers[0].when() - loop.time() > margin


def _quiet(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether an idle loop (``_idle``, with ``_QUIET_FOR``) may wait for the disk: it watches no
    file descriptor but its own wake-up pipe (only asyncio's selector loops say; any other counts as
    watching some)."""
    selector: Any = getattr(loop, "_selector", None)
    return selector is not None and len(selector.get_map()) <= 1


def _nothing() -> None:
    pass


# While a group commit is under way, the GIL changes hands sooner: every statement lets go of it
# at least twice (``sqlite3_step``, and resetting the statement), and to go on, the writer must win it back
# from the event loop, which lets go only when told to, once the interpreter's switch interval
# (5 ms by default) has passed. A batch of a handful of statements then waits tens of
# milliseconds for the GIL for a few of CPU work, and the thousand runs waiting for their
# checkpoints wait with it. Shortened, the loop hands the GIL over sooner; it loses nothing (it
# gets it back as soon as the writer waits for SQLite again): only the switches are more frequent
# while a commit lasts. Measured under F2 (1,000 runs, FULL, a machine loaded 3 to 4 on 2 cores):
# a batch's journal INSERT took 15 to 34 ms of wall instead of 27 to 47 (for 6 to 7 ms of CPU), and
# the runs' wall time some 15% less. The interval is the process's, so its users are counted: the first commit
# under way shortens it, the last one puts back what was there, unless someone set another value
# meanwhile (theirs is kept). 0 (``WFKIT_COMMIT_SWITCH_INTERVAL=0``) leaves it alone.
COMMIT_SWITCH_INTERVAL = float(os.environ.get("WFKIT_COMMIT_SWITCH_INTERVAL", "0.0005"))
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


def _shorten_switches() -> None:
    global _switch_users, _switch_saved
    if COMMIT_SWITCH_INTERVAL <= 0:
        return
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            if _switch_saved > COMMIT_SWITCH_INTERVAL:
                sys.setswitchinterval(COMMIT_SWITCH_INTERVAL)
        _switch_users += 1


def _restore_switches() -> None:
    global _switch_users
    if COMMIT_SWITCH_INTERVAL <= 0:
        return
    with _switch_lock:
        _switch_users -= 1
        if (
            _switch_users == 0
            and _switch_saved > COMMIT_SWITCH_INTERVAL
            and abs(sys.getswitchinterval() - COMMIT_SWITCH_INTERVAL) < 1e-7
        ):
            sys.setswitchinterval(_switch_saved)


# Waiters a loop wakes per iteration (see _resolve_on_loop).
WAKE_PER_ITERATION = 8


def _resolve_on_loop(waiters: list[_Pending[Any]]) -> None:
    """Resolve the futures of committed writes, on their loop, in the order of the writes:
    ``WAKE_PER_ITERATION`` of them now, and the next ones in the loop's next iteration, and so on.

    Why not all at once: each woken run goes on at once with the next step (its checkpoint is
    durable), some 50 us of the loop's time. A group commit of a thousand runs woken in one go
    queues a thousand of those ahead of every timer that comes due meanwhile: a step whose
    ``asyncio.sleep`` ends, or whose response arrived, waits behind them all, and its recorded
    latency grows by other runs' checkpoints. In slices, the loop runs what came due between two
    slices (asyncio queues due timers behind what is ready when an iteration starts), and the wait
    lands where it belongs: in the durable wait of the runs woken later. Measured on F1 (500 runs,
    6 rounds, 5 interleaved pairs each): P50 ratio durable/memory 1.01-1.18 woken all at once,
    0.77-1.09 in slices of 32, 0.68-0.92 in slices of 8 (durable P50 16.4-18.9 ms against 18.9-21.6 at
    32); durable P99 45-99 ms at once, 32-69 ms in slices of 32 or 8. F2 (1,000 runs) took the same
    wall time in slices of 8, 32 or all at once: a loop iteration more per slice costs little.

    The waiters of a later commit queue behind those of an earlier one the loop is still waking
    (``_to_wake``): woken in between its slices, they would go on first, and concurrent runs that
    share a seeded resource (a simulated model's draws) would take its draws in another order from
    one replay to the next."""
    loop = waiters[0].loop
    assert loop is not None  # only asyncio waiters come here
    if _to_wake:  # a loop is still waking an earlier commit's waiters: if it is this one, these follow
        queued = _to_wake.get(loop)
        if queued is not None:
            queued.extend(waiters)
            return
    if len(waiters) <= WAKE_PER_ITERATION:
        _settle(waiters)
    else:
        _wake(loop, collections.deque(waiters))


# Per loop, the waiters of committed writes it has still to wake, oldest first (see _resolve_on_loop).
_to_wake: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, collections.deque[_Pending[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _wake(loop: asyncio.AbstractEventLoop, queued: collections.deque[_Pending[Any]]) -> None:
    """``WAKE_PER_ITERATION`` of ``queued`` now, the rest from the loop's next iteration on."""
    if len(queued) > WAKE_PER_ITERATION:
        _to_wake[loop] = queued
        loop.call_soon(_wake, loop, queued)
        _settle([queued.popleft() for _ in range(WAKE_PER_ITERATION)])
    else:
        _to_wake.pop(loop, None)
        waiters = list(queued)
        queued.clear()
        _settle(waiters)


def _settle(waiters: Sequence[_Pending[Any]]) -> None:
    for pending in waiters:
        future: asyncio.Future[Any] = pending.future  # type: ignore[assignment]
        if future.done():  # its waiter was cancelled; the write is durable all the same
            continue
        if pending.error is None:
            future.set_result(pending.result)
        else:
            future.set_exception(pending.error)


# Writers with a live thread: drained at exit, so a write handed over just before the interpreter
# ends is committed (daemon threads are otherwise stopped mid-flight).
_live: weakref.WeakSet[Writer] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for writer in list(_live):
        writer.close()


def roll_back(conn: sqlite3.Connection, what: str) -> None:
    """Roll back the transaction ``conn`` may still be in; a rollback that fails is logged, and the
    error that made it necessary is the one its waiters get."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("wfkit: rolling back %s failed", what)
