"""Routes: where a step goes next, chosen by structured conditions, with the tools it may use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wfkit._conditions import Condition

END = "__end__"
"""Route target that ends the branch: ``default=wfkit.go(wfkit.END)``."""


@dataclass(frozen=True, slots=True)
class Go:
    """A route's destination: the next step and the tools that step may use."""

    target: str
    tools: tuple[str, ...] | None = None


def go(target: str, *, tools: Iterable[str] | None = None) -> Go:
    """Destination of a route: ``wfkit.go("answer", tools=["web_search"])``.

    ``tools`` binds the tools the target step may use when reached this way (``ctx.tools``);
    ``None`` keeps the step's own declared tools.
    """
    if not isinstance(target, str) or not target:
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
    targets: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {r.target for r in self.routes} | {self.default.target}
        object.__setattr__(self, "targets", frozenset(names - {END}))

    def choose(self, state: Mapping[str, Any]) -> Go:
        for route in self.routes:
            if route.condition.evaluate(state):
                return route.go
        return self.default
