"""What a model call costs: a price table, in US dollars, that users extend.

    wf.llm.PRICES.register("my-model", input_per_1m=2.50, output_per_1m=10.00)  # as providers quote them
    wf.llm.PRICES.register("llama3.1:8b", input_per_1k=0.0, output_per_1k=0.0)  # or per 1,000 tokens
    ChatClient(..., prices={"my-model": Price.per_1m(2.50, 10.00)})             # one client only

Providers quote prices per million tokens and the table keeps them per 1,000, so per-1,000 figures
(``register``'s positional or ``_per_1k`` arguments, an ``(input, output)`` pair in a mapping) are
refused above $1 per 1,000, more than any model costs (the dearest in 2025, o1-pro, asks $0.60 for
its output): ``register("m", 2.50, 10.00)`` would have costed every call 1,000 times over. A
``Price(...)`` is taken as written.

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

    @classmethod
    def per_1m(cls, input_per_1m: float, output_per_1m: float) -> Price:
        """A price from US dollars per million input and output tokens, as providers quote them."""
        for name, value in (("input_per_1m", input_per_1m), ("output_per_1m", output_per_1m)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (USD per million tokens), got {value!r}")
        return cls(input_per_1m / 1000, output_per_1m / 1000)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1k + tokens_out * self.output_per_1k) / 1000


# USD per 1,000 tokens above which a figure given without its unit is taken for a price per million:
# no model costs that (the dearest list price in 2025, o1-pro's output, is $0.60 per 1,000 tokens).
_MOST_PER_1K = 1.0


def _unlikely_per_1k(input_per_1k: float, output_per_1k: float) -> bool:
    return any(
        isinstance(v, int | float) and not isinstance(v, bool) and v > _MOST_PER_1K
        for v in (input_per_1k, output_per_1k)
    )


def _per_million(given: str, input_figure: float, output_figure: float, write: str) -> ValueError:
    """The refusal of per-1,000 figures that only a price per million can be."""
    most = max(input_figure, output_figure)
    return ValueError(
        f"{given}: these are read as USD per 1,000 tokens, and ${most:g} per 1,000 (${most * 1000:,g} per "
        f"million) is more than any model costs, so they must be prices per million tokens, as providers "
        f"quote them: write {write}"
    )


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
            f"price for {model!r} must be Price(...), Price.per_1m(...) or (input_per_1k, output_per_1k), got {value!r}"
        ) from None
    if _unlikely_per_1k(input_per_1k, output_per_1k):
        raise _per_million(
            f"price for {model!r} {value!r}",
            input_per_1k,
            output_per_1k,
            f"{{{model!r}: wf.llm.Price.per_1m({input_per_1k!r}, {output_per_1k!r})}}",
        )
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
            if not isinstance(model, str) or not model:
                raise ValueError(f"a price needs a model name, got {model!r}")
            self._table[model] = _as_price(model, value)

    def register(
        self,
        model: str,
        input_per_1k: float | None = None,
        output_per_1k: float | None = None,
        *,
        input_per_1m: float | None = None,
        output_per_1m: float | None = None,
    ) -> None:
        """Add or replace a model's price: ``input_per_1m=`` and ``output_per_1m=`` (USD per million
        input and output tokens, as providers quote them), or ``input_per_1k`` and ``output_per_1k``
        (per 1,000; also the two figures given positionally). Exactly one pair. Figures per 1,000
        above $1 are refused: more than any model costs, they can only be prices per million."""
        if not isinstance(model, str) or not model:
            raise ValueError(f"a price needs a model name, got {model!r}")
        per_1k = {"input_per_1k": input_per_1k, "output_per_1k": output_per_1k}
        per_1m = {"input_per_1m": input_per_1m, "output_per_1m": output_per_1m}
        given = [name for name, value in {**per_1k, **per_1m}.items() if value is not None]
        if sorted(given) not in (sorted(per_1k), sorted(per_1m)):
            raise TypeError(
                f"register({model!r}, ...) takes one pair of prices, "
                f"got {', '.join(given) or 'none'}: write register({model!r}, input_per_1m=..., "
                f"output_per_1m=...) with USD per million tokens, as providers quote them (or input_per_1k= "
                f"and output_per_1k= per 1,000)"
            )
        if input_per_1m is not None and output_per_1m is not None:
            self._table[model] = Price.per_1m(input_per_1m, output_per_1m)
            return
        assert input_per_1k is not None and output_per_1k is not None
        if _unlikely_per_1k(input_per_1k, output_per_1k):
            raise _per_million(
                f"register({model!r}, {input_per_1k!r}, {output_per_1k!r})",
                input_per_1k,
                output_per_1k,
                f"register({model!r}, input_per_1m={input_per_1k!r}, output_per_1m={output_per_1k!r})",
            )
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
