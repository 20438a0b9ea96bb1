"""The step cache: a step's result reused across runs when its code and what it read are the same.

Which state fields a step reads is only known after it ran, so an entry stores the names it read
with the hash of their values. A lookup hashes the current values of each read-set stored for the
step's code; usually a step has one read-set, so that is one hash and one query. A map item's key is
its item. Durable runs keep entries in the workspace (``step_cache``), in-memory runs in the process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from wfkit.model._errors import StateValueError
from wfkit.model._steps import StepSpec, code_hash
from wfkit.store._store import Store

ITEM = "<item>"  # the read-set of a map item: the item itself

# In-memory runs' entries: (workflow, step, code) -> {(reads, key): (updates, expires_at)}.
_memory: dict[tuple[str, str, str], dict[tuple[str, str], tuple[str, float | None]]] = {}
_memory_lock = threading.Lock()


class ReadRecorder(Mapping[str, Any]):
    """The state as a cached step sees it, noting every field the step looks at."""

    __slots__ = ("_state", "read")

    def __init__(self, state: Mapping[str, Any]) -> None:
        self._state = state
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self._state[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._state

    def __iter__(self) -> Iterator[str]:
        self.read.update(self._state)  # iterating sees every field
        return iter(self._state)

    def __len__(self) -> int:
        self.read.update(self._state)
        return len(self._state)


def _digest(step: str, payload: Any) -> str:
    try:
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StateValueError(
            f"step {step!r} has cache=, and what it read cannot be hashed as JSON ({exc}); cache steps "
            f"whose inputs are plain data, or give wfkit.Cache(key=...) a function returning plain data"
        ) from exc
    return hashlib.sha256(blob.encode()).hexdigest()


class StepCache:
    """One run's access to the cache: the store's table for durable runs, the process's otherwise."""

    def __init__(self, workflow: str, store: Store | None) -> None:
        self.workflow = workflow
        self.store = store
        self._codes: dict[str, str] = {}

    def code(self, spec: StepSpec) -> str:
        code = self._codes.get(spec.name)
        if code is None:
            code = self._codes[spec.name] = code_hash(spec.fn)
        return code

    def key(self, spec: StepSpec, reads: list[str], view: Mapping[str, Any], item: Any) -> str:
        assert spec.cache is not None
        if reads == [ITEM]:
            payload: dict[str, Any] = {"item": item}
        else:
            payload = {"fields": {f: view.get(f, {"$missing": True}) for f in reads}}
        if spec.cache.key is not None:
            payload["key"] = spec.cache.key(view)
        return _digest(spec.name, payload)

    def _entries(self, spec: StepSpec) -> list[tuple[str, str, str]]:
        now = time.time()
        if self.store is not None:
            return self.store.cache_get(self.workflow, spec.name, self.code(spec), now)
        with _memory_lock:
            table = _memory.get((self.workflow, spec.name, self.code(spec)), {})
            return [(r, k, u) for (r, k), (u, exp) in table.items() if exp is None or exp > now]

    def lookup(self, spec: StepSpec, view: Mapping[str, Any], item: Any, is_item: bool) -> tuple[str, str] | None:
        """(key, stored updates JSON) of a live entry matching the current state, or None."""
        keys: dict[str, str] = {}
        for reads, key, updates in self._entries(spec):
            fields = [ITEM] if is_item else json.loads(reads)
            if (is_item and reads != ITEM) or (not is_item and reads == ITEM):
                continue
            now = keys.get(reads)
            if now is None:
                now = keys[reads] = self.key(spec, fields, view, item)
            if now == key:
                return key, updates
        return None

    def put(self, spec: StepSpec, reads: list[str], key: str, updates: str, run_id: str) -> None:
        assert spec.cache is not None
        reads_text = ITEM if reads == [ITEM] else json.dumps(sorted(reads))
        ttl = spec.cache.ttl_seconds
        if self.store is not None:
            self.store.cache_put(self.workflow, spec.name, self.code(spec), reads_text, key, updates, ttl, run_id)
            return
        expires = None if ttl is None else time.time() + ttl
        with _memory_lock:
            _memory.setdefault((self.workflow, spec.name, self.code(spec)), {})[(reads_text, key)] = (updates, expires)


def clear_memory(workflow: str | None = None, step: str | None = None) -> int:
    """Drop this process's in-memory cache entries (a workflow's, a step's, or all); returns how many."""
    with _memory_lock:
        doomed = [k for k in _memory if (workflow is None or k[0] == workflow) and (step is None or k[1] == step)]
        count = sum(len(_memory.pop(k)) for k in doomed)
    return count
