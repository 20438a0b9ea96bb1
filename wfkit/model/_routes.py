"""Routes as data: conditions (field / operator / value, composed with ``&``, ``|`` and ``~``) and
the destinations they lead to (``when(...) >> go(step, tools=[...])``, a step's ``Router``).

A condition is never a string that gets evaluated and never prompt text: it is a small tree of
frozen objects that can be printed, compared, serialised and tested on its own.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias

from wfkit.model._errors import ConditionError
from wfkit.model._warn import Site

Op: TypeAlias = Literal["eq", "ne", "gt", "ge", "lt", "le", "contains", "in", "exists"]

_MISSING: Any = object()

_SYMBOLS = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
OPERATORS: tuple[str, ...] = ("eq", "ne", "gt", "ge", "lt", "le", "contains", "in", "exists")
# The symbols a person types first for the comparisons (the other way round from _SYMBOLS, and
# with the SQL spellings), and the operator that means each.
_OPERATOR_OF_SYMBOL = {**{symbol: op for op, symbol in _SYMBOLS.items()}, "=": "eq", "<>": "ne"}

# A number as a person writes it, in text: a currency sign, thousands separators, a decimal comma,
# a unit or a percent sign ("$100", "1,000", "1,5", "100 rows", "5%"). Not a plain "10", nor
# "2024-01-01" or "12:30", which compare in order as text as they are meant to.
_WRITTEN_NUMBER = re.compile(
    r"(?P<sign>[+-]?)\s*(?:[$€£¥]\s*)?"
    r"(?:(?P<thousands>\d{1,3}(?:,\d{3})+)(?:\.(?P<cents>\d+))?|(?P<whole>\d+)(?:(?P<mark>[.,])(?P<part>\d+))?)"
    r"\s*(?P<unit>%|[A-Za-z]+)?"
)


class WrittenNumber(NamedTuple):
    """A number written as a person writes it, in text: ``number`` is the plain number it reads as
    (``"$1,000.50"`` -> ``"1000.50"``, ``"1,5"`` -> ``"1.5"``), or None where ``letters`` follow the
    digits (``"10k"``, ``"100 rows"``): what they stand for is not ours to guess (10k is 10000, not 10)."""

    number: str | None
    letters: str


def written_number(text: str) -> WrittenNumber | None:
    """The number ``text`` writes as a person would, or None for text that is no such number (a plain
    ``"10"`` included: it is no different written as a number)."""
    found = _WRITTEN_NUMBER.fullmatch(text.strip())
    if found is None:
        return None
    unit = found["unit"] or ""
    if unit.isalpha():
        return WrittenNumber(None, unit)
    if found["thousands"] is not None:
        digits = found["thousands"].replace(",", "") + (f".{found['cents']}" if found["cents"] else "")
    else:
        digits = found["whole"] + (f".{found['part']}" if found["part"] else "")
    plain = f"{found['sign']}{digits}"
    return None if plain == text else WrittenNumber(plain, "")


def _lookup(state: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = state
    for key in path:
        # A plain dict first: states are dicts, and the Mapping ABC check is the dearer test on
        # the path every routed step takes; any other Mapping still gets it.
        if type(value) is not dict and not isinstance(value, Mapping):
            value = _record_field(value, key)
        else:
            value = value.get(key, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _record_field(value: Any, key: str) -> Any:
    """Field ``key`` of a dataclass instance or a pydantic model (the records state may hold, see
    ``wfkit.state_type``), else _MISSING: a path steps into their fields as into a mapping's keys,
    and into nothing else (a string's methods are no fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names: Any = value.__dataclass_fields__
    else:
        names = getattr(type(value), "model_fields", None)  # a pydantic model's declared fields
        if not isinstance(names, Mapping):
            return _MISSING
    return getattr(value, key, _MISSING) if key in names else _MISSING


def _is_flag(value: Any) -> bool:
    """None, True or False (1 and 0 compare equal to them and print and act alike)."""
    try:
        return value is None or value in (True, False)
    except Exception:  # a value that cannot even be compared (an array) is no flag
        return False


def _operand(other: Any, symbol: str) -> Condition:
    if isinstance(other, Condition):
        return other
    if type(other).__name__ == "Route":
        raise TypeError(
            f"`a {symbol} b >> go(...)` reads as `a {symbol} (b >> go(...))` because >> binds "
            f"tighter; write `(a {symbol} b) >> go(...)`"
        )
    raise TypeError(f"conditions combine only with conditions, got {other!r}")


class Condition:
    """Base of every condition: evaluates against a state, composes with ``& | ~``."""

    __slots__ = ()

    def evaluate(self, state: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def predicate(self) -> Callable[[Mapping[str, Any]], bool]:
        """:meth:`evaluate` as a function of the state, made once per route (a router's routes are
        tried on every settled step); a condition may specialise it."""
        return self.evaluate

    def choice(self, then: Go, otherwise: Go) -> Callable[[Mapping[str, Any]], Go]:
        """A function of the state: ``then`` where this condition holds, else ``otherwise``. Made
        once per router with a single route (a loop's test, an if/else), so choosing is one call
        per settled step; a condition may specialise it."""
        holds = self.predicate()

        def choose(state: Mapping[str, Any]) -> Go:
            return then if holds(state) else otherwise

        return choose

    def fields(self) -> set[str]:
        """The top-level state fields this condition reads."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __and__(self, other: Condition) -> Condition:
        return All((self, _operand(other, "&")))

    def __or__(self, other: Condition) -> Condition:
        return Any_((self, _operand(other, "|")))

    def __invert__(self) -> Condition:
        return Not(self)

    def __bool__(self) -> bool:
        # Python's `and`, `or` and `not` ask a condition for its truth, which it has none of until
        # a state is given: `when(a) and when(b)` would silently be `when(b)` alone.
        raise TypeError(
            f"a condition has no truth value of its own ({self}): combine conditions with & (and), "
            f"| (or) and ~ (not), not with Python's and/or/not; to test one, call .evaluate(state)"
        )

    def __rshift__(self, target: Any) -> Any:
        # `when(...) >> go("step")` (or `>> "step"`, the step with its own tools) builds a Route.
        return Route(self, as_go(target, "`condition >> x` needs x = wfkit.go('step') or a step's name"))


@dataclass(frozen=True, slots=True, eq=True)
class Compare(Condition):
    """``field op value``; the field may be a dotted path into nested mappings (and the fields of
    dataclasses and pydantic models the state holds)."""

    field: str
    op: Op
    value: Any = None
    # The field split on dots, once here rather than on every evaluation. Derived from ``field``,
    # so left out of the repr, of equality and hashing, and of the constructor.
    path: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)
    # The comparison of an ordering operator (gt, ge, lt, le), looked up once here: a loop's route
    # is evaluated on every lap. None for the other operators. Derived from ``op``, like ``path``.
    ordering: Callable[[Any, Any], bool] | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field:
            raise ConditionError(f"a condition's field must be a non-empty string, got {self.field!r}")
        if self.op not in OPERATORS:
            meant = _OPERATOR_OF_SYMBOL.get(self.op) if isinstance(self.op, str) else None
            hint = f" (for {self.op!r} write {meant!r})" if meant is not None else ""
            raise ConditionError(
                f"unknown operator {self.op!r} in condition on {self.field!r}{hint}; use one of {', '.join(OPERATORS)}"
            )
        if self.op == "in" and not hasattr(self.value, "__contains__"):
            raise ConditionError(f"operator 'in' on {self.field!r} needs a collection value, got {self.value!r}")
        if self.op == "exists" and not _is_flag(self.value):
            # Any other value would be read by its truth ("no" is true), which is not what it says.
            raise ConditionError(
                f"operator 'exists' on {self.field!r} takes True (present, the default) or False "
                f"(missing or None), got {self.value!r}"
            )
        blank = isinstance(self.value, str) and not self.value.strip()
        if self.op in _ORDERING and (self.value is None or blank):
            # Nothing orders against None, and a blank string (a builder's value box left empty) is
            # no bound: the condition could only fail the run when first tried, or never hold.
            got = "none" if self.value is None else f"the blank string {self.value!r}"
            raise ConditionError(
                f"operator {self.op!r} on {self.field!r} needs a value to compare with, got {got}; "
                f"give one (when({self.field!r}, {self.op!r}, 3), or value: 3 in a spec)"
            )
        written = written_number(self.value) if self.op in _ORDERING and isinstance(self.value, str) else None
        if written is not None:
            # "1,000" orders as text ("900" is above it) and a number of the state fails the run
            # against it: a bound typed as a person writes numbers (a builder's value box) meant one.
            said = f"operator {self.op!r} on {self.field!r} compares with the text {self.value!r}, which orders as text"
            meant = written.number
            if meant is None:
                raise ConditionError(
                    f"{said}, not as a number: write the number it stands for in digits alone, without "
                    f"{written.letters!r} (when({self.field!r}, {self.op!r}, <that number>), or value: <that number> "
                    "in a spec)"
                )
            raise ConditionError(
                f"{said}, not as the number it reads as: give the number, {meant} "
                f"(when({self.field!r}, {self.op!r}, {meant}), or value: {meant} in a spec)"
            )
        object.__setattr__(self, "path", tuple(self.field.split(".")))
        object.__setattr__(self, "ordering", _ORDERING.get(self.op))

    def evaluate(self, state: Mapping[str, Any]) -> bool:
        path = self.path
        # Most routes read one top-level field of a plain dict state: read it without the walk.
        actual = state.get(path[0], _MISSING) if len(path) == 1 and type(state) is dict else _lookup(state, path)
        op = self.op
        if op == "exists":
            present = actual is not _MISSING and actual is not None
            return present if self.value is None else present == bool(self.value)
        if actual is _MISSING:
            # A missing field equals nothing, so only `ne` holds.
            return op == "ne"
        ordering = self.ordering
        if ordering is not None:
            if actual is None:
                return False
            try:
                return ordering(actual, self.value)
            except TypeError as exc:
                raise self._cannot(actual) from exc
        if op == "eq":
            return bool(actual == self.value)
        if op == "ne":
            return bool(actual != self.value)
        try:
            if op == "contains":
                return actual is not None and self.value in actual
            if op == "in":
                return actual in self.value
        except TypeError as exc:
            raise self._cannot(actual) from exc
        return False  # not reached: every operator is handled above (checked at construction)

    def predicate(self) -> Callable[[Mapping[str, Any]], bool]:
        """:meth:`evaluate`, specialised: an ordering operator (a loop's bound) on a top-level
        field of a plain dict state reads the field and compares, with nothing else to decide on
        each evaluation; anything else is left to :meth:`evaluate`."""
        if self.ordering is None or len(self.path) > 1:
            return self.evaluate
        return self._ordered(True, False)

    def choice(self, then: Go, otherwise: Go) -> Callable[[Mapping[str, Any]], Go]:
        """:meth:`Condition.choice`, with the comparison of :meth:`predicate` in the same call."""
        if self.ordering is None or len(self.path) > 1:
            return Condition.choice(self, then, otherwise)
        return self._ordered(then, otherwise)

    def _ordered(self, then: Any, otherwise: Any) -> Callable[[Mapping[str, Any]], Any]:
        """``then`` where an ordering operator holds on a top-level field, else ``otherwise``."""
        ordering, evaluate = self.ordering, self.evaluate
        assert ordering is not None
        key, value, cannot = self.path[0], self.value, self._cannot

        def compare(state: Mapping[str, Any]) -> Any:
            if type(state) is not dict:
                return then if evaluate(state) else otherwise
            actual = state.get(key)  # missing or None: not ordered, as in evaluate
            if actual is None:
                return otherwise
            try:
                return then if ordering(actual, value) else otherwise
            except TypeError as exc:
                raise cannot(actual) from exc

        return compare

    def _cannot(self, actual: Any) -> ConditionError:
        """The error for a field value the operator cannot compare."""
        return ConditionError(
            f"cannot evaluate {self}: field {self.field!r} holds "
            f"{type(actual).__name__} {actual!r}, which does not support "
            f"{self.op!r} with {type(self.value).__name__}; store a comparable value in the "
            f"state or change the condition"
        )

    def fields(self) -> set[str]:
        return {self.path[0]}

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        if self.op in _SYMBOLS:
            return f"{self.field} {_SYMBOLS[self.op]} {self.value!r}"
        if self.op == "exists":
            return f"{self.field} exists" if self.value in (None, True) else f"{self.field} missing"
        return f"{self.field} {self.op} {self.value!r}"


@dataclass(frozen=True, slots=True)
class All(Condition):
    """True when every part is true."""

    parts: tuple[Condition, ...]

    def evaluate(self, state: Mapping[str, Any]) -> bool:
        return all(p.evaluate(state) for p in self.parts)

    def fields(self) -> set[str]:
        return set().union(*(p.fields() for p in self.parts))

    def to_dict(self) -> dict[str, Any]:
        return {"all": [p.to_dict() for p in self.parts]}

    def __and__(self, other: Condition) -> Condition:
        return All((*self.parts, _operand(other, "&")))

    def __str__(self) -> str:
        return "(" + " and ".join(map(str, self.parts)) + ")"


@dataclass(frozen=True, slots=True)
class Any_(Condition):
    """True when at least one part is true."""

    parts: tuple[Condition, ...]

    def evaluate(self, state: Mapping[str, Any]) -> bool:
        return any(p.evaluate(state) for p in self.parts)

    def fields(self) -> set[str]:
        return set().union(*(p.fields() for p in self.parts))

    def to_dict(self) -> dict[str, Any]:
        return {"any": [p.to_dict() for p in self.parts]}

    def __or__(self, other: Condition) -> Condition:
        return Any_((*self.parts, _operand(other, "|")))

    def __str__(self) -> str:
        return "(" + " or ".join(map(str, self.parts)) + ")"


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """True when its part is false."""

    part: Condition

    def evaluate(self, state: Mapping[str, Any]) -> bool:
        return not self.part.evaluate(state)

    def fields(self) -> set[str]:
        return self.part.fields()

    def to_dict(self) -> dict[str, Any]:
        return {"not": self.part.to_dict()}

    def __str__(self) -> str:
        return f"not {self.part}"


def when(field: str, op: Op, value: Any = None) -> Condition:
    """A structured condition on the run's state: ``when("query_type", "eq", "code")``.

    Operators: eq, ne, gt, ge, lt, le, contains, in, exists. ``field`` may be a dotted path
    (``"user.tier"``). Combine conditions with ``&`` (and), ``|`` (or) and ``~`` (not).
    """
    return Compare(field, op, value)


def compared_fields(condition: Condition) -> frozenset[str]:
    """The top-level fields ``condition`` compares with a value and never tests with ``exists``:
    those whose absence it cannot have meant (a missing field compares false, so a misspelt one
    silently decides the route), unlike a field it asks about with ``exists``."""
    compared: set[str] = set()
    tested: set[str] = set()
    todo = [condition]
    while todo:
        part = todo.pop()
        if isinstance(part, Compare):
            (tested if part.op == "exists" else compared).add(part.path[0])
        elif isinstance(part, All | Any_):
            todo.extend(part.parts)
        elif isinstance(part, Not):
            todo.append(part.part)
    return frozenset(compared - tested)


def holds_when_missing(condition: Condition) -> frozenset[str]:
    """The top-level fields whose absence makes a comparison of ``condition`` hold: compared with
    ``ne`` (a missing field equals nothing), or with another operator under a ``~`` (a missing field
    compares false, its negation true). A route that held through one of them may have held only
    because its name is misspelt: `when("status", "ne", "done") >> go("work")` loops while no step
    writes "status"."""
    found: set[str] = set()
    todo: list[tuple[Condition, bool]] = [(condition, False)]
    while todo:
        part, negated = todo.pop()
        if isinstance(part, Compare):
            if part.op != "exists" and (part.op == "ne") != negated:
                found.add(part.path[0])
        elif isinstance(part, All | Any_):
            todo.extend((p, negated) for p in part.parts)
        elif isinstance(part, Not):
            todo.append((part.part, not negated))
    return frozenset(found)


def condition_from_dict(data: Mapping[str, Any]) -> Condition:
    """Rebuild a condition from :meth:`Condition.to_dict` output (e.g. a stored workflow)."""
    if "all" in data:
        return All(tuple(condition_from_dict(d) for d in data["all"]))
    if "any" in data:
        return Any_(tuple(condition_from_dict(d) for d in data["any"]))
    if "not" in data:
        return Not(condition_from_dict(data["not"]))
    try:
        return Compare(data["field"], data["op"], data.get("value"))
    except KeyError as exc:
        raise ConditionError(f"a condition needs 'field' and 'op' (or 'all'/'any'/'not'), got {dict(data)!r}") from exc


# The module a route declared in a flow spec file is said to be in (Router.declared_at): its
# warnings speak YAML, not Python.
FLOW_SPEC_MODULE = "wfkit.flowspec"

END = "__end__"
"""Route target that ends the branch: ``default=wfkit.END`` (or ``wfkit.go(wfkit.END)``)."""


@dataclass(frozen=True, slots=True)
class Go:
    """A route's destination: the next step and the tools that step may use."""

    target: str
    tools: tuple[str, ...] | None = None


def check_step_names(call: str, *names: object, more: str = "") -> None:
    """Refuse anything but step names in ``call`` (``flow.edge``, ``wfkit.go``...). A step's function
    given for its name (``flow.edge(plan, write)``, a LangGraph habit) is refused with the call to
    write; let through, it failed only at the first run, inside validation's spelling suggestions."""
    if all(isinstance(name, str) for name in names):
        return
    if any(callable(name) and isinstance(getattr(name, "__name__", None), str) for name in names):
        fixed = ", ".join(repr(name if isinstance(name, str) else getattr(name, "__name__", name)) for name in names)
        raise TypeError(f"{call}() takes step names, not functions: write {call}({fixed}{more})")
    wrong = next(name for name in names if not isinstance(name, str))
    raise TypeError(f"{call}() needs a step name, got {wrong!r}")


def as_go(target: object, needs: str) -> Go:
    """A route's destination given as ``wfkit.go(...)`` or as a step's name (``"answer"`` is
    ``go("answer")``: the step keeps its own tools); anything else is refused with ``needs``, a
    step's function with its name to write."""
    if isinstance(target, Go):
        return target
    if isinstance(target, str):
        return go(target)
    name = getattr(target, "__name__", None)
    if callable(target) and isinstance(name, str):
        raise TypeError(f"{needs}, got the function {name}: write {name!r} (its step's name)")
    raise TypeError(f"{needs}, got {target!r}")


def go(target: str, *, tools: Iterable[str] | None = None) -> Go:
    """Destination of a route: ``wfkit.go("answer", tools=["web_search"])``.

    ``tools`` binds the tools the target step may use when reached this way (``ctx.tools``);
    ``None`` keeps the step's own declared tools.
    """
    check_step_names("wfkit.go", target)
    if not target:
        raise TypeError(f"go() needs a step name, got {target!r}")
    if isinstance(tools, str):
        raise TypeError(f"tools must be a list of names, got the string {tools!r}")
    return Go(target, None if tools is None else tuple(tools))


@dataclass(frozen=True, slots=True)
class Route:
    """``condition >> go(target)``: taken when the condition holds on the state."""

    condition: Condition
    go: Go

    @property
    def target(self) -> str:
        return self.go.target


@dataclass(frozen=True, slots=True)
class Router:
    """A step's routes, tried in order; ``default`` is taken when none matches."""

    routes: tuple[Route, ...]
    default: Go
    # Where ``flow.route`` was called (file, line, module): a warning about the routes points
    # there, at the user's code. Not part of what the routes are (no repr, no equality).
    declared_at: Site | None = field(default=None, repr=False, compare=False)
    targets: frozenset[str] = field(init=False)
    # Each route's condition as a predicate (Condition.predicate), with where it goes: what choose
    # tries. Derived, so outside the constructor, the repr and equality.
    tests: tuple[tuple[Callable[[Mapping[str, Any]], bool], Go], ...] = field(init=False, repr=False, compare=False)
    # What choose does, as one function of the state: for a single route (a loop's test, an
    # if/else) the condition's own choice, one call per settled step. Derived, like ``tests``.
    decide: Callable[[Mapping[str, Any]], Go] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {r.target for r in self.routes} | {self.default.target}
        object.__setattr__(self, "targets", frozenset(names - {END}))
        object.__setattr__(self, "tests", tuple((r.condition.predicate(), r.go) for r in self.routes))
        if len(self.routes) == 1:
            decide = self.routes[0].condition.choice(self.routes[0].go, self.default)
        else:
            decide = _in_turn(self.tests, self.default)  # a closure, not a bound method: no cycle
        object.__setattr__(self, "decide", decide)

    def choose(self, state: Mapping[str, Any]) -> Go:
        """The destination for ``state``: the first route whose condition holds, else the default."""
        return self.decide(state)


def _in_turn(
    tests: tuple[tuple[Callable[[Mapping[str, Any]], bool], Go], ...], default: Go
) -> Callable[[Mapping[str, Any]], Go]:
    """Routes tried in order, the default when none holds."""

    def choose(state: Mapping[str, Any]) -> Go:
        for holds, go in tests:
            if holds(state):
                return go
        return default

    return choose
