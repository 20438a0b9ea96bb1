"""The SQLite run store: file creation, refusing damaged or foreign files, JSON encoding of state,
the journal, run ids and leases."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.store._doctor import check_store
from wfkit.store._journal import COLUMNS, JOURNAL_INSERT, encode_state, encode_updates, event_row, row_checksum_v1
from wfkit.store._store import _JOURNAL_TABLE, _MAGIC, SCHEMA_VERSION, Store
from wfkit.store._workspace import DB_NAME, forget_store, open_store

# ---- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where a test's own store file goes (outside the shared workspace)."""
    return tmp_path / "store" / DB_NAME


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    """A fresh store on its own file, closed at teardown."""
    s = Store(db)
    yield s
    s.close()


def _sql(path: Path, *statements: str) -> list[Any]:
    """Run statements on a plain sqlite3 connection (closed afterwards); the last one's rows."""
    with closing(sqlite3.connect(path)) as conn:
        rows: list[Any] = []
        for statement in statements:
            rows = conn.execute(statement).fetchall()
        conn.commit()
        return rows


def _row(run_id: str) -> dict[str, Any]:
    """The columns Store.create_run needs for a run."""
    return {
        "run_id": run_id,
        "workflow": "w",
        "workflow_version": "v1",
        "fingerprint": "f",
        "definition": "{}",
        "inputs": "{}",
    }


def _two_step_flow() -> wf.Workflow:
    flow = wf.Workflow("two")

    @flow.step
    def draft(state: Any) -> dict[str, Any]:
        return {"text": "x" * 200, "n": state.get("i", 0)}

    @flow.step
    def finish(state: Any) -> dict[str, Any]:
        return {"done": True}

    flow.chain("draft", "finish")
    return flow


def _open_and_read(path: Path) -> tuple[list[dict[str, Any]], list[wf.StepEvent]]:
    """Open a new Store on ``path`` and read its runs and journal."""
    s = Store(path)
    try:
        return s.run_rows(), s.events()
    finally:
        s.close()


def _dead_pid() -> int:
    """The pid of a process that has finished (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _open_handles(path: Path) -> list[str]:
    """Files under ``path``'s folder that this process holds open (Linux /proc)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


# ---- a new store -----------------------------------------------------------------------------------


def test_new_store_file_is_in_wal_mode(store: Store, db: Path) -> None:
    """A new store creates its file (and folder) in WAL journal mode, seen from a fresh connection."""
    assert db.is_file()
    assert [("wal",)] == _sql(db, "PRAGMA journal_mode")


def test_new_store_records_schema_version(store: Store, db: Path) -> None:
    """A new store writes the current schema_version into its meta table."""
    assert [(str(SCHEMA_VERSION),)] == _sql(db, "SELECT value FROM meta WHERE key = 'schema_version'")


def test_new_store_leaves_no_temporary_file(store: Store, db: Path) -> None:
    """Creating a store leaves only the database (and SQLite's own WAL files) in the folder."""
    names = {p.name for p in db.parent.iterdir()}
    assert set() == names - {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}


def test_reopening_a_store_keeps_its_runs(store: Store, db: Path) -> None:
    """A second Store on an existing file reads the runs the first one wrote."""
    store.create_run(_row("r1"))
    again = Store(db)
    try:
        assert ["r1"] == [r["run_id"] for r in again.run_rows()]
    finally:
        again.close()


@pytest.mark.parametrize(("level", "pragma"), [("full", 2), ("normal", 1), ("NORMAL", 1)])
def test_synchronous_level_is_applied(db: Path, level: str, pragma: int) -> None:
    """synchronous='full' or 'normal' (any case) sets SQLite's synchronous pragma on the connection."""
    s = Store(db, synchronous=level)
    try:
        assert pragma == s.conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        s.close()


@pytest.mark.parametrize("level", ["off", "extra", ""])
def test_synchronous_must_be_full_or_normal(db: Path, level: str) -> None:
    """Any synchronous level other than 'full' or 'normal' is a ValueError, and no file is created."""
    with pytest.raises(ValueError, match="synchronous must be 'full' or 'normal'"):
        Store(db, synchronous=level)
    assert not db.exists()


# ---- damaged and foreign stores --------------------------------------------------------------------


def test_zero_byte_store_is_refused(db: Path) -> None:
    """A 0-byte store file raises StoreCorruptError saying it is empty and how to fix it."""
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    with pytest.raises(wf.StoreCorruptError, match=r"empty \(truncated to 0 bytes\).*Move it aside"):
        Store(db)
    assert 0 == db.stat().st_size


def test_random_bytes_store_is_refused(db: Path) -> None:
    """A file of random bytes raises StoreCorruptError saying it is not SQLite and how to fix it."""
    db.parent.mkdir(parents=True)
    db.write_bytes(random.Random(7).randbytes(8192))
    with pytest.raises(wf.StoreCorruptError, match=r"not an SQLite database.*Move it aside"):
        Store(db)


def test_sqlite_header_with_garbage_is_refused(db: Path) -> None:
    """A file with SQLite's magic header but garbage after it raises StoreCorruptError with the fix."""
    db.parent.mkdir(parents=True)
    db.write_bytes(_MAGIC + random.Random(7).randbytes(8192))
    with pytest.raises(wf.StoreCorruptError, match=r"cannot be read.*Move it aside"):
        Store(db)


def test_foreign_sqlite_file_is_refused(db: Path) -> None:
    """A valid SQLite file with other tables raises StoreCorruptError naming them and the fix."""
    db.parent.mkdir(parents=True)
    _sql(db, "CREATE TABLE customers (id INTEGER)", "CREATE TABLE orders (id INTEGER)")
    with pytest.raises(wf.StoreCorruptError, match=r"not a wfkit run store.*customers, orders.*another folder"):
        Store(db)
    assert [("customers",), ("orders",)] == _sql(db, "SELECT name FROM sqlite_master ORDER BY name")


