"""The state encoding: JSON that keeps Python types, so a resumed run sees what the step returned.

Plain JSON turns a tuple into a list and ``{1: "a"}`` into ``{"1": "a"}``, and cannot hold a
datetime at all. Values JSON lacks are written as tagged objects, ``{"__wf__": "tuple", "v": [...]}``:

    tuple, set, frozenset, dict with non-string keys (or a "__wf__" key), bytes, bytearray,
    datetime (with its offset, and its zone name when it is a ZoneInfo), date, time, timedelta,
    Decimal, UUID, and instances of dataclasses and pydantic models registered with
    :func:`state_type`.

Anything else is refused with a :class:`StateValueError` naming the step, the field and the
type, before the step's result is accepted, in memory and durable runs alike (the same rule, so a
flow that works in memory works durable). Never pickle: a checkpoint may come from someone else's
notebook, and unpickling runs code; a registered class is looked up by name in this process only.

A value whose encoded size passes ``$WFKIT_STATE_WARN_BYTES`` (10 MB by default) warns once per
field with :class:`StateSizeWarning`: state is copied into every checkpoint and every resume.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import inspect
import json
import json.encoder
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from wfkit.model._environ import setting
from wfkit.model._errors import StateSizeWarning, StateValueError
from wfkit.model._warn import site_of, warn_at

TAG = "__wf__"
DEFAULT_WARN_BYTES = 10 * 2**20

T = TypeVar("T", bound=type)

_registered: dict[str, type] = {}
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def state_type(cls: T) -> T:
    """Allow instances of a dataclass or pydantic model class in run state (a class decorator).

    They are stored as their fields and rebuilt on resume by the class registered under the same
    ``module:qualname``; register it again in the process that resumes the run.
    """
    if not isinstance(cls, type) or not (dataclasses.is_dataclass(cls) or hasattr(cls, "model_validate")):
        raise TypeError(f"state_type takes a dataclass or a pydantic model class, got {cls!r}")
    _registered[_type_name(cls)] = cls
    return cls


# ---- encoding -------------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, path: str, value: Any) -> None:
        self.path, self.value = path, value


_PLAIN = (str, int, float, bool, type(None))


def to_json(value: Any, path: str = "") -> Any:
    """``value`` as JSON-ready data, with tags for the types JSON lacks. Raises _Refused."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        if all(type(k) is str for k in value) and TAG not in value:
            return {k: to_json(v, f"{path}[{k!r}]") for k, v in value.items()}
        return {TAG: "dict", "v": [[to_json(k, f"{path} key"), to_json(v, f"{path}[{k!r}]")] for k, v in value.items()]}
    if kind is tuple:
        return {TAG: "tuple", "v": [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if kind is set or kind is frozenset:
        return {TAG: kind.__name__, "v": [to_json(v, f"{path} item") for v in value]}
    if kind is bytes or kind is bytearray:
        return {TAG: kind.__name__, "v": base64.b64encode(value).decode("ascii")}
    if kind is dt.datetime:
        if isinstance(value.tzinfo, ZoneInfo):
            # Wall time, zone name and fold: an offset alone would move a time in a DST gap or fold.
            wall = value.replace(tzinfo=None).isoformat()
            return {TAG: "datetime", "v": wall, "zone": value.tzinfo.key, "fold": value.fold}
        return {TAG: "datetime", "v": value.isoformat()}
    if kind is dt.date:
        return {TAG: "date", "v": value.isoformat()}
    if kind is dt.time:
        if value.tzinfo is not None and not isinstance(value.tzinfo, dt.timezone):
            raise _Refused(path, value)
        return {TAG: "time", "v": value.isoformat()}
    if kind is dt.timedelta:
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if kind is decimal.Decimal:
        return {TAG: "Decimal", "v": str(value)}
    if kind is uuid.UUID:
        return {TAG: "UUID", "v": str(value)}
    name = _type_name(kind)
    if _registered.get(name) is kind:
        if dataclasses.is_dataclass(value):
            fields = {f.name: to_json(getattr(value, f.name), f"{path}.{f.name}") for f in dataclasses.fields(value)}
            return {TAG: "dataclass", "type": name, "v": fields}
        dumped = value.model_dump(mode="python")
        return {TAG: "model", "type": name, "v": to_json(dumped, path)}
    raise _Refused(path, value)


def _refusal(who: str, key: str, refused: _Refused) -> StateValueError:
    value = refused.value
    where = f"state field {key!r}" + (f" at {key}{refused.path}" if refused.path else "")
    kind = type(value)
    if inspect.iscoroutine(value):
        # `reply = ctx.llm.complete(...)` without await (or in a plain def step, which cannot await):
        # the state holds the call, never made. Closed, so no "never awaited" warning comes later.
        value.close()
        return StateValueError(
            f"{who} {where} = a coroutine of {value.__qualname__}(), a call it did not await: write `await` "
            f"before the call, in a step written as `async def` (a plain `def` step cannot await), and store what "
            f"it returns"
        )
    if dataclasses.is_dataclass(value) or hasattr(value, "model_dump"):
        fix = (
            f"allow the class with @wfkit.state_type (it is rebuilt from its fields on resume), "
            f"or return {kind.__name__}'s fields as a dict"
        )
    else:
        fix = (
            "return plain data (str, int, float, bool, None, lists, dicts, tuples, sets, bytes, "
            "datetime, date, Decimal), or a dataclass / pydantic model allowed with @wfkit.state_type"
        )
    return StateValueError(
        f"{who} {where} = {kind.__module__}.{kind.__qualname__}, which run state cannot keep "
        f"(it would not survive a checkpoint and a resume); {fix}"
    )


def json_encoder(
    *,
    separators: tuple[str, str] = (",", ":"),
    ensure_ascii: bool = True,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Callable[[Any], str]:
    """``json.dumps`` with these options (NaN and infinities allowed), its C encoder made once.

    Why: ``json.dumps`` with an option of its own builds a new ``JSONEncoder`` on every call, and
    even an encoder made once sets up its C encoder anew in Python on every ``encode`` (a closure
    and a dozen attribute reads): 2 us of the 3 that encoding ``{"x": 1}`` costs, on every durable
    step that returns updates and twice more per durable run. The text is the same (a test holds
    it equal to ``json.dumps``'s), but a cycle is not looked for: callers hand it values
    :func:`to_json` made or checked (a cycle would be a ``RecursionError``)."""
    item_separator, key_separator = separators
    plain = json.JSONEncoder(separators=separators, ensure_ascii=ensure_ascii, sort_keys=sort_keys, default=default)
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    strings = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    try:
        encode = make(
            None,  # no markers: no search for cycles
            plain.default,  # what json says of a value it cannot encode (or ``default``)
            strings,
            None,  # no indent
            key_separator,
            item_separator,
            sort_keys,
            False,  # skipkeys
            True,  # allow_nan
        )
    except TypeError:  # no C speedups in this interpreter (None), or another make_encoder signature
        return plain.encode
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps


# Every run's inputs and state, and most checkpoints, pass here.
_dumps = json_encoder(ensure_ascii=False)


def encode_state(who: str, values: Mapping[str, Any], fn: object = None) -> str:
    """JSON for state fields (a step's updates, a run's inputs or state). ``who`` starts the
    message of a refused value, e.g. "step 'fetch' wrote"; ``fn``: the function that wrote them,
    where a warning of a large value points (None: the caller)."""
    encoded = _fields(who, values)
    text = _dumps(encoded)
    _warn_if_large(who, values, encoded, len(text), fn)
    return text


def check_state(who: str, values: Mapping[str, Any], fn: object = None) -> None:
    """Refuse what :func:`encode_state` would refuse, without writing the JSON (in-memory runs
    follow the same rule as durable ones). Large values warn here too (at ``fn``, as there)."""
    encoded = _fields(who, values)
    size = sum(_rough_size(v) for v in values.values())
    if size > _warn_bytes():
        _warn_if_large(who, values, encoded, size, fn)


def _fields(who: str, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if type(key) is not str:
            raise StateValueError(f"{who} a state field named {key!r} ({type(key).__name__}); field names are strings")
        try:
            out[key] = to_json(value)
        except _Refused as exc:
            raise _refusal(who, key, exc) from None
        except RecursionError:
            raise StateValueError(f"{who} state field {key!r}, which refers to itself (a cycle)") from None
    if TAG in out:
        raise StateValueError(f"{who} a state field named {TAG!r}, a name wfkit keeps for its encoding; rename it")
    return out


def _rough_size(value: Any) -> int:
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        return len(value)
    if kind is dict:
        return sum(_rough_size(k) + _rough_size(v) for k, v in value.items())
    if kind in (list, tuple, set, frozenset):
        return sum(_rough_size(v) for v in value)
    return 8


def _warn_bytes() -> int:
    raw = setting("WFKIT_STATE_WARN_BYTES")  # read with every state encoded: see _environ
    if not raw:
        return DEFAULT_WARN_BYTES
    try:
        return int(float(raw))
    except ValueError:
        raise ValueError(f"$WFKIT_STATE_WARN_BYTES must be a number of bytes, got {raw!r}") from None


def _size(size: int) -> str:
    """A byte count as people read it: 5000 bytes is 4.9 KB, not "0.0 MB"."""
    if size >= 2**20:
        return f"{size / 2**20:.1f} MB"
    if size >= 2**10:
        return f"{size / 2**10:.1f} KB"
    return f"{size} bytes"


def _warn_if_large(
    who: str, values: Mapping[str, Any], encoded: Mapping[str, Any], total: int, fn: object = None
) -> None:
    limit = _warn_bytes()
    if total <= limit:
        return
    for key in values:
        size = len(_dumps(encoded[key]).encode())
        if size <= limit:
            continue
        with _warned_lock:
            if (who, key) in _warned:
                continue
            _warned.add((who, key))
        warn_at(
            StateSizeWarning(
                f"{who} state field {key!r} of {_size(size)}; it is copied into every checkpoint "
                f"and resume: keep large data in a file and put its path in the state (this warns once "
                f"per field; $WFKIT_STATE_WARN_BYTES sets the size, now {limit} bytes)"
            ),
            site_of(fn),
            stacklevel=3,
        )


# ---- decoding -------------------------------------------------------------------------------------


def _zone(tagged: dict[str, Any]) -> dt.datetime:
    when = dt.datetime.fromisoformat(tagged["v"])
    zone = tagged.get("zone")
    if zone is None:
        return when
    return when.replace(tzinfo=ZoneInfo(zone), fold=int(tagged.get("fold", 0)))


def _registered_type(tagged: dict[str, Any]) -> type:
    name = tagged["type"]
    cls = _registered.get(name)
    if cls is None:
        raise StateValueError(
            f"run state holds an instance of {name}, which this process has not allowed: import the "
            f"module that defines it and decorate the class with @wfkit.state_type before resuming"
        )
    return cls


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "tuple": lambda t: tuple(t["v"]),
    "set": lambda t: set(t["v"]),
    "frozenset": lambda t: frozenset(t["v"]),
    "dict": lambda t: dict(t["v"]),
    "bytes": lambda t: base64.b64decode(t["v"]),
    "bytearray": lambda t: bytearray(base64.b64decode(t["v"])),
    "datetime": _zone,
    "date": lambda t: dt.date.fromisoformat(t["v"]),
    "time": lambda t: dt.time.fromisoformat(t["v"]),
    "timedelta": lambda t: dt.timedelta(days=t["v"][0], seconds=t["v"][1], microseconds=t["v"][2]),
    "Decimal": lambda t: decimal.Decimal(t["v"]),
    "UUID": lambda t: uuid.UUID(t["v"]),
    "dataclass": lambda t: _registered_type(t)(**t["v"]),
    "model": lambda t: _registered_type(t).model_validate(t["v"]),  # type: ignore[attr-defined]
}


def _untag(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise ValueError(f"unknown tag {tag!r} in the state encoding (written by a newer wfkit?)")
    return decoder(obj)


def decode_state(text: str) -> Any:
    """Values written by :func:`encode_state`. Raises ValueError (JSON or tag) or StateValueError
    (a registered class missing); callers name the row and column."""
    if TAG not in text:  # the common case: plain JSON
        return json.loads(text)
    return json.loads(text, object_hook=_untag)
