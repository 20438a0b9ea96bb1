"""The store's writer thread: group commits, durability before a waiter wakes, a failing write
isolated from its batch, asyncio waiters woken on their own loop, and an event loop that keeps
running while the disk is slow."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from wfkit.store import _writer as writer_module
from wfkit.store._writer import COMMIT_SWITCH_INTERVAL, INLINE_BUDGET, Writer


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A WAL database with one table ``t (k TEXT PRIMARY KEY, v INTEGER)``."""
    path = tmp_path / "w.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    return path


def _connect(path: Path) -> Any:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    return connect


def _bulk(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[str]:
    """Insert the rows; each row says its key (what a write of rows resolves to: its first's)."""
    conn.executemany("INSERT INTO t (k, v) VALUES (?, ?)", [values for _kind, values in rows])
    return [values[0] for _kind, values in rows]


@pytest.fixture
def writer(db: Path) -> Iterator[Writer]:
    """A writer on ``db``, closed at teardown."""
    w = Writer(_connect(db), name="test", bulk=_bulk)
    yield w
    w.close()


def _insert(key: str, value: int = 1) -> Any:
    def insert(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
        return key

    return insert


def _rows(db: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(db)) as conn:
        return sorted(conn.execute("SELECT k, v FROM t").fetchall())


def test_a_resolved_write_is_visible_to_another_connection(writer: Writer, db: Path) -> None:
    """Once run() returns, a fresh connection reads the committed row."""
    assert "a" == writer.run(_insert("a"))
    assert [("a", 1)] == _rows(db)


def test_rows_go_through_the_bulk_insert(writer: Writer, db: Path) -> None:
    """Rows handed with a write are written by the bulk function, with the write's function."""
    writer.run(_insert("f"), [("t", ("r1", 2)), ("t", ("r2", 3))])
    assert [("f", 1), ("r1", 2), ("r2", 3)] == _rows(db)


def test_writes_that_arrive_during_a_commit_share_the_next_one(writer: Writer, db: Path) -> None:
    """While one commit is under way, 200 writes queue and are committed in far fewer transactions."""
    gate = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        gate.wait(5)  # the disk is slow: everything else queues behind this commit

    first = writer.submit(slow)
    futures = [writer.submit(_insert(f"k{i:03d}", i)) for i in range(200)]
    gate.set()
    first.result(10)
    assert [f"k{i:03d}" for i in range(200)] == [f.result(10) for f in futures]
    assert 201 == writer.writes
    assert writer.commits <= 3
    assert 200 == len(_rows(db))


def test_a_failing_write_is_rolled_back_alone(writer: Writer, db: Path) -> None:
    """In a batch, a write that raises reports its own error; its neighbours commit."""
    gate = threading.Event()
    writer.submit(lambda conn: gate.wait(5))
    ok1 = writer.submit(_insert("x"))
    bad = writer.submit(_insert("x"))  # the same key again: IntegrityError
    ok2 = writer.submit(_insert("y"))
    gate.set()
    assert "x" == ok1.result(10)
    assert "y" == ok2.result(10)
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(10)
    assert [("x", 1), ("y", 1)] == _rows(db)


def test_a_failing_bulk_row_fails_only_its_write(writer: Writer, db: Path) -> None:
    """A row the bulk insert refuses fails the write that brought it, not the rest of the batch."""
    gate = threading.Event()
    writer.submit(lambda conn: gate.wait(5))
    ok = writer.submit(None, [("t", ("p", 1))])
    bad = writer.submit(None, [("t", ("p", 2))])
    gate.set()
    assert "p" == ok.result(10)  # written again alone, it still learns what its row said
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(10)
    assert [("p", 1)] == _rows(db)


def test_a_write_of_rows_resolves_to_what_its_first_row_says(normal_writer: Writer, db: Path) -> None:
    """In a group commit, alone on the writer's thread, or committed on the loop: a write with rows
    resolves to its first row's answer from ``bulk`` (a checkpoint learns its row's seq), unless its
    function returned something of its own."""
    gate = threading.Event()
    normal_writer.submit(lambda conn: gate.wait(5))
    grouped = [normal_writer.submit(None, [("t", (f"g{i}", i)), ("t", (f"h{i}", i))]) for i in range(3)]
    with_function = normal_writer.submit(lambda conn: None, [("t", ("f", 1))])
    own = normal_writer.submit(_insert("own"), [("t", ("o", 1))])
    gate.set()
    assert ["g0", "g1", "g2"] == [f.result(10) for f in grouped]
    assert ("f", "own") == (with_function.result(10), own.result(10))
    assert "alone" == normal_writer.run(None, [("t", ("alone", 1))])

    async def on_the_loop() -> tuple[bool, str]:
        future = normal_writer.submit_async(None, [("t", ("loop", 1))])
        return future.done(), await future

    assert (True, "loop") == asyncio.run(on_the_loop())  # committed on the idle loop


def test_rows_without_a_bulk_insert_are_refused(db: Path) -> None:
    """A writer built without ``bulk`` says so when handed rows."""
    w = Writer(_connect(db), name="plain")
    try:
        with pytest.raises(TypeError, match="has no bulk insert"):
            w.run(None, [("t", ("a", 1))])
    finally:
        w.close()


def test_asyncio_waiters_are_woken_on_their_loop(writer: Writer, db: Path) -> None:
    """submit_async's future resolves on the awaiting loop's own thread, after the commit."""
    seen: list[tuple[str, bool]] = []

    async def main() -> None:
        loop_thread = threading.current_thread()
        results = await asyncio.gather(*(writer.submit_async(_insert(f"a{i}")) for i in range(50)))
        seen.append((results[-1], threading.current_thread() is loop_thread))

    asyncio.run(main())
    assert [("a49", True)] == seen
    assert 50 == len(_rows(db))


def test_a_timer_due_while_a_group_commit_wakes_its_runs_is_not_queued_behind_them_all(writer: Writer) -> None:
    """A group commit's waiters are woken a slice per loop iteration: a timer that comes due as the
    first ones go on (a step's sleep ending) runs before the last are woken, not after every one of
    them; and every waiter is woken, once, in the order of its write."""
    n = 4 * writer_module.WAKE_PER_ITERATION
    order: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = [writer.submit_async(None) for _ in range(n)]

        async def waiter(i: int) -> None:
            await futures[i]
            order.append(i)
            if i == 0:  # the first one woken starts a "step" that sleeps for no time
                loop.call_later(0, order.append, "timer")

        writer.run(None)  # (from this thread: the group commit above is durable now, its wake-ups queued)
        await asyncio.gather(*(waiter(i) for i in range(n)))

    asyncio.run(main())
    woken = [x for x in order if x != "timer"]
    assert list(range(n)) == woken
    assert order.index("timer") < n  # not after every waiter
    assert order.index("timer") >= writer_module.WAKE_PER_ITERATION  # after the first slice


def test_waiters_of_a_later_commit_are_woken_after_those_of_an_earlier_one(writer: Writer) -> None:
    """Two group commits whose wake-ups reach the loop in the same iteration: the second's waiters
    are woken after every waiter of the first, not between its slices. (Concurrent runs that share
    a seeded resource, a simulated model's draws, must go on in the order of their writes, or a
    notebook's replay finds a run's fault moved to its neighbour.)"""
    n = writer_module.WAKE_PER_ITERATION + 4  # the first commit takes two slices
    order: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = [writer_module._Pending(None, (), loop.create_future(), loop) for _ in range(n)]
        second = [writer_module._Pending(None, (), loop.create_future(), loop) for _ in range(4)]
        for i, pending in enumerate([*first, *second]):
            pending.future.add_done_callback(lambda _, i=i: order.append(i))
        # Both wake-ups queued by the writer thread before the loop runs either.
        loop.call_soon_threadsafe(writer_module._resolve_on_loop, first)
        loop.call_soon_threadsafe(writer_module._resolve_on_loop, second)
        await asyncio.gather(*(p.future for p in [*first, *second]))

    asyncio.run(main())
    assert list(range(n + 4)) == order


def test_the_event_loop_keeps_running_while_the_disk_is_slow(writer: Writer) -> None:
    """A write that holds the writer until a coroutine has ticked 10 times stops no coroutine: the
    ticker ticks while the write is under way, and the write ends because it did. (Ticks, not time:
    a loop blocked by the write could never tick, and the write would give up waiting instead.)"""
    ticked = threading.Event()

    async def main() -> tuple[bool, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while ticks < 10:
                await asyncio.sleep(0.01)
                ticks += 1
            ticked.set()

        task = asyncio.create_task(ticker())
        released = await writer.submit_async(lambda conn: ticked.wait(60))  # a disk slow until then
        await task
        return released, ticks

    assert (True, 10) == asyncio.run(main())


def test_a_write_cannot_wait_for_another_write(writer: Writer) -> None:
    """A write that blocks on the writer from inside the writer is refused (it would deadlock)."""
    with pytest.raises(RuntimeError, match="tried to wait for another write"):
        writer.run(lambda conn: writer.run(_insert("inner")))


def test_close_commits_what_was_handed_over_and_a_later_write_restarts(writer: Writer, db: Path) -> None:
    """close() drains the queue; a write after close() starts a new thread."""
    futures = [writer.submit(_insert(f"c{i}")) for i in range(20)]
    writer.close()
    assert all(f.done() for f in futures)
    assert "after" == writer.run(_insert("after"))
    assert 21 == len(_rows(db))


def test_a_store_that_cannot_be_opened_fails_the_waiting_writes(tmp_path: Path) -> None:
    """If the writer's connection cannot be made, each waiting write raises that error (none hangs)."""

    def refuse() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    w = Writer(refuse, name="missing")
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        w.submit(_insert("a")).result(10)
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        w.submit(_insert("b")).result(10)


# ---- commits on the loop (synchronous=NORMAL, and what FULL shares with it) -----------------------


def _loop_connect(path: Path) -> Any:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=0.0, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    return connect


@pytest.fixture
def normal_writer(db: Path) -> Iterator[Writer]:
    """A writer that may commit small writes on an idle loop, as a store at NORMAL has."""
    w = Writer(_connect(db), name="normal", bulk=_bulk, inline=_loop_connect(db))
    yield w
    w.close()


def _rowid_order(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute("SELECT k FROM t ORDER BY rowid")]


def test_commits_on_the_loop_are_on_with_a_loop_connection_and_a_zero_budget_switches_them_off(db: Path) -> None:
    """A writer given a loop connection commits on an idle loop by default; a budget of 0 hands every
    write to its thread, and a writer without a loop connection never commits there."""
    on = Writer(_connect(db), name="on", bulk=_bulk, inline=_loop_connect(db))
    off = Writer(_connect(db), name="off", bulk=_bulk, inline=_loop_connect(db))
    off.inline_budget = 0.0
    full = Writer(_connect(db), name="full", bulk=_bulk)
    try:

        async def main() -> list[bool]:
            done = []
            for w, key in ((on, "on"), (off, "off"), (full, "full")):
                future = w.submit_async(_insert(key))
                done.append(future.done())
                await future
            return done

        assert [True, False, False] == asyncio.run(main())
        assert (INLINE_BUDGET, 0.0, 0.0) == (on.inline_budget, off.inline_budget, full.inline_budget)
        assert (1, 0, 0) == (on.inline_commits, off.inline_commits, full.inline_commits)
    finally:
        for w in (on, off, full):
            w.close()


def test_a_loop_with_other_work_ready_sends_the_write_to_the_writer(normal_writer: Writer, db: Path) -> None:
    """A callback ready to run, or a timer due within a few milliseconds, keeps the commit off the
    loop (it would hold other runs up); with neither, writes commit on the loop, one after another."""
    normal_writer.inline_budget = 10.0  # a slow commit on a loaded machine must not spend it here

    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        done = []
        loop.call_soon(lambda: None)  # another run's task, ready to go on
        ready = normal_writer.submit_async(_insert("ready"))
        done.append(ready.done())
        await ready
        timer = loop.call_later(0.0001, lambda: None)  # another run's sleep, about to end
        soon = normal_writer.submit_async(_insert("timer"))
        done.append(soon.done())
        await soon
        await asyncio.sleep(0.001)  # the timer has run
        far = loop.call_later(60, lambda: None)  # nothing due soon
        done.append(normal_writer.submit_async(_insert("idle")).done())
        done.append(normal_writer.submit_async(_insert("again")).done())  # its own budget reset is no other work
        far.cancel()
        timer.cancel()
        return done

    assert [False, False, True, True] == asyncio.run(main())
    assert 2 == normal_writer.inline_commits
    assert ["ready", "timer", "idle", "again"] == _rowid_order(db)


def test_a_write_on_an_idle_loop_is_committed_before_submit_returns(normal_writer: Writer, db: Path) -> None:
    """With nothing queued, a coroutine's write is durable when submit_async returns: no thread hop."""

    async def main() -> tuple[bool, str]:
        future = normal_writer.submit_async(_insert("now"))
        return future.done(), await future

    assert (True, "now") == asyncio.run(main())
    assert 1 == normal_writer.inline_commits
    assert [("now", 1)] == _rows(db)


def test_a_lock_held_elsewhere_sends_the_write_to_the_writer(normal_writer: Writer, db: Path) -> None:
    """Another connection's transaction makes the loop's try fail at once; the writer waits for it instead."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: (other.execute("ROLLBACK"), other.close()))

    async def main() -> tuple[bool, str]:
        future = normal_writer.submit_async(_insert("later"))
        done_at_once = future.done()
        release.start()
        return done_at_once, await future

    assert (False, "later") == asyncio.run(main())
    release.join()
    assert 0 == normal_writer.inline_commits
    assert [("later", 1)] == _rows(db)


def test_a_write_on_the_loop_never_overtakes_one_handed_over_before(normal_writer: Writer, db: Path) -> None:
    """While an earlier write is queued (or being committed), the loop's write goes behind it."""
    gate = threading.Event()

    def slow_first(conn: sqlite3.Connection) -> None:
        gate.wait(5)
        conn.execute("INSERT INTO t (k, v) VALUES ('first', 1)")

    earlier = normal_writer.submit(slow_first)

    async def main() -> bool:
        future = normal_writer.submit_async(_insert("second"))
        done_at_once = future.done()
        gate.set()
        await future
        return done_at_once

    assert asyncio.run(main()) is False
    earlier.result(10)
    assert ["first", "second"] == _rowid_order(db)
    assert 0 == normal_writer.inline_commits


def test_a_burst_of_writes_in_one_loop_iteration_goes_to_the_writer(normal_writer: Writer, db: Path) -> None:
    """Once the loop iteration's budget is spent, one more write commits on the loop (its waiter woken
    in the next iteration) and the rest of the burst is group-committed by the writer."""
    normal_writer.inline_budget = 1e-9  # the first commit spends it

    async def main() -> tuple[list[bool], list[str]]:
        futures = [normal_writer.submit_async(_insert(f"b{i}")) for i in range(20)]
        done = [f.done() for f in futures[:3]]
        return done, list(await asyncio.gather(*futures))

    assert ([True, False, False], [f"b{i}" for i in range(20)]) == asyncio.run(main())
    assert 2 == normal_writer.inline_commits
    assert [f"b{i}" for i in range(20)] == _rowid_order(db)


def test_a_sequential_run_past_the_budget_yields_the_loop_instead_of_hopping_to_the_writer(
    normal_writer: Writer, db: Path
) -> None:
    """Writes awaited one after another keep committing on the loop once the budget is spent: the
    write past it is durable when submit returns, but its waiter goes on only after the loop polled
    (which starts a fresh budget), never through the writer thread."""
    normal_writer.inline_budget = 1e-9  # the first commit of a loop iteration spends it

    async def main() -> tuple[list[bool], list[str]]:
        done, seen = [], []
        for i in range(5):
            future = normal_writer.submit_async(_insert(f"s{i}"))
            done.append(future.done())
            seen.append(await future)
        return done, seen

    assert ([True, False, True, False, True], [f"s{i}" for i in range(5)]) == asyncio.run(main())
    assert 5 == normal_writer.inline_commits
    assert [f"s{i}" for i in range(5)] == _rowid_order(db)


def test_the_loop_goes_on_committing_while_a_wal_checkpoint_copies_but_not_beside_its_last_pass(
    normal_writer: Writer, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every so many commits on the loop, the writer thread checkpoints the WAL in two passes. While
    the first copies the pages, the loop goes on committing (a sequential run is not held up by the
    disk). The second copies what those commits added, and no commit on the loop is beside it: a
    write handed over meanwhile goes behind it (a WAL whose every checkpoint is overlapped by a
    commit is never written from its start again, and grows without bound)."""
    started = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]
    passes: list[int] = []
    checkpoint = Writer._checkpoint

    def held_checkpoint(self: Writer, conn: sqlite3.Connection) -> bool:
        at = len(passes)
        passes.append(at)
        if at < 2:
            started[at].set()
            release[at].wait(10)
        return checkpoint(self, conn)

    monkeypatch.setattr(Writer, "_checkpoint", held_checkpoint)
    monkeypatch.setattr(writer_module, "_CHECKPOINT_PAGES", 4)  # two lone writes
    normal_writer.inline_budget = 10.0  # a slow commit on a loaded machine must not spend it here

    async def main() -> tuple[bool, bool, str, str]:
        for key in ("a", "b"):  # the second commit asks the writer thread for a checkpoint
            await normal_writer.submit_async(_insert(key))
        assert started[0].wait(10)
        first = normal_writer.submit_async(_insert("c"))
        first_at_once = first.done()
        release[0].set()
        assert started[1].wait(10)
        last = normal_writer.submit_async(_insert("d"))
        last_at_once = last.done()
        release[1].set()
        return first_at_once, last_at_once, await first, await last

    try:
        assert (True, False, "c", "d") == asyncio.run(main())
    finally:
        for event in release:
            event.set()
    assert 3 == normal_writer.inline_commits
    assert ["a", "b", "c", "d"] == _rowid_order(db)


def test_a_wal_checkpoint_that_no_commit_overlapped_is_one_pass(
    normal_writer: Writer, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When nothing is committed while the first pass copies, it copied every frame: no second pass
    (its two fsyncs would hold the loop's commits up for nothing), and the next commit writes the WAL
    from its start again."""
    passes: list[bool] = []
    done = threading.Event()
    checkpoint = Writer._checkpoint

    def counted_checkpoint(self: Writer, conn: sqlite3.Connection) -> bool:
        copied_all = checkpoint(self, conn)
        passes.append(copied_all)
        done.set()
        return copied_all

    monkeypatch.setattr(Writer, "_checkpoint", counted_checkpoint)
    monkeypatch.setattr(writer_module, "_CHECKPOINT_PAGES", 4)  # two lone writes
    normal_writer.inline_budget = 10.0

    async def main() -> None:
        for key in ("a", "b"):  # the second commit asks the writer thread for a checkpoint
            await normal_writer.submit_async(_insert(key))
        assert done.wait(10)
        normal_writer.run(None)  # the writer thread has gone round its loop once more: no pass is left

    asyncio.run(main())
    assert [True] == passes
    wal = Path(f"{db}-wal").stat().st_size
    normal_writer.run(_insert("c"))
    assert Path(f"{db}-wal").stat().st_size <= wal  # written from its start again, not appended to


def test_a_write_that_raises_on_the_loop_is_rolled_back_and_reported(normal_writer: Writer, db: Path) -> None:
    """A write committed on the loop that raises leaves nothing behind (its rows neither); its waiter gets the error."""

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k, v) VALUES ('half', 1)")
        raise ValueError("refused")

    async def main() -> tuple[bool, str, str]:
        future = normal_writer.submit_async(half_then_fail, [("row", ("with-it", 2))])
        done_at_once = future.done()
        try:
            await future
        except ValueError as exc:
            message = str(exc)
        return done_at_once, message, await normal_writer.submit_async(_insert("after"))

    assert (True, "refused", "after") == asyncio.run(main())
    assert [("after", 1)] == _rows(db)


def test_rows_that_fail_on_the_loop_are_rolled_back_with_their_write(normal_writer: Writer, db: Path) -> None:
    """A write whose function ran but whose rows break a constraint is undone whole; the waiter gets the error."""

    async def main() -> str:
        await normal_writer.submit_async(_insert("taken"))
        try:
            await normal_writer.submit_async(_insert("fresh"), [("row", ("taken", 3))])
        except sqlite3.IntegrityError as exc:
            return type(exc).__name__
        return "committed"

    assert "IntegrityError" == asyncio.run(main())
    assert [("taken", 1)] == _rows(db)


def test_a_lone_row_on_the_loop_is_one_statement_and_a_held_lock_sends_it_to_the_writer(
    normal_writer: Writer, db: Path
) -> None:
    """A write of one row and no function commits on the idle loop as its own statement (no BEGIN or
    COMMIT around it); while another connection holds the lock it is not waited for on the loop:
    the writer thread writes it once the lock is free, after what the loop wrote."""
    statements: list[str] = []

    async def main() -> tuple[bool, bool, str, str]:
        alone = normal_writer.submit_async(None, [("row", ("alone", 1))])
        conn = normal_writer._loop_connection()
        conn.set_trace_callback(statements.append)
        traced = normal_writer.submit_async(None, [("row", ("traced", 2))])
        conn.set_trace_callback(None)
        other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.2, lambda: (other.execute("ROLLBACK"), other.close()))
        held = normal_writer.submit_async(None, [("row", ("held", 3))])
        held_at_once = held.done()
        release.start()
        result = await held
        release.join()
        return alone.done() and traced.done(), held_at_once, await traced, result

    assert (True, False, "traced", "held") == asyncio.run(main())
    assert ["INSERT INTO t (k, v) VALUES ('traced', 2)"] == statements
    assert 2 == normal_writer.inline_commits
    assert ["alone", "traced", "held"] == _rowid_order(db)


# ---- commits on the loop at synchronous=FULL (a quiet loop only) ---------------------------------


def _full_loop_connect(path: Path) -> Any:
    def connect() -> sqlite3.Connection:
        conn = _loop_connect(path)()
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    return connect


@pytest.fixture
def full_writer(db: Path) -> Iterator[Writer]:
    """A writer whose commits on the loop wait for an fsync, as a store at FULL has."""
    w = Writer(_connect(db), name="full", bulk=_bulk, inline=_full_loop_connect(db), inline_waits_for_disk=True)
    w.inline_budget = 10.0  # a slow commit on a loaded machine must not spend it here
    yield w
    w.close()


def test_at_full_a_quiet_loop_commits_itself(full_writer: Writer, db: Path) -> None:
    """A sequential run at FULL (nothing else on its loop) pays the fsync it waits for anyway, on its
    own thread: durable when submit_async returns, with no hop to the writer thread and back."""

    async def main() -> tuple[bool, str]:
        future = full_writer.submit_async(_insert("now"))
        return future.done(), await future

    assert (True, "now") == asyncio.run(main())
    assert 1 == full_writer.inline_commits
    assert [("now", 1)] == _rows(db)


def test_at_full_a_loop_watching_a_socket_or_with_a_timer_due_soon_sends_the_write_to_the_writer(
    full_writer: Writer, db: Path
) -> None:
    """An fsync on the loop would hold up a reply arriving on a watched socket, or a timer due within
    ``_QUIET_FOR`` (another run's sleep about to end): either sends the write to the writer thread.
    A timer due much later does not (the loop is quiet until then)."""
    import socket

    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        done = []
        ours, theirs = socket.socketpair()
        loop.add_reader(ours.fileno(), lambda: None)  # a model's reply on its way
        watched = full_writer.submit_async(_insert("socket"))
        done.append(watched.done())
        await watched
        loop.remove_reader(ours.fileno())
        ours.close()
        theirs.close()
        soon = loop.call_later(writer_module._QUIET_FOR / 2, lambda: None)
        timer = full_writer.submit_async(_insert("timer"))
        done.append(timer.done())
        await timer
        await asyncio.sleep(writer_module._QUIET_FOR)  # the timer has run
        assert soon.cancelled() is False
        later = loop.call_later(60, lambda: None)
        done.append(full_writer.submit_async(_insert("quiet")).done())
        later.cancel()
        return done

    assert [False, False, True] == asyncio.run(main())
    assert 1 == full_writer.inline_commits
    assert ["socket", "timer", "quiet"] == _rowid_order(db)


def test_at_full_a_commit_on_the_loop_that_stalled_sends_the_next_writes_to_the_writer(
    full_writer: Writer, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit on the loop that took longer than ``_QUIET_FOR`` (a disk that stalls) sends the
    writes of the next ``_SLOW_DISK_PAUSE`` seconds to the writer thread: a stalling disk holds the
    loop up once, not at every step. Once the pause is over, the loop commits again."""
    monkeypatch.setattr(writer_module, "_SLOW_DISK_PAUSE", 0.5)

    def stalled(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k, v) VALUES ('stalled', 1)")
        threading.Event().wait(writer_module._QUIET_FOR * 2)  # what a stalling fsync costs the loop
        return "stalled"

    async def main() -> list[bool]:
        done = []
        for write in (stalled, _insert("paused")):
            future = full_writer.submit_async(write)
            done.append(future.done())
            await future
        await asyncio.sleep(0.6)
        done.append(full_writer.submit_async(_insert("again")).done())
        return done

    assert [True, False, True] == asyncio.run(main())
    assert 2 == full_writer.inline_commits
    assert ["stalled", "paused", "again"] == _rowid_order(db)


def test_the_switch_interval_is_short_while_a_commit_is_under_way_and_put_back_after(writer: Writer) -> None:
    """A group commit shortens the interpreter's switch interval (the GIL comes back sooner) and restores it."""
    before = sys.getswitchinterval()
    seen = writer.run(lambda conn: sys.getswitchinterval())
    after = sys.getswitchinterval()
    assert (COMMIT_SWITCH_INTERVAL, before) == (pytest.approx(seen), after)


def test_a_switch_interval_set_during_a_commit_is_kept(writer: Writer) -> None:
    """Someone who sets the interval while a commit is under way keeps their value; it is theirs."""
    before = sys.getswitchinterval()
    try:
        writer.run(lambda conn: sys.setswitchinterval(0.002))
        kept = sys.getswitchinterval()
    finally:
        sys.setswitchinterval(before)
    assert pytest.approx(0.002) == kept


def test_commits_of_two_writers_at_once_put_the_interval_back(db: Path, tmp_path: Path) -> None:
    """Two writers whose commits overlap: the interval is the first one's saved value once both are done."""
    other_db = tmp_path / "other.db"
    with closing(sqlite3.connect(other_db, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    first, second = Writer(_connect(db), name="first"), Writer(_connect(other_db), name="second")
    before = sys.getswitchinterval()
    inside, leave = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        inside.set()
        leave.wait(5)

    try:
        held = first.submit(hold)
        assert inside.wait(5)
        second.run(_insert("b"))  # starts and ends while the first commit is under way
        during = sys.getswitchinterval()
        leave.set()
        held.result(5)
        after = sys.getswitchinterval()
    finally:
        first.close()
        second.close()
    assert (pytest.approx(COMMIT_SWITCH_INTERVAL), before) == (during, after)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_a_writer_of_its_own(tmp_path: Path) -> None:
    """A process that forks after its store's writer thread started: the child's writes go to a
    writer thread of its own (the parent's is not in the child), and parent and child both go on
    writing durable runs to the workspace."""
    import subprocess
    import textwrap

    ws = tmp_path / "forked"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import wfkit as wf
        flow = wf.Workflow("forks")
        @flow.step
        async def one(state):
            return {{"pid": os.getpid()}}
        flow.run({{}}, run_id="before", workspace={str(ws)!r})
        child = os.fork()
        if child == 0:
            signal.alarm(30)  # a child whose writes hang dies on its own, not orphaned for ever
            try:
                flow.run({{}}, run_id="child", workspace={str(ws)!r})
            finally:
                os._exit(0)
        flow.run({{}}, run_id="parent", workspace={str(ws)!r})
        _, status = os.waitpid(child, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert 0 == done.returncode, done.stderr
    from wfkit.store._workspace import Workspace

    runs = {r["run_id"]: r["status"] for r in Workspace(ws).runs()}
    assert {"before": "succeeded", "child": "succeeded", "parent": "succeeded"} == runs


# ---- the write lock another process holds -------------------------------------------------------


def test_the_writer_waits_for_a_lock_held_elsewhere_and_commits_once_it_is_free(writer: Writer, db: Path) -> None:
    """A write handed over while another connection holds the write lock waits for it (the writer
    tries again, its own busy timeout 0) and commits once the lock is let go; nothing is lost."""
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (k, v) VALUES ('other', 2)")
        waiting = writer.submit(_insert("mine"))
        with pytest.raises(TimeoutError):
            waiting.result(0.3)  # the lock is still held: the write waits, it does not fail
        assert writer.commits == 0
        other.execute("COMMIT")
        assert "mine" == waiting.result(10)
    assert [("mine", 1), ("other", 2)] == _rows(db)


def test_a_lock_held_past_the_wait_fails_the_write_with_sqlites_own_error(db: Path) -> None:
    """``begin_immediate`` tries again while the lock is busy, then says what SQLite says (the
    store's error names the file and the way out); an error that is not a busy lock is not retried."""
    with (
        closing(sqlite3.connect(db, isolation_level=None)) as other,
        closing(sqlite3.connect(db, isolation_level=None, timeout=0.0)) as conn,
    ):
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="database is locked") as caught:
            writer_module.begin_immediate(conn, wait=0.05)
        assert caught.value.sqlite_errorcode == sqlite3.SQLITE_BUSY
        other.execute("ROLLBACK")
        writer_module.begin_immediate(conn, wait=0.05)  # free now: at once
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
            writer_module.begin_immediate(conn, wait=60.0)  # not a busy lock: raised at the first try