def test_foreign_sqlite_file_is_left_unchanged(db: Path) -> None:
    """Refusing a foreign SQLite file does not change it: its journal mode stays 'delete'."""
    db.parent.mkdir(parents=True)
    _sql(db, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(wf.StoreCorruptError):
        Store(db)
    assert [("delete",)] == _sql(db, "PRAGMA journal_mode")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc to list open files")
def test_refused_store_is_not_held_open(db: Path) -> None:
    """After refusing a file, the store holds no open handle on it while the error is kept."""
    db.parent.mkdir(parents=True)
    _sql(db, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(wf.StoreCorruptError) as caught:
        Store(db)
    assert "customers" in str(caught.value)  # the error (and its traceback) is still alive here
    assert [] == _open_handles(db)


def test_newer_schema_version_is_refused(store: Store, db: Path) -> None:
    """A store written by a newer wfkit (higher schema_version) raises StoreCorruptError: upgrade wfkit."""
    store.close()
    _sql(db, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    with pytest.raises(wf.StoreCorruptError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade wfkit"):
        Store(db)


def test_non_numeric_schema_version_is_refused(store: Store, db: Path) -> None:
    """A schema_version that is not a number raises StoreCorruptError saying how to fix it."""
    store.close()
    _sql(db, "UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    with pytest.raises(wf.StoreCorruptError, match="Move it aside"):
        Store(db)


def test_missing_schema_version_is_refused_with_fix(store: Store, db: Path) -> None:
    """A wfkit store with no schema_version raises StoreCorruptError saying how to fix it."""
    store.close()
    _sql(db, "DELETE FROM meta")
    with pytest.raises(wf.StoreCorruptError, match="Move it aside"):
        Store(db)


def test_missing_schema_version_is_refused(store: Store, db: Path) -> None:
    """A wfkit store with no schema_version raises StoreCorruptError instead of opening."""
    store.close()
    _sql(db, "DELETE FROM meta")
    with pytest.raises(wf.StoreCorruptError, match="no schema version"):
        Store(db)


def test_sqlite_file_without_tables_is_refused(db: Path) -> None:
    """An SQLite file that exists but holds no tables raises StoreCorruptError, not an empty store."""
    db.parent.mkdir(parents=True)
    _sql(db, "PRAGMA user_version = 3")
    with pytest.raises(wf.StoreCorruptError, match="holds no tables"):
        Store(db)


def test_sqlite_file_without_tables_is_refused_with_fix(db: Path) -> None:
    """An SQLite file with no tables raises StoreCorruptError saying how to fix it."""
    db.parent.mkdir(parents=True)
    _sql(db, "PRAGMA user_version = 3")
    with pytest.raises(wf.StoreCorruptError, match="Move it aside"):
        Store(db)


@pytest.mark.parametrize("runs", [3, 40])
def test_truncated_store_is_never_read_as_empty(workspace: Path, runs: int) -> None:
    """A store cut to half its size after some runs raises StoreCorruptError on open or read, never []."""
    flow = _two_step_flow()
    for i in range(runs):
        flow.run({"i": i})
    open_store(workspace).close()  # the last connection: SQLite folds the WAL into the file
    path = workspace / DB_NAME
    assert not Path(f"{path}-wal").exists()
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(wf.StoreCorruptError, match="Move it aside"):
        _open_and_read(path)


def _zero_runs_page(store: Store, db: Path) -> None:
    """Overwrite the page holding the runs table with zeros, as a bad disk sector would."""
    for i in range(3):
        store.create_run(_row(f"r{i}"))
    store.close()
    page_size = _sql(db, "PRAGMA page_size")[0][0]
    root = _sql(db, "SELECT rootpage FROM sqlite_master WHERE name='runs'")[0][0]
    with db.open("r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(bytes(page_size))


def test_damaged_page_is_never_read_as_empty(store: Store, db: Path) -> None:
    """A store whose runs page is zeroed opens, but listing runs raises StoreCorruptError, never []."""
    _zero_runs_page(store, db)
    damaged = Store(db)
    try:
        with pytest.raises(wf.StoreCorruptError, match="is damaged: database disk image is malformed"):
            damaged.run_rows()
    finally:
        damaged.close()


def test_damaged_page_error_says_how_to_fix(store: Store, db: Path) -> None:
    """The error for a store damaged inside says how to fix it, like the open-time errors do."""
    _zero_runs_page(store, db)
    with pytest.raises(wf.StoreCorruptError, match="Move it aside"):
        _open_and_read(db)


# ---- encoding state --------------------------------------------------------------------------------


class _Opaque:
    """A class run state cannot keep (not plain data, not allowed with state_type)."""


def test_encode_updates_names_step_and_field_of_an_opaque_object() -> None:
    """An object state cannot keep raises StateValueError naming the step, the field and the type."""
    with pytest.raises(wf.StateValueError, match=r"step 'fetch' wrote state field 'obj' = .*_Opaque.*plain data"):
        encode_updates("fetch", {"ok": 1, "obj": _Opaque()})


def test_encode_updates_names_the_field_holding_a_nested_bad_value() -> None:
    """An object nested inside a dict is reported under its top-level state field, with its path."""
    with pytest.raises(wf.StateValueError, match=r"state field 'meta' at meta\['at'\]\[0\] = "):
        encode_updates("fetch", {"meta": {"at": [_Opaque()]}})


def test_encode_state_names_who_wrote_it() -> None:
    """encode_state puts the writer's description in front of the field it names."""
    with pytest.raises(wf.StateValueError, match=r"^the run's inputs: state field 'since' = "):
        encode_state("the run's inputs:", {"since": _Opaque()})


def test_state_value_error_is_a_value_error() -> None:
    """StateValueError is a ValueError (and a WfkitError), so generic handlers catch it."""
    with pytest.raises(ValueError, match="'s'"):
        encode_updates("x", {"s": {_Opaque}})


def test_encode_updates_passes_plain_json() -> None:
    """Plain JSON values (str, int, float, bool, None, lists, dicts) encode and decode unchanged."""
    updates = {"s": "héllo", "i": 3, "f": 2.5, "b": True, "n": None, "l": [1, "2", [3]], "d": {"k": {"v": []}}}
    assert updates == json.loads(encode_updates("step", updates))
    assert updates == json.loads(encode_state("the run's inputs", updates))


def test_encode_updates_of_nothing_is_an_empty_object() -> None:
    """A step that updated nothing encodes as '{}'."""
    assert "{}" == encode_updates("step", {})


# ---- the journal -----------------------------------------------------------------------------------


def _tooling_flow() -> wf.Workflow:
    flow = wf.Workflow("tooling")
    calls = {"search": 0}

    @flow.step(tools=["web_search", "calculator"], retry=wf.RetryPolicy(max_retries=1, base_delay=0))
    def search(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        calls["search"] += 1
        if calls["search"] == 1:
            raise ConnectionError("flaky backend")
        ctx.record(model="m-1", tokens_in=12, tokens_out=34, cost_usd=0.25, trace={"ids": [1, 2]}, label="x")
        return {"hits": 2}

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        return {"answer": state["hits"]}

    flow.route("search", wf.when("hits", "gt", 1) >> wf.go("answer"), default=wf.go(wf.END))
    return flow


def test_journal_round_trips_a_runs_events(workspace: Path, db: Path) -> None:
    """Events journaled by a real run come back from a new Store equal to the run's own events."""
    run = _tooling_flow().run({"q": "hi"})
    reader = Store(workspace / DB_NAME)
    try:
        stored = reader.events(run.run_id)
    finally:
        reader.close()
    assert run.events == stored
    assert ["retry", "ok", "ok"] == [e.status for e in stored]
    assert ("web_search", "calculator") == stored[1].tools
    assert () == stored[2].tools
    assert {"trace": {"ids": [1, 2]}, "label": "x"} == stored[1].extra
    assert ("m-1", 12, 34, 0.25, "answer") == (
        stored[1].model,
        stored[1].tokens_in,
        stored[1].tokens_out,
        stored[1].cost_usd,
        stored[1].route_taken,
    )


def test_a_durable_steps_journal_row_is_made_by_the_writer_not_the_event_loop(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop hands a settled step's event over as it is; the writer thread makes it into its
    journal row (redacted, checksummed), so every other run on the loop waits less. An event
    holding ``extra`` (a dict its owner could still change) is made into its row at once."""
    from wfkit.store import _store

    made_in: list[str] = []
    real = _store.event_row

    def event_row_here(*args: Any) -> tuple[Any, ...]:
        made_in.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(_store, "event_row", event_row_here)
    # (A write may be committed on an idle loop, which makes its row there: see the writer. Here every
    # write goes through the writer thread, as when other runs keep the loop busy.)
    monkeypatch.setenv("WFKIT_SYNCHRONOUS", "full")
    open_store(workspace).writer.inline_budget = 0.0
    flow = wf.Workflow("handed")
    for name in ("a", "b", "c"):

        @flow.step(name=name)
        async def step(state: Any) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"n": state.get("n", 0) + 1}

    flow.chain("a", "b", "c")

    async def main() -> tuple[Any, str]:
        return await flow.arun({}), threading.current_thread().name

    run, loop_thread = asyncio.run(main())
    assert "succeeded" == run.status
    assert 3 == run.state["n"]
    assert made_in
    assert all(name.startswith("wfkit-writer") for name in made_in), made_in
    assert loop_thread not in made_in
    reader = Store(workspace / DB_NAME)
    try:
        assert run.events == reader.events(run.run_id)  # the rows hold what the sinks saw
    finally:
        reader.close()
    made_in.clear()
    tooling = _tooling_flow().run({"q": "hi"})  # ctx.record(..., trace=...): events with extra
    assert "succeeded" == tooling.status
    assert "MainThread" in made_in


def test_journal_of_all_runs_is_in_commit_order(workspace: Path) -> None:
    """Store.events() with no run id returns every run's events, oldest commit first."""
    flow = _two_step_flow()
    first, second = flow.run({}, run_id="first"), flow.run({}, run_id="second")
    assert first.events + second.events == open_store(workspace).events()


def test_journal_of_an_unknown_run_is_empty(store: Store) -> None:
    """A run id with no events gives an empty list (the store itself is healthy)."""
    assert [] == store.events("no-such-run")


# ---- run ids ----------------------------------------------------------------------------------------


def test_duplicate_run_id_is_refused(store: Store) -> None:
    """create_run with an id that exists raises ValueError telling to pass another run_id."""
    store.create_run(_row("r1"))
    with pytest.raises(ValueError, match=r"run with id 'r1' already exists.*pass another run_id"):
        store.create_run(_row("r1"))
    assert ["r1"] == [r["run_id"] for r in store.run_rows()]


def test_duplicate_run_id_through_a_workflow_is_refused() -> None:
    """Workflow.run with a run_id already in the workspace raises ValueError and leaves the first run."""
    flow = _two_step_flow()
    flow.run({}, run_id="same")
    with pytest.raises(ValueError, match="pass another run_id"):
        flow.run({}, run_id="same")
    assert ["succeeded"] == [r["status"] for r in open_store().run_rows()]


# ---- leases -----------------------------------------------------------------------------------------


@pytest.fixture
def other(db: Path, store: Store) -> Iterator[Store]:
    """A second Store object on the same file: another owner, as a second process would be."""
    s = Store(db)
    yield s
    s.close()


def _set_lease(store: Store, run_id: str, **columns: Any) -> None:
    sets = ", ".join(f"lease_{k} = ?" for k in columns)
    with store.write() as conn:
        conn.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*columns.values(), run_id))


def test_a_new_run_is_leased_to_its_creator(store: Store) -> None:
    """create_run leases the run to the creating store, this pid, for about LEASE_TTL seconds."""
    store.create_run(_row("r1"))
    row = store.run_row("r1")
    assert (store.owner, os.getpid()) == (row["lease_owner"], row["lease_pid"])
    assert row["lease_expires"] > time.time()


def test_live_lease_is_refused_naming_the_pid(store: Store, other: Store) -> None:
    """Acquiring a run whose fresh lease a live process holds raises LeaseError naming that pid."""
    store.create_run(_row("r1"))
    assert store.owner != other.owner
    expected = rf"^run r1: it is being executed by process {os.getpid()} on .*wait for it"
    with pytest.raises(wf.LeaseError, match=expected):
        other.acquire("r1")
    assert store.owner == store.run_row("r1")["lease_owner"]


def test_lease_error_carries_the_run_id(store: Store, other: Store) -> None:
    """The LeaseError is a RunError carrying the run id."""
    store.create_run(_row("r1"))
    with pytest.raises(wf.LeaseError) as caught:
        other.acquire("r1")
    assert "r1" == caught.value.run_id


def test_lease_of_a_dead_process_is_taken_over(store: Store, other: Store) -> None:
    """A fresh lease whose pid is dead on this host is taken over by the next acquirer."""
    store.create_run(_row("r1"))
    dead = _dead_pid()
    _set_lease(store, "r1", pid=dead)
    before = other.acquire("r1")
    assert dead == before["lease_pid"]
    row = other.run_row("r1")
    assert (other.owner, os.getpid()) == (row["lease_owner"], row["lease_pid"])


def test_expired_lease_is_taken_over(store: Store, other: Store) -> None:
    """A lease past its expiry is taken over, even though its process is alive."""
    store.create_run(_row("r1"))
    _set_lease(store, "r1", expires=time.time() - 1)
    other.acquire("r1")
    row = other.run_row("r1")
    assert other.owner == row["lease_owner"]
    assert row["lease_expires"] > time.time()


@pytest.mark.parametrize(
    ("lease", "held"),
    [("fresh", True), ("expired, process alive", False), ("fresh, process dead", False), ("released", False)],
)
def test_a_run_reads_as_running_exactly_when_a_resume_is_refused(
    store: Store, other: Store, lease: str, held: bool
) -> None:
    """The status a stored run shows (`wfkit runs`, ``run_info``) and whether another process may
    take it over follow one rule: running while a live holder's lease lasts, else interrupted and
    taken over."""
    store.create_run(_row("r1"))
    if lease == "expired, process alive":
        _set_lease(store, "r1", expires=time.time() - 1)
    elif lease == "fresh, process dead":
        _set_lease(store, "r1", pid=_dead_pid())
    elif lease == "released":
        store.release("r1")
    status = other.run_row("r1")["status"]
    try:
        other.acquire("r1")
        taken = True
    except wf.LeaseError:
        taken = False
    assert (("running", False) if held else ("interrupted", True)) == (status, taken)


def test_a_live_runs_lease_is_renewed_without_writes(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """While a run is live in a store (``leases.keep``), its lease is renewed though it writes
    nothing (a long step), so no other process can take it; once it stops (``leases.drop``), the
    lease runs out and another process takes the run over."""
    monkeypatch.setenv("WFKIT_LEASE_TTL", "1.5")
    holder, other = Store(db), Store(db)
    try:
        holder.create_run(_row("r1"))
        first = holder.run_row("r1")["lease_expires"]
        holder.leases.keep("r1")
        while holder.run_row("r1")["lease_expires"] <= first:  # renewed before it expired
            assert time.time() < first, "the lease expired before it was renewed"
            time.sleep(0.02)
        with pytest.raises(wf.LeaseError):
            other.acquire("r1")
        holder.leases.drop("r1")
        # A renewal the keeper was handing over as the run stopped may still come: wait out the
        # lease as the row says it, until it is over (renewals going on would never let it end).
        give_up = time.time() + 10
        while (status := other.run_row("r1")["status"]) == "running" and time.time() < give_up:
            time.sleep(max(0.0, holder.run_row("r1")["lease_expires"] - time.time()) + 0.05)
        assert "interrupted" == status
        assert "r1" == other.acquire("r1")["run_id"]
    finally:
        holder.close()
        other.close()


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_a_lease_ttl_that_is_not_a_duration_is_refused(monkeypatch: pytest.MonkeyPatch, db: Path, value: str) -> None:
    """$WFKIT_LEASE_TTL must be seconds above 0: anything else is refused when the store opens,
    naming the variable, the value and the default, before the file is touched."""
    monkeypatch.setenv("WFKIT_LEASE_TTL", value)
    expected = rf"^\$WFKIT_LEASE_TTL must be a number of seconds above 0 .*60 by default\), got '{value}'"
    with pytest.raises(ValueError, match=expected):
        Store(db)
    assert not db.exists()


def test_released_lease_is_taken(store: Store, other: Store) -> None:
    """After the holder releases a run, another store acquires it."""
    store.create_run(_row("r1"))
    store.release("r1")
    assert store.run_row("r1")["lease_owner"] is None
    other.acquire("r1")
    assert other.owner == other.run_row("r1")["lease_owner"]


def test_lease_on_another_host_is_respected(store: Store, other: Store) -> None:
    """A fresh lease from another host is never taken over: its pid cannot be checked from here."""
    store.create_run(_row("r1"))
    _set_lease(store, "r1", host="elsewhere.example", pid=_dead_pid())
    with pytest.raises(wf.LeaseError, match=r"on elsewhere\.example"):
        other.acquire("r1")


def _lease_runs_out(monkeypatch: pytest.MonkeyPatch, db: Path) -> tuple[Store, Store]:
    """A holder whose run "r1" another store took over once its lease ran out (the holder wrote
    nothing and renewed nothing meanwhile, as a stopped process would), and the one that took it."""
    monkeypatch.setenv("WFKIT_LEASE_TTL", "0.3")
    holder, taker = Store(db), Store(db)
    holder.create_run(_row("r1"))
    time.sleep(max(0.0, holder.run_row("r1")["lease_expires"] - time.time()) + 0.05)
    taker.acquire("r1")
    return holder, taker


def _ok_event(step: str) -> wf.StepEvent:
    return wf.StepEvent("r1", "w", "v1", step, 1, 1, "ok", started_at=1.0, ended_at=2.0, latency_s=1.0)


def test_a_checkpoint_of_a_run_taken_over_is_refused(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """A process whose run another one took over (its lease had run out: the process was stopped)
    and that then settles a step: its checkpoint is refused (the lease fence) with a LeaseError
    naming the process that holds the run, and writes nothing: no journal row, and neither the
    new holder's lease nor the time the run has used that it wrote changes. A journal row and a
    durable wait of that run are refused as well."""
    holder, taker = _lease_runs_out(monkeypatch, db)
    try:
        taken = taker.run_row("r1")
        expected = rf"^run r1: process {os.getpid()} on .* took this run over: its lease had run out here .*0\.3 s"
        with pytest.raises(wf.LeaseError, match=expected):
            holder.checkpoint(_ok_event("s"), "ok", "{}", None, elapsed=99.0)
        with pytest.raises(wf.LeaseError, match="took this run over"):
            holder.journal([_ok_event("t")])
        with pytest.raises(wf.LeaseError, match="took this run over"):
            holder.writer.run(None, [Store.durable_wait_row(0.5, "r1", 1)])
        after = taker.run_row("r1")
        assert [] == taker.journal_rows("r1")
        assert (taken["lease_owner"], taken["lease_expires"], taken["elapsed"]) == (
            after["lease_owner"],
            after["lease_expires"],
            after["elapsed"],
        )
        # The process that holds the run writes on.
        taker.checkpoint(_ok_event("s"), "ok", "{}", None)
        assert ["s"] == [c[1] for c in taker.checkpoints("r1")]
    finally:
        holder.close()
        taker.close()


def test_a_group_commit_refuses_only_the_run_taken_over(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """Writes of many runs share a commit: the fence refuses the write of the run another process
    took over, and the writes of the runs still this process's beside it in the same batch commit."""
    holder, taker = _lease_runs_out(monkeypatch, db)
    try:
        holder.create_run(_row("r2"))  # a lease just written: surely its own
        held, go = threading.Event(), threading.Event()

        def hold_the_writer(conn: sqlite3.Connection) -> None:
            held.set()
            go.wait(10)

        first = holder.writer.submit(hold_the_writer)
        assert held.wait(10)
        # Queued while the writer is busy: the next batch takes both together.
        lost = holder.writer.submit(None, Store.event_rows([_ok_event("s")]))
        kept = holder.writer.submit(None, Store.event_rows([_ok_event("s")._replace(run_id="r2")]))
        go.set()
        first.result(10)
        with pytest.raises(wf.LeaseError, match="took this run over"):
            lost.result(10)
        assert 1 == kept.result(10)
        assert ([], 1) == (taker.journal_rows("r1"), len(taker.journal_rows("r2")))
    finally:
        holder.close()
        taker.close()


def test_an_irreversible_step_of_a_run_taken_over_gets_no_intent(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """The intent an irreversible step writes before its body runs is behind the fence too: a
    stopped process that comes back to a run taken over cannot write it, so it never runs the
    body a second time beside the new holder."""
    holder, taker = _lease_runs_out(monkeypatch, db)
    try:
        intent = holder.fenced("r1", holder.intent_op("r1", "send", 1, "r1:send:1"))
        with pytest.raises(wf.LeaseError, match="took this run over"):
            holder.writer.run(intent)
        assert [] == taker.intents("r1")
    finally:
        holder.close()
        taker.close()


def test_a_lease_that_ran_out_but_was_not_taken_over_writes_on(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """A lease past its time that no other process took is still its holder's: the fence reads it
    and lets the write through (the lease keeper renews it next)."""
    monkeypatch.setenv("WFKIT_LEASE_TTL", "0.3")
    holder = Store(db)
    try:
        holder.create_run(_row("r1"))
        assert not holder.leases.due()  # a lease just written: no write looks at the file
        time.sleep(max(0.0, holder.run_row("r1")["lease_expires"] - time.time()) + 0.05)
        assert holder.leases.due()
        holder.checkpoint(_ok_event("s"), "ok", "{}", None)
        holder.writer.run(holder.fenced("r1", holder.intent_op("r1", "send", 1, "r1:send:1")))
        assert ["s"] == [c[1] for c in holder.checkpoints("r1")]
        assert ["pending"] == [i["status"] for i in holder.intents("r1")]
    finally:
        holder.close()


def test_a_renewed_lease_needs_no_look_at_the_file(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """While the keeper renews a live run's lease, its writes are never fenced (``due`` stays
    false past the lease's first expiry). Once the run stops here and lets its lease go (a run
    halting at a gate), a write of it (a decision made from this notebook) is not fenced either."""
    monkeypatch.setenv("WFKIT_LEASE_TTL", "0.6")
    holder = Store(db)
    try:
        holder.create_run(_row("r1"))
        first = holder.run_row("r1")["lease_expires"]
        holder.leases.keep("r1")
        while time.time() < first + 0.3:
            assert not holder.leases.due()
            time.sleep(0.02)
        holder.release("r1")
        time.sleep(0.7)
        holder.journal([_ok_event("decided")])
        assert 1 == len(holder.journal_rows("r1"))
    finally:
        holder.close()


def test_holder_may_acquire_its_own_lease_again(store: Store) -> None:
    """The store that holds a lease can acquire it again (renewing it)."""
    store.create_run(_row("r1"))
    _set_lease(store, "r1", expires=time.time() + 5)
    store.acquire("r1")
    assert store.run_row("r1")["lease_expires"] > time.time() + 30


def test_acquire_of_an_unknown_run_is_a_key_error(store: Store) -> None:
    """Acquiring a run id the store does not hold raises KeyError pointing at `wfkit runs`."""
    with pytest.raises(KeyError, match=re.escape("no run 'nope'")):
        store.acquire("nope")


# ---- the export ledger ------------------------------------------------------------------------


def test_export_ledger_hands_out_unexported_rows_and_remembers_what_was_exported(tmp_path: Path) -> None:
    """The store says which journal rows parquet lacks, and marking an export never moves back."""
    flow = wf.Workflow("ledger")

    @flow.step
    def a(state):
        return {"x": 1}

    flow.edge("a", "b")

    @flow.step
    def b(state):
        return {"y": 2}

    run = flow.run({}, workspace=tmp_path / "ws")
    store = open_store(tmp_path / "ws")
    rows = store.unexported_rows(run.run_id, ("step", "seq"))
    assert ["a", "b"] == [r[0] for r in rows]
    assert {"ledger"} == {r[-1] for r in rows}  # the workflow name rides at the end
    store.mark_exported({run.run_id: rows[0][1]})
    assert ["b"] == [r[0] for r in store.unexported_rows(run.run_id, ("step", "seq"))]
    store.mark_exported({run.run_id: 0})  # an older export finishing late does not undo a newer one
    assert ["b"] == [r[0] for r in store.unexported_rows(run.run_id, ("step", "seq"))]
    assert [(run.run_id, False)] == store.runs_with_unexported_rows()  # nobody executes it now
    with pytest.raises(ValueError, match="no step-log column"):
        store.unexported_rows(run.run_id, ("step; DROP TABLE runs",))


def test_the_ledger_marks_many_runs_in_one_write(tmp_path: Path) -> None:
    """A background export marks all its runs at once (one statement per 512 runs): each run's
    mark moves to its own seq, never back, and a run id the store does not hold changes nothing."""
    flow = wf.Workflow("ledger-many")

    @flow.step
    def a(state):
        return {"x": 1}

    runs = [flow.run({}, workspace=tmp_path / "ws") for _ in range(3)]
    store = open_store(tmp_path / "ws")
    store.mark_exported({runs[0].run_id: 1})
    store.mark_exported({runs[0].run_id: 0, runs[1].run_id: 1, "no-such-run": 7})
    assert {runs[0].run_id: 1, runs[1].run_id: 1} == store.export_ledger()


# ---- damage is named, never silently read ------------------------------------------------------------


def _halted_run(workspace: Path) -> tuple[wf.Workflow, wf.Run]:
    flow = wf.Workflow("damage")
    flow.step(lambda s: {"n": s["start"] + 1}, name="a")
    flow.step(lambda s: {"n": s["n"] * 10}, name="b", approval="check")
    flow.chain("a", "b")
    run = flow.run({"start": 1}, policy="halt")
    wf.Workspace().approve(run.tickets()[0], by="ana", resume=False)
    return flow, run


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("inputs", '{"start": 1,, }', r"inputs changed since the run was created"),
        ("definition", "{nope", r"definition changed since the run was created"),
    ],
)
def test_garbage_in_a_run_column_is_store_corruption_naming_it(
    workspace: Path, column: str, value: str, message: str
) -> None:
    """Garbage JSON in runs.inputs or runs.definition: resume and show raise StoreCorruptError naming run and column."""
    flow, run = _halted_run(workspace)
    _sql(workspace / DB_NAME, f"UPDATE runs SET {column} = '{value}' WHERE run_id = '{run.run_id}'")
    with pytest.raises(wf.StoreCorruptError, match=message) as info:
        flow.resume(run.run_id)
    assert (run.run_id, f"runs.{column}") == (info.value.run_id, info.value.column)
    with pytest.raises(wf.StoreCorruptError, match=message):
        wf.Workspace().run_info(run.run_id)


def test_a_one_digit_change_in_a_checkpoint_never_reaches_the_state(workspace: Path) -> None:
    """A checkpoint edited after it was written (n: 2 -> 3) stops the resume naming the row and column."""
    flow, run = _halted_run(workspace)
    _sql(workspace / DB_NAME, f"UPDATE journal SET updates = '{{\"n\":3}}' WHERE run_id = '{run.run_id}' AND seq = 1")
    with pytest.raises(wf.StoreCorruptError, match=rf"run {run.run_id}, journal row 1: updates changed") as info:
        flow.resume(run.run_id)
    assert (str(workspace / DB_NAME), 1, "journal.updates") == (info.value.path, info.value.row, info.value.column)
    assert ["waiting_approval"] == [r["status"] for r in wf.Workspace().runs()]  # the lease was given back


def test_garbage_json_in_old_unchecksummed_rows_is_still_named(workspace: Path) -> None:
    """A row written before checksums (NULL) with garbage updates is a StoreCorruptError naming the column."""
    flow, run = _halted_run(workspace)
    _sql(
        workspace / DB_NAME,
        f"UPDATE journal SET updates = '{{\"n\":', checksum = NULL WHERE run_id = '{run.run_id}' AND seq = 1",
    )
    with pytest.raises(wf.StoreCorruptError, match=r"journal row 1, column journal.updates does not parse"):
        flow.resume(run.run_id)


def test_a_deleted_journal_row_is_a_gap_not_a_shorter_history(workspace: Path) -> None:
    """A row missing from the middle of a run's journal is reported as a hole in its sequence."""
    _, run = _halted_run(workspace)
    _sql(workspace / DB_NAME, f"DELETE FROM journal WHERE run_id = '{run.run_id}' AND seq = 2")
    with pytest.raises(wf.StoreCorruptError, match=rf"run {run.run_id} has no journal row 2 \(the next is 3\)"):
        wf.Workspace().events(run.run_id)


def test_a_store_without_checksums_gains_them_and_keeps_its_runs(db: Path) -> None:
    """A store written before checksums opens, gains the columns in place, and its old rows still read."""
    store = Store(db)
    store.create_run(_row("old"))
    store.close()
    _sql(db, "ALTER TABLE runs DROP COLUMN checksum", "ALTER TABLE journal DROP COLUMN checksum")
    reopened = Store(db)
    try:
        assert "old" == reopened.run_row("old")["run_id"]
        assert {"checksum"} <= {r[1] for r in _sql(db, "PRAGMA table_info(journal)")}
        assert [(None,)] == _sql(db, "SELECT checksum FROM runs")
    finally:
        reopened.close()


def test_a_reconciled_run_whose_resume_died_is_interrupted_not_waiting(workspace: Path) -> None:
    """needs_reconciliation with no pending intent (a resume killed after the reconciliation) shows as interrupted."""
    store = open_store(workspace)
    store.create_run(_row("r9"))
    _sql(workspace / DB_NAME, "UPDATE runs SET status = 'needs_reconciliation', lease_owner = NULL WHERE run_id = 'r9'")
    assert "interrupted" == store.run_row("r9")["status"]
    store.intent("r9", "send", 1, "r9:send:1")
    assert "needs_reconciliation" == store.run_row("r9")["status"]


def test_all_journal_rows_include_exported_ones(tmp_path: Path) -> None:
    """all_journal_rows hands out every run's rows, exported or not (a scratch workspace copied whole)."""
    flow = wf.Workflow("whole")

    @flow.step
    def a(state):
        return {"x": 1}

    first = flow.run({}, workspace=tmp_path / "ws")
    second = flow.run({}, workspace=tmp_path / "ws")
    store = open_store(tmp_path / "ws")
    store.mark_exported({first.run_id: 10})
    rows = store.all_journal_rows(("run_id", "step", "seq"))
    assert sorted([(first.run_id, "a", 1, "whole"), (second.run_id, "a", 1, "whole")]) == rows
    with pytest.raises(ValueError, match="no step-log column"):
        store.all_journal_rows(("step; DROP TABLE runs",))


def test_a_store_made_before_maps_and_forks_is_upgraded_in_place(tmp_path: Path) -> None:
    """A journal without map_index/parent_run_id and no run_links/step_cache gains them on open, and
    a map run, a fork and a cached step then work in it."""
    import sqlite3

    import wfkit as wf

    path = tmp_path / "old" / DB_NAME
    Store(path).close()
    conn = sqlite3.connect(path)
    for column in ("map_index", "parent_run_id"):
        conn.execute(f"ALTER TABLE journal DROP COLUMN {column}")
    conn.execute("DROP TABLE run_links")
    conn.execute("DROP TABLE step_cache")
    conn.commit()
    conn.close()
    flow = wf.Workflow("upgraded", inputs=["xs"])
    flow.map(lambda x: x * 2, over="xs", into="ys", name="double", cache=True)
    run = flow.run({"xs": [1, 2]}, workspace=path.parent)
    fork = flow.fork(run.run_id, at="double", update={"ys": [0]}, workspace=path.parent)
    assert [2, 4] == run.state["ys"]
    assert [0] == fork.state["ys"]
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(journal)")}
    assert {"map_index", "parent_run_id"} <= columns


@pytest.mark.parametrize("column", ["model_latency_s", "ttft_s"])
def test_a_store_from_before_a_model_time_reads_its_rows_and_records_the_new_ones(tmp_path: Path, column: str) -> None:
    """A journal without model_latency_s or ttft_s (an earlier wfkit's, its rows checksummed without
    it) gains the column on open: its rows verify and read back with no model time (NaN in the step
    log), and a run of a step that streams from a model then records its time beside them."""
    from wfkit.store._workspace import forget_store

    flow = wf.Workflow("timed")

    @flow.step
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        async with ctx.llm.stream("hi") as stream:
            return {"answer": "".join([text async for text in stream])}

    first = flow.run({}, workspace=tmp_path, seed=1)
    forget_store(tmp_path)
    _sql(tmp_path / DB_NAME, f"ALTER TABLE journal DROP COLUMN {column}")
    assert column not in {r[1] for r in _sql(tmp_path / DB_NAME, "PRAGMA table_info(journal)")}
    second = flow.run({}, workspace=tmp_path, seed=1)
    log = wf.steps(tmp_path).set_index("run_id")[column]
    assert log.isna()[first.run_id]
    assert 0 < log[second.run_id] == getattr(second.events[0], column)
    forget_store(tmp_path)
    store = Store(tmp_path / DB_NAME)
    try:
        assert [None] == [getattr(e, column) for e in store.events(first.run_id)]
        assert log[second.run_id] == getattr(store.events(second.run_id)[0], column)
    finally:
        store.close()
    assert check_store(tmp_path / DB_NAME).ok


def test_a_version_1_store_is_raised_to_the_current_schema_version_on_open(tmp_path: Path) -> None:
    """A store an earlier wfkit made (schema version 1) says the current version once this wfkit opened
    it, so an older wfkit refuses it with "upgrade wfkit" instead of calling format-2 checksums damage."""
    path = tmp_path / "v1" / DB_NAME
    Store(path).close()
    _sql(path, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = Store(path)
    store.create_run(_row("r1"))
    store.close()
    assert [(str(SCHEMA_VERSION),)] == _sql(path, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert 2 == SCHEMA_VERSION


# ---- migrations, batches, attempts ------------------------------------------------------------------

_V1_JOURNAL = (
    "CREATE TABLE journal (run_id TEXT NOT NULL, seq INTEGER NOT NULL, workflow TEXT NOT NULL, "
    "workflow_version TEXT NOT NULL, step TEXT NOT NULL, visit INTEGER NOT NULL, attempt INTEGER NOT NULL, "
    "status TEXT NOT NULL, error_kind TEXT, error_type TEXT, error_message TEXT, started_at REAL NOT NULL, "
    "ended_at REAL NOT NULL, latency_s REAL NOT NULL, queue_s REAL NOT NULL, retry_delay_s REAL, "
    "route_taken TEXT, tools TEXT, model TEXT, tokens_in INTEGER, tokens_out INTEGER, cost_usd REAL, "
    "approver TEXT, decision_comment TEXT, parameters_hash TEXT, host TEXT, extra TEXT, outcome TEXT, "
    "updates TEXT, failure TEXT, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
)


def test_a_store_from_before_durable_waits_is_brought_up_to_date(store: Store, db: Path) -> None:
    """A journal without durable_wait_s and a file without `attempts` gain them; old rows read back."""
    store.close()
    _sql(
        db,
        "DROP TABLE journal",
        "DROP TABLE attempts",
        _V1_JOURNAL,
        "INSERT INTO journal (run_id, seq, workflow, workflow_version, step, visit, attempt, status, "
        "started_at, ended_at, latency_s, queue_s) VALUES ('old', 1, 'w', 'v1', 's', 1, 1, 'ok', 1.0, 2.0, 1.0, 0.0)",
    )
    again = Store(db)
    try:
        [event] = again.events("old")
        assert ("s", 1.0, None) == (event.step, event.latency_s, event.durable_wait_s)
        assert {} == again.attempt_facts("nothing")
    finally:
        again.close()
    assert [(0,)] == _sql(db, "SELECT COUNT(*) FROM attempts")


def test_a_duplicate_run_in_a_batch_fails_alone(store: Store) -> None:
    """Two new runs and a duplicate committed together: the duplicate is refused, the others are stored."""
    gate = threading.Event()
    store.create_run(_row("r0"))
    store.writer.submit(lambda conn: gate.wait(5))
    futures = [store.writer.submit(None, store.create_run_rows(_row(r))) for r in ("r1", "r0", "r2")]
    gate.set()
    futures[0].result(10)
    futures[2].result(10)
    with pytest.raises(ValueError, match=r"run with id 'r0' already exists in .*wfkit.db; pass another run_id"):
        futures[1].result(10)
    assert ["r0", "r1", "r2"] == sorted(r["run_id"] for r in store.run_rows())


def test_attempt_facts_name_the_last_attempt_and_a_later_one_that_started(store: Store) -> None:
    """A retried visit reports its retry row (with its backoff) and the attempt that started after it."""
    store.create_run(_row("r1"))
    retry = wf.StepEvent("r1", "w", "v1", "s", 1, 1, "retry", "transient", "E", "x", 10.0, 10.5, 0.5, 0.0, 2.0)
    store.journal([retry])
    assert {("s", 1): (1, "retry", 10.5, 2.0, None, None, 0, 0)} == store.attempt_facts("r1")
    store.do(store.attempt_op("r1", "s", 1, 2, started_at=12.6))
    assert {("s", 1): (1, "retry", 10.5, 2.0, 2, 12.6, 0, 0)} == store.attempt_facts("r1")
    store.finish("r1", status="failed", state={}, error=None, elapsed=1.0, ended=True)
    assert {("s", 1): (1, "retry", 10.5, 2.0, None, None, 0, 0)} == store.attempt_facts("r1")


def test_drop_all_rows_leaves_a_store_as_a_new_one_is(tmp_path: Path) -> None:
    """After drop_all_rows a used store holds no run, journal row or ticket, keeps its schema
    version, and takes new runs (a reused scratch workspace)."""
    flow = wf.Workflow("dropped")

    @flow.step
    def double(state: Any) -> dict[str, Any]:
        return {"y": state["x"] * 2}

    workspace = tmp_path / "ws"
    first = flow.run({"x": 1}, workspace=workspace)
    store = open_store(workspace)
    assert 1 == len(store.all_journal_rows(["run_id"]))
    store.drop_all_rows()
    assert ([], [], str(SCHEMA_VERSION)) == (
        store.all_journal_rows(["run_id"]),
        store.read("SELECT run_id FROM runs"),
        store.read("SELECT value FROM meta WHERE key = 'schema_version'")[0][0],
    )
    second = flow.run({"x": 2}, workspace=workspace)
    assert [(second.run_id,)] == [tuple(r) for r in store.read("SELECT run_id FROM runs")]
    assert first.run_id != second.run_id
    assert {second.run_id} == {r[0] for r in store.all_journal_rows(["run_id"])}


def test_runs_created_and_stopped_together_keep_their_own_values(store: Store, db: Path) -> None:
    """New runs, then their ends (with and without seeds, errors, end times), one batch each: each keeps its own."""
    created = [
        store.create_run_rows(_row("plain")),
        store.create_run_rows({**_row("seeded"), "seed": 0, "timeout": 1.5, "workflow_ref": "m:f"}),
        store.create_run_rows({**_row("third"), "seed": 7}),
    ]
    store.writer.run(None, [row for rows in created for row in rows])
    ends = [
        store.finish_rows("plain", status="succeeded", state={"a": 1}, error=None, elapsed=0.5, ended=True),
        store.finish_rows("seeded", status="failed", state={}, error=KeyError("k"), elapsed=0.0, ended=True),
        store.finish_rows("third", status="waiting", state={}, error=None, elapsed=2.0, ended=False),
    ]
    store.writer.run(None, [row for rows in ends for row in rows])
    columns = (
        "run_id, status, seed, typeof(seed), timeout, workflow_ref, state, error_type, error, elapsed, "
        "ended_at IS NULL, lease_owner"
    )
    actual = _sql(db, f"SELECT {columns} FROM runs ORDER BY run_id")
    assert [
        ("plain", "succeeded", None, "null", None, None, '{"a":1}', None, None, 0.5, 0, None),
        ("seeded", "failed", 0, "integer", 1.5, "m:f", "{}", "KeyError", "'k'", 0.0, 0, None),
        ("third", "waiting", 7, "integer", None, None, "{}", None, None, 2.0, 1, None),
    ] == actual


def _journal_with_waits(db: Path) -> list[Any]:
    return _sql(db, "SELECT run_id, seq, step, visit, attempt, durable_wait_s FROM journal ORDER BY run_id, seq")


def test_a_write_learns_where_its_journal_row_went_and_its_wait_lands_there(tmp_path: Path) -> None:
    """Each write with journal rows resolves to its first row's seq (alone, in a group commit, with
    a function beside it, a map's items each their own), including a run this store did not make;
    a durable wait by seq fills in that row and no other."""
    event = wf.StepEvent("fresh", "w", "v1", "s", 1, 1, "ok", started_at=1.0, ended_at=2.0, latency_s=1.0)
    old = event._replace(run_id="old")
    store = Store(tmp_path / "runs.db")
    try:
        store.create_run(_row("fresh"))
        store.do(
            lambda conn: [
                conn.execute(JOURNAL_INSERT, event_row(old._replace(step=f"o{i}"), "ok", "{}")) for i in range(3)
            ]
        )
        alone = store.writer.run(None, [("journal", event_row(event._replace(step="a"), "ok", "{}"))])
        grouped = [
            store.writer.submit(None, [("event", (event._replace(step=f"g{i}"), "ok", "{}", None))]) for i in range(5)
        ]
        items = [
            store.writer.submit(None, [("event", (event._replace(step="map", map_index=i), "item", "{}", None))])
            for i in range(3)
        ]
        with_function = store.writer.run(lambda conn: None, [("event", (event._replace(step="f"), "ok", "{}", None))])
        told = store.writer.run(lambda conn: "kept", [("event", (event._replace(step="k"), "ok", "{}", None))])
        theirs = store.writer.run(None, [("event", (old._replace(step="o3"), "ok", "{}", None))])
        seqs = {
            "a": alone,
            **{f"g{i}": f.result() for i, f in enumerate(grouped)},
            **{f"map{i}": f.result() for i, f in enumerate(items)},
            "f": with_function,
        }
        store.writer.run(None, [Store.durable_wait_row(0.5 + i, "fresh", seq) for i, seq in enumerate(seqs.values())])
        store.writer.run(None, [Store.durable_wait_row(9.0, "old", theirs)])
    finally:
        store.close()
    assert "kept" == told  # a function's own result is its waiter's
    assert 4 == theirs  # after the three rows another writer put there
    rows = _sql(
        tmp_path / "runs.db", "SELECT run_id, seq, step, map_index, durable_wait_s FROM journal ORDER BY run_id, seq"
    )
    fresh = {(r[2] if r[3] is None else f"map{r[3]}"): (r[1], r[4]) for r in rows if r[0] == "fresh"}
    assert list(range(1, 12)) == sorted(seq for seq, _ in fresh.values())
    assert {name: seq for name, (seq, _) in fresh.items() if name != "k"} == seqs
    assert [0.5 + i for i in range(len(seqs))] == [fresh[name][1] for name in seqs]
    assert fresh["k"][1] is None  # no wait was written for it
    assert [None, None, None, 9.0] == [r[4] for r in rows if r[0] == "old"]


def _seqs_of(store: Store, run_id: str) -> list[tuple[int, str]]:
    """A run's journal as (seq, step), verified (checksums, no hole)."""
    step_at = 1 + COLUMNS.index("step")
    return [(row[0], row[step_at]) for row in store.journal_rows(run_id)]


def test_remembered_seqs_that_fell_behind_another_writer_are_read_again(tmp_path: Path) -> None:
    """Rows another store (another process) wrote between two of ours: ours follow them, no row lost, no hole."""
    event = wf.StepEvent("r", "w", "v1", "s", 1, 1, "ok", started_at=1.0, ended_at=2.0, latency_s=1.0)
    ours, theirs = Store(tmp_path / "s.db"), Store(tmp_path / "s.db")
    try:
        ours.create_run(_row("r"))
        ours.writer.run(None, [("journal", event_row(event._replace(step="a"), "ok", "{}"))])  # a lone row
        ours.writer.run(None, [("journal", event_row(event._replace(step=s), "ok", "{}")) for s in "bc"])
        theirs.writer.run(None, [("journal", event_row(event._replace(step=s), "ok", "{}")) for s in "xy"])
        ours.writer.run(None, [("journal", event_row(event._replace(step="d"), "ok", "{}"))])  # alone, behind
        theirs.writer.run(None, [("journal", event_row(event._replace(step="z"), "ok", "{}"))])
        ours.writer.run(None, [("journal", event_row(event._replace(step=s), "ok", "{}")) for s in "ef"])
        journal = _seqs_of(ours, "r")
    finally:
        ours.close()
        theirs.close()
    assert [(1, "a"), (2, "b"), (3, "c"), (4, "x"), (5, "y"), (6, "d"), (7, "z"), (8, "e"), (9, "f")] == journal


def test_a_rolled_back_batch_leaves_no_hole_in_the_remembered_seqs(tmp_path: Path) -> None:
    """Rows of a batch that failed take their seqs back: the run's next row follows the last one written."""
    event = wf.StepEvent("r", "w", "v1", "s", 1, 1, "ok", started_at=1.0, ended_at=2.0, latency_s=1.0)
    bad = list(event_row(event._replace(step="bad"), "ok", "{}"))
    bad[1 + COLUMNS.index("status")] = None  # refused by SQLite (NOT NULL) after the good row went in
    store = Store(tmp_path / "s.db")
    try:
        store.create_run(_row("r"))
        store.writer.run(None, [("journal", event_row(event._replace(step="a"), "ok", "{}"))])
        with pytest.raises(wf.StoreCorruptError, match="NOT NULL"):
            store.writer.run(
                None, [("journal", event_row(event._replace(step="b"), "ok", "{}")), ("journal", tuple(bad))]
            )
        with pytest.raises(wf.StoreCorruptError, match="NOT NULL"):
            store.writer.run(None, [("journal", tuple(bad))])
        failing = store.writer.submit(lambda conn: conn.execute("SELECT no_such_column FROM journal"))
        store.writer.submit(None, [("journal", event_row(event._replace(step="c"), "ok", "{}"))]).result()
        with pytest.raises(sqlite3.OperationalError, match="no_such_column"):
            failing.result()
        store.writer.run(None, [("journal", event_row(event._replace(step="d"), "ok", "{}"))])
        journal = _seqs_of(store, "r")
    finally:
        store.close()
    assert [(1, "a"), (2, "c"), (3, "d")] == journal


def test_a_write_function_that_adds_journal_rows_is_followed_by_the_next_rows(tmp_path: Path) -> None:
    """A row a write function inserted itself (an approval's, a settled intent's) is not overwritten or skipped."""
    event = wf.StepEvent("r", "w", "v1", "s", 1, 1, "ok", started_at=1.0, ended_at=2.0, latency_s=1.0)
    own = event_row(event._replace(step="own"))
    store = Store(tmp_path / "s.db")
    try:
        store.create_run(_row("r"))
        store.writer.run(None, [("journal", event_row(event._replace(step="a"), "ok", "{}"))])
        store.writer.run(
            lambda conn: [conn.execute(JOURNAL_INSERT, own) for _ in range(2)],
            [("journal", event_row(event._replace(step="b")))],
        )
        store.writer.run(None, [("journal", event_row(event._replace(step="c"), "ok", "{}"))])
        journal = _seqs_of(store, "r")
    finally:
        store.close()
    assert [(1, "a"), (2, "own"), (3, "own"), (4, "b"), (5, "c")] == journal


def test_a_commit_on_the_loop_behind_another_writer_goes_to_the_writer_thread(tmp_path: Path) -> None:
    """At NORMAL a lone checkpoint commits on an idle loop; behind rows another store wrote, the writer follows them."""
    event = wf.StepEvent("r", "w", "v1", "s", 1, 1, "ok", started_at=1.0, ended_at=2.0, latency_s=1.0)
    ours, theirs = Store(tmp_path / "s.db", synchronous="normal"), Store(tmp_path / "s.db")

    async def write(step: str) -> None:
        await ours.writer.submit_async(None, [("journal", event_row(event._replace(step=step), "ok", "{}"))])

    try:
        ours.create_run(_row("r"))
        asyncio.run(write("a"))
        theirs.writer.run(None, [("journal", event_row(event._replace(step=s), "ok", "{}")) for s in "xy"])
        asyncio.run(write("b"))
        journal = _seqs_of(ours, "r")
        on_the_loop = ours.writer.inline_commits
    finally:
        ours.close()
        theirs.close()
    assert 1 == on_the_loop  # "b" was refused on the loop, rolled back, and written by the writer thread
    assert [(1, "a"), (2, "x"), (3, "y"), (4, "b")] == journal


def _chain_of_nothing(name: str, steps: int) -> wf.Workflow:
    """A sequential chain of ``steps`` async steps that write nothing: a checkpoint per step."""

    async def nothing(state: dict[str, Any]) -> dict[str, Any]:
        return {}

    flow = wf.Workflow(name)
    names = [f"s{i}" for i in range(steps)]
    for step in names:
        flow.step(nothing, name=step)
    flow.chain(*names)
    return flow


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_a_long_sequential_durable_run_keeps_the_wal_bounded(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, synchronous: str
) -> None:
    """A sequential run's checkpoints commit on its loop (at FULL too: nothing else is on it), and
    every so many of them (16 here) the writer copies the WAL into the database; SQLite then writes
    the WAL from its start again, so 2,000 steps leave a WAL of a few dozen commits, not one that
    grew with every step."""
    from wfkit.store import _writer

    monkeypatch.setenv("WFKIT_SYNCHRONOUS", synchronous)
    monkeypatch.setattr(_writer, "_CHECKPOINT_PAGES", 32)  # 16 lone checkpoints
    flow = _chain_of_nothing("long", 100)
    for _ in range(20):
        assert "succeeded" == flow.run({}, workspace=workspace).status
    store = open_store(workspace)
    wal = (workspace / f"{DB_NAME}-wal").stat().st_size
    # The commits were the loop's (the case at stake); at FULL a disk that stalls sends a second's
    # commits to the writer thread, which a loaded machine's disk does now and then.
    assert store.writer.inline_commits > (1_000 if synchronous == "normal" else 100)
    assert wal < 2**20, f"a WAL of {wal / 2**20:.1f} MB after 2,000 steps"


def test_a_run_awaited_on_the_main_thread_of_a_script_commits_on_its_quiet_loop_at_full(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``asyncio.run(flow.arun(...))`` in a plain script: the loop watches nothing but its own
    wake-up pipe (the stop button's wakeup fd is a kernel's: asyncio.run's Ctrl-C handler wakes the
    loop itself), so at FULL the sequential run's checkpoints commit on it, without thread hops."""
    monkeypatch.setenv("WFKIT_SYNCHRONOUS", "full")
    flow = _chain_of_nothing("main-thread", 20)
    assert threading.current_thread() is threading.main_thread()
    assert "succeeded" == asyncio.run(flow.arun({}, workspace=workspace)).status
    assert open_store(workspace).writer.inline_commits >= 20


# ---- the journal's layout ------------------------------------------------------------------------


def _cluster_journal(path: Path) -> None:
    """Give a store's journal the layout an earlier wfkit made (clustered by its key, WITHOUT ROWID),
    its rows copied as they are."""
    columns = ", ".join(COLUMNS)
    _sql(
        path,
        "ALTER TABLE journal RENAME TO journal_now",
        _JOURNAL_TABLE + " WITHOUT ROWID",
        f"INSERT INTO journal (seq, {columns}, checksum) SELECT seq, {columns}, checksum FROM journal_now",
        "DROP TABLE journal_now",
    )


def _journal_table_sql(path: Path) -> str:
    [(sql,)] = _sql(path, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'journal'")
    return str(sql)


def test_a_new_store_appends_journal_rows_to_a_rowid_table(store: Store, db: Path) -> None:
    """The journal of a new store is a rowid table (rows in the order written), keyed by (run_id, seq)."""
    store.create_run(_row("r1"))
    store.journal([wf.StepEvent("r1", "w", "v1", f"s{i}", 1, 1, "ok", started_at=1.0, ended_at=2.0) for i in range(3)])
    assert [(1, "r1", 1), (2, "r1", 2), (3, "r1", 3)] == _sql(
        db, "SELECT rowid, run_id, seq FROM journal ORDER BY rowid"
    )
    assert "WITHOUT ROWID" not in _journal_table_sql(db).upper()
    with pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE constraint failed: journal\.run_id, journal\.seq"):
        _sql(db, "INSERT INTO journal SELECT * FROM journal WHERE seq = 1")


def test_a_clustered_journal_is_rebuilt_on_open_and_its_rows_still_verify(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store whose journal an earlier wfkit clustered by key (WITHOUT ROWID), with rows of checksum
    formats 1 and 2, is rebuilt as a rowid table when this wfkit opens it: the same rows, each still
    verifying, and runs go on with the next seqs."""
    workspace = tmp_path / "old"
    flow = _two_step_flow()
    runs = [flow.run({"i": i}, workspace=workspace) for i in range(3)]
    path = workspace / DB_NAME
    with closing(Store(path)) as before:
        old = wf.StepEvent("v1row", "w", "v1", "s", 1, 1, "ok", started_at=1.0, ended_at=2.0, latency_s=1.0)
        columns = list(event_row(old)[1:-1])
        placeholders = ", ".join("?" for _ in range(len(COLUMNS) + 2))
        before.do(
            lambda conn: conn.execute(
                f"INSERT INTO journal (seq, {', '.join(COLUMNS)}, checksum) VALUES ({placeholders})",
                [1, *columns, row_checksum_v1(columns)],
            )
        )
    forget_store(workspace)
    everything = f"SELECT seq, {', '.join(COLUMNS)}, checksum FROM journal ORDER BY run_id, seq"
    rows = _sql(path, everything)
    _cluster_journal(path)
    assert "WITHOUT ROWID" in _journal_table_sql(path).upper()

    with caplog.at_level(logging.INFO, logger="wfkit"), closing(Store(path)) as store:
        [said] = [r.getMessage() for r in caplog.records]
        assert re.fullmatch(
            f"wfkit: rebuilt the journal of {re.escape(str(path))} with its rows appended in the order written "
            r"\(faster group commits\), once, in \d+\.\d s",
            said,
        )
        assert "WITHOUT ROWID" not in _journal_table_sql(path).upper()
        assert rows == _sql(path, everything)
        assert ["journal"] == [r[0] for r in _sql(path, "SELECT name FROM sqlite_master WHERE name LIKE 'journal%'")]
        for run in runs:
            assert [(1, "draft"), (2, "finish")] == [
                (r[0], r[1 + COLUMNS.index("step")]) for r in store.journal_rows(run.run_id)
            ]
        assert [1] == [r[0] for r in store.journal_rows("v1row")]
        store.journal([old._replace(step="t")])
        assert [1, 2] == [r[0] for r in store.journal_rows("v1row")]
    report = check_store(path)
    assert ([], 3 * 2 + 2) == (report.problems, report.rows)
    later = flow.run({"i": 9}, workspace=workspace)
    assert {"i": 9, "text": "x" * 200, "n": 9, "done": True} == later.state


def test_a_large_clustered_journal_is_announced_before_it_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebuilding a clustered journal of many rows (here the bound lowered to 3) is announced at WARNING,
    with the row count and the expected time, before the rebuild is reported at INFO."""
    import wfkit.store._store as store_module

    path = tmp_path / "big" / DB_NAME
    with closing(Store(path)) as store:
        store.create_run(_row("r1"))
        store.journal(
            [wf.StepEvent("r1", "w", "v1", f"s{i}", 1, 1, "ok", started_at=1.0, ended_at=2.0) for i in range(3)]
        )
    _cluster_journal(path)
    monkeypatch.setattr(store_module, "_ANNOUNCED_REBUILD_ROWS", 3)
    with caplog.at_level(logging.INFO, logger="wfkit"), closing(Store(path)):
        said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert 2 == len(said)
    assert (
        "WARNING",
        f"wfkit: rebuilding the journal of {path} (3 rows) with its rows appended in the order written, once; "
        "this takes about 0 s, and other processes wait for the store meanwhile",
    ) == said[0]
    assert ("INFO", f"wfkit: rebuilt the journal of {path} ") == (said[1][0], said[1][1][: 31 + len(str(path))])
    assert "WITHOUT ROWID" not in _journal_table_sql(path).upper()


_OPEN_CHILD = """
import sys
from pathlib import Path
from wfkit.store._store import Store
store = Store(Path(sys.argv[1]))
print(len(store.journal_rows("r1")))
store.close()
"""


def test_processes_opening_a_clustered_journal_together_rebuild_it_once(tmp_path: Path) -> None:
    """Four processes open a store with a clustered journal at once: each opens it and reads every
    row, and the journal ends up rebuilt once, with nothing left of the old table."""
    path = tmp_path / "shared" / DB_NAME
    with closing(Store(path)) as store:
        store.create_run(_row("r1"))
        events = [wf.StepEvent("r1", "w", "v1", f"s{i}", 1, 1, "ok", started_at=1.0, ended_at=2.0) for i in range(200)]
        store.journal(events)
    _cluster_journal(path)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_CHILD, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    assert [("200\n", "")] * 4 == outputs
    assert "WITHOUT ROWID" not in _journal_table_sql(path).upper()
    assert [(200,)] == _sql(path, "SELECT COUNT(*) FROM journal")


def test_a_clustered_journal_that_cannot_be_rebuilt_now_is_used_as_it_is(
    store: Store, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that refuses writes when it is opened (here a query-only connection) keeps its clustered
    journal, says so in the log, and still reads and writes; the next open rebuilds it."""
    store.create_run(_row("r1"))
    store.journal([wf.StepEvent("r1", "w", "v1", "s", 1, 1, "ok", started_at=1.0, ended_at=2.0)])
    _cluster_journal(db)
    with closing(sqlite3.connect(db, isolation_level=None)) as refusing:
        refusing.execute("PRAGMA query_only = 1")
        with caplog.at_level(logging.WARNING, logger="wfkit"):
            store._append_journal(refusing)
    assert [
        f"wfkit: the journal of {db} keeps the layout an earlier wfkit made (attempt to write a readonly "
        "database); it works as it is, with slower group commits, and is rebuilt when the store is next opened"
    ] == [r.getMessage() for r in caplog.records]
    assert "WITHOUT ROWID" in _journal_table_sql(db).upper()
    store.journal([wf.StepEvent("r1", "w", "v1", "t", 1, 1, "ok", started_at=2.0, ended_at=3.0)])
    assert [1, 2] == [r[0] for r in store.journal_rows("r1")]
    Store(db).close()
    assert "WITHOUT ROWID" not in _journal_table_sql(db).upper()
    with closing(Store(db, create=False)) as again:
        assert [1, 2] == [r[0] for r in again.journal_rows("r1")]


def test_at_full_the_writer_checkpoints_the_wal_after_waking_a_commits_waiters(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits through the writer thread at FULL (those on a quiet loop switched off here, as when
    other runs keep the loop busy): its connection never checkpoints inside a commit (that commit's
    waiters would wait for the disk twice more); the writer copies the WAL into the database after
    waking them, once enough pages piled up, so the WAL stays bounded."""
    from wfkit.store import _writer

    monkeypatch.setenv("WFKIT_SYNCHRONOUS", "full")
    open_store(workspace).writer.inline_budget = 0.0
    monkeypatch.setattr(_writer, "_CHECKPOINT_PAGES", 32)  # 16 lone checkpoints
    order: list[str] = []
    resolve, checkpoint = _writer.Writer._resolve, _writer.Writer._checkpoint
    monkeypatch.setattr(_writer.Writer, "_resolve", staticmethod(lambda batch: (order.append("woken"), resolve(batch))))
    monkeypatch.setattr(
        _writer.Writer, "_checkpoint", lambda self, conn: (order.append("checkpoint"), checkpoint(self, conn))[1]
    )
    settings: list[int] = []
    monkeypatch.setattr(
        _writer.Writer,
        "_commit",
        lambda self, conn, batch, *, isolate, commit=_writer.Writer._commit: (
            settings.append(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]),
            commit(self, conn, batch, isolate=isolate),
        )[1],
    )

    flow = _chain_of_nothing("long-full", 50)
    for _ in range(8):
        assert "succeeded" == flow.run({}, workspace=workspace).status
    store = open_store(workspace)
    assert 0 == store.writer.inline_commits  # every commit was the writer thread's (the case at stake)
    assert {0} == set(settings)  # its connection never checkpoints in a commit
    assert order.count("checkpoint") >= 20  # 400 commits, a checkpoint every 16
    # Each checkpoint comes right after a commit's waiters were woken: one pass, or two when the
    # first left frames behind (a reader's; no commit overlaps it at FULL), see Writer._serve.
    assert re.fullmatch(r"(?:w+c{1,2})*w*", "".join("w" if what == "woken" else "c" for what in order))
    wal = (workspace / f"{DB_NAME}-wal").stat().st_size
    assert wal < 2**20, f"a WAL of {wal / 2**20:.1f} MB after 400 steps"


def test_a_full_disk_is_an_error_naming_the_store_and_what_to_do(tmp_path: Path) -> None:
    """A write the disk refuses (here a file-size limit, as a full disk refuses it) fails the run
    naming the store file and saying what to do, not with SQLite's bare "disk I/O error"."""
    resource = pytest.importorskip("resource")
    folder = tmp_path / "full"
    script = (
        "import sys, wfkit as wf\n"
        "flow = wf.Workflow('filling')\n"
        "flow.step(lambda s: {'pad': s['pad'] * 2}, name='grow')\n"
        "try:\n"
        "    for i in range(200):\n"
        "        flow.run({'pad': 'x' * 20_000, 'i': i}, workspace=sys.argv[1])\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))

    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        env={**os.environ, "WFKIT_SYNCHRONOUS": "normal"},
    )
    said = done.stdout.strip()
    assert said.startswith("OperationalError"), (said, done.stderr)
    assert str(folder / DB_NAME) in said
    assert "disk is likely full" in said
    assert "free space" in said


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes a read-only file")
def test_a_read_only_workspace_is_an_error_naming_the_store_and_what_to_do(workspace: Path) -> None:
    """A run in a workspace this user may read but not write says so, naming the file."""
    flow = wf.Workflow("read-only")
    flow.step(lambda s: {"x": 1}, name="one")
    flow.run({})
    forget_store(workspace)
    os.chmod(workspace / DB_NAME, 0o444)
    os.chmod(workspace, 0o555)
    try:
        with pytest.raises(sqlite3.OperationalError, match="read-only") as caught:
            flow.run({})
        assert str(workspace / DB_NAME) in str(caught.value)
        assert 1 == len(wf.Workspace().runs())  # reading it still works
    finally:
        os.chmod(workspace, 0o755)
        os.chmod(workspace / DB_NAME, 0o644)
        forget_store(workspace)
