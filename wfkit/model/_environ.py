"""wfkit's settings read from the environment where a run reads them again and again.

``os.environ.get`` of a variable that is not set raises and catches a ``KeyError`` inside
``Mapping.get``: 1.2 us on a 2-core VM (0.4 us for one that is set), where everything a durable
step adds on the event loop costs some 20. A run reads ``$WFKIT_SYNCHRONOUS`` when it opens its
store and ``$WFKIT_STATE_WARN_BYTES`` with every state it encodes (its inputs, each step's
updates, its final state), and neither is usually set. :func:`setting` looks in the mapping
behind ``os.environ`` instead: the same values, read live (a variable set or removed through
``os.environ``, as a test's ``monkeypatch.setenv`` does, is seen at once), with no exception.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

# What os.environ keeps its variables in, and how it encodes a name and decodes a value there
# (bytes on POSIX, upper-cased text on Windows). An interpreter without them reads os.environ.
_data: MutableMapping[Any, Any] | None = getattr(os.environ, "_data", None)
_encode: Callable[[str], Any] | None = getattr(os.environ, "encodekey", None)
_decode: Callable[[Any], str] | None = getattr(os.environ, "decodevalue", None)
_keys: dict[str, Any] = {}

if _data is not None and _encode is not None and _decode is not None:
    _get, _encoded, _decoded = _data.get, _encode, _decode

    def setting(name: str) -> str | None:
        """``os.environ.get(name)``, without the cost of a miss."""
        key = _keys.get(name)
        if key is None:
            key = _keys[name] = _encoded(name)
        raw = _get(key)
        return None if raw is None else _decoded(raw)

else:  # pragma: no cover - an interpreter whose os.environ keeps its variables otherwise

    def setting(name: str) -> str | None:
        """``os.environ.get(name)``."""
        return os.environ.get(name)
