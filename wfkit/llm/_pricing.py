"""What a model call costs: a price table, in US dollars per 1,000 tokens, that users extend.

    wf.llm.PRICES.register("llama3.1:8b", input_per_1k=0.0, output_per_1k=0.0)   # every client sees it
    ChatClient(..., prices={"my-model": (0.001, 0.002)})                       # one client only

A model found in no table costs ``None`` (unknown), never 0: a step log that says "free" for a
model nobody priced would be wrong in a way that is hard to notice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per 1,000 input (prompt) tokens and per 1,000 output (completion) tokens."""

    input_per_1k: float
    output_per_1k: float

    def __post_init__(self) -> None:
        for name in ("input_per_1k", "output_per_1k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (USD per 1,000 tokens), got {value!r}")

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1k + tokens_out * self.output_per_1k) / 1000


PriceLike: TypeAlias = Price | tuple[float, float]

# List prices in USD per 1,000 tokens as published by the providers in 2025; check yours, they change.
# "simulated" is wfkit's offline model, priced like a small hosted model so costs are never zero.
_DEFAULTS: dict[str, Price] = {
    "simulated": Price(0.00015, 0.0006),
    "gpt-4o": Price(0.0025, 0.01),
    "gpt-4o-mini": Price(0.00015, 0.0006),
    "gpt-4.1": Price(0.002, 0.008),
    "gpt-4.1-mini": Price(0.0004, 0.0016),
    "gpt-4.1-nano": Price(0.0001, 0.0004),
}


def _as_price(model: str, value: PriceLike) -> Price:
    if isinstance(value, Price):
        return value
    try:
        input_per_1k, output_per_1k = value
    except (TypeError, ValueError):
        raise ValueError(
            f"price for {model!r} must be Price(...) or (input_per_1k, output_per_1k), got {value!r}"
        ) from None
    return Price(input_per_1k, output_per_1k)


class Prices:
    """A price table: model name -> :class:`Price`, with an optional fallback table.

    Lookup tries the exact name (here, then in the fallback), then the longest registered name
    that the model starts with followed by ``-`` (so ``gpt-4o-mini-2024-07-18`` is priced as
    ``gpt-4o-mini``). A client given a plain mapping looks there first, then in :data:`PRICES`.
    A client prices a reply by the model name the server gave, else by the one it asked for.
    """

    __slots__ = ("_fallback", "_table")

    def __init__(self, table: Mapping[str, PriceLike] | None = None, *, fallback: Prices | None = None) -> None:
        self._table: dict[str, Price] = {}
        self._fallback = fallback
        for model, value in (table or {}).items():
            price = _as_price(model, value)
            self.register(model, price.input_per_1k, price.output_per_1k)

    def register(self, model: str, input_per_1k: float, output_per_1k: float) -> None:
        """Add or replace a model's price (USD per 1,000 input and output tokens)."""
        if not isinstance(model, str) or not model:
            raise ValueError(f"a price needs a model name, got {model!r}")
        self._table[model] = Price(input_per_1k, output_per_1k)

    def _chain(self) -> Iterator[dict[str, Price]]:
        table: Prices | None = self
        while table is not None:
            yield table._table
            table = table._fallback

    def get(self, model: str | None) -> Price | None:
        """The price of ``model``, or None when no table knows it."""
        if not model:
            return None
        chain = list(self._chain())
        for table in chain:  # an exact name anywhere beats a prefix
            if model in table:
                return table[model]
        best: tuple[int, Price] | None = None
        for table in chain:  # then the longest prefix; this table wins a tie with its fallback
            for name, price in table.items():
                if model.startswith(name + "-") and (best is None or len(name) > best[0]):
                    best = (len(name), price)
        return None if best is None else best[1]

    def cost(self, model: str | None, tokens_in: int | None, tokens_out: int | None) -> float | None:
        """USD for one call, or None when the model is unpriced or the token counts are unknown."""
        price = self.get(model)
        if price is None or tokens_in is None or tokens_out is None:
            return None
        return price.cost(tokens_in, tokens_out)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.get(model) is not None

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for table in self._chain():
            for model in table:
                if model not in seen:
                    seen.add(model)
                    yield model

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Prices({len(self)} models: {', '.join(sorted(self))})"


PRICES = Prices(_DEFAULTS)
"""The process-wide table every client falls back to; ``PRICES.register(...)`` extends it."""


def as_prices(prices: Prices | Mapping[str, PriceLike] | None) -> Prices:
    """What a client prices with: :data:`PRICES`, a given table, or a mapping layered over PRICES."""
    if prices is None:
        return PRICES
    if isinstance(prices, Prices):
        return prices
    return Prices(prices, fallback=PRICES)
