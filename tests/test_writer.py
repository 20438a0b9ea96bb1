"""The store's writer thread: group commits, durability before a waiter wakes, a failing write
isolated from its batch, asyncio waiters woken on their own loop, and an event loop that keeps
running while the disk is slow."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from wfkit.store._writer import Writer


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


def _bulk(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    conn.executemany("INSERT INTO t (k, v) VALUES (?, ?)", [values for _kind, values in rows])


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
    ok.result(10)
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(10)
    assert [("p", 1)] == _rows(db)


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


def test_the_event_loop_keeps_running_while_the_disk_is_slow(writer: Writer) -> None:
    """A write that holds the writer for 0.5 s stops no coroutine: a 10 ms ticker keeps ticking."""

    async def main() -> tuple[int, float]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        await writer.submit_async(lambda conn: time.sleep(0.5))
        waited = time.perf_counter() - t0
        stop.set()
        await task
        return ticks, waited

    ticks, waited = asyncio.run(main())
    assert waited >= 0.5
    assert ticks >= 10  # 50 if the machine is idle; a blocked loop would tick at most once


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
