"""Tests for wfkit.llm._pricing: the price table and what a call costs."""

from __future__ import annotations

import pytest

from wfkit.llm._pricing import PRICES, Price, Prices, as_prices


def test_cost_is_tokens_times_price_per_thousand() -> None:
    """1,000 input and 500 output tokens at $0.002 / $0.008 per 1k cost $0.006."""
    table = Prices({"m": (0.002, 0.008)})
    assert pytest.approx(0.006) == table.cost("m", 1000, 500)


def test_unknown_model_or_tokens_cost_none_not_zero() -> None:
    """A model no table knows, or a call without token counts, has an unknown cost: None."""
    assert PRICES.cost("some-local-model", 10, 10) is None
    assert PRICES.cost("gpt-4o", None, 10) is None
    assert PRICES.cost(None, 10, 10) is None


def test_dated_model_names_take_their_base_price() -> None:
    """gpt-4o-mini-2024-07-18 is priced as gpt-4o-mini (the longest matching name), not gpt-4o."""
    assert PRICES.get("gpt-4o-mini") == PRICES.get("gpt-4o-mini-2024-07-18")
    assert PRICES.get("gpt-4o") != PRICES.get("gpt-4o-mini-2024-07-18")
    assert PRICES.get("gpt-4omni") is None  # a prefix must end at a dash


def test_defaults_include_the_simulated_model() -> None:
    """The offline model has a (small) price, so simulated runs show costs."""
    assert "simulated" in PRICES
    assert (PRICES.cost("simulated", 100, 100) or 0) > 0


def test_register_extends_a_table() -> None:
    """register() adds a model; registering again replaces its price."""
    table = Prices()
    table.register("local", 0.0, 0.0)
    assert 0.0 == table.cost("local", 100, 100)
    table.register("local", 0.001, 0.001)
    assert pytest.approx(0.0002) == table.cost("local", 100, 100)


def test_a_mapping_layers_over_the_global_table() -> None:
    """A client's mapping is consulted first, then PRICES; the global table is untouched."""
    table = as_prices({"mine": (0.5, 0.5), "gpt-4o": Price(0.0, 0.0)})
    assert 0.0 == table.cost("gpt-4o", 1000, 1000)
    assert PRICES.get("gpt-4o-mini") == table.get("gpt-4o-mini")
    assert "mine" not in PRICES
    assert "mine" in table
    assert as_prices(None) is PRICES
    assert as_prices(table) is table


def test_invalid_prices_are_refused() -> None:
    """Negative, non-numeric or malformed prices raise ValueError saying what is expected."""
    with pytest.raises(ValueError, match="finite number >= 0"):
        Price(-1.0, 0.0)
    with pytest.raises(ValueError, match=r"\(input_per_1k, output_per_1k\)"):
        Prices({"m": (0.1,)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="model name"):
        Prices().register("", 0.1, 0.1)


def test_repr_lists_the_models() -> None:
    """repr() names the models a table prices."""
    assert "Prices(2 models: a, b)" == repr(Prices({"b": (0, 0), "a": (0, 0)}))
