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


def test_prices_per_million_as_providers_quote_them() -> None:
    """register(input_per_1m=, output_per_1m=) and Price.per_1m take a provider's quote as written:
    $2.50 and $10 per million make 1M tokens in and out cost $12.50."""
    table = Prices()
    table.register("my-model", input_per_1m=2.50, output_per_1m=10.00)
    assert pytest.approx(12.5) == table.cost("my-model", 1_000_000, 1_000_000)
    assert Price.per_1m(2.50, 10.00) == table.get("my-model")
    assert pytest.approx(0.0125) == as_prices({"mine": Price.per_1m(2.50, 10.00)}).cost("mine", 1000, 1000)
    table.register("kw", input_per_1k=0.0025, output_per_1k=0.01)  # the keywords of before still work
    assert table.get("kw") == table.get("my-model")
    with pytest.raises(ValueError, match=r"input_per_1m must be a finite number >= 0 \(USD per million tokens\)"):
        Price.per_1m(-1.0, 0.0)


def test_per_million_figures_given_as_per_thousand_are_refused_naming_the_call() -> None:
    """register("my-model", 2.50, 10.00), a quote per million typed where the figures are read per
    1,000, would cost every call 1,000 times over: it is refused, the table unchanged, naming the
    call to write; so is such a pair in a client's mapping."""
    table = Prices()
    with pytest.raises(ValueError) as refused:
        table.register("my-model", 2.50, 10.00)
    assert (
        "register('my-model', 2.5, 10.0): these are read as USD per 1,000 tokens, and $10 per 1,000 ($10,000 per "
        "million) is more than any model costs, so they must be prices per million tokens, as providers quote "
        "them: write register('my-model', input_per_1m=2.5, output_per_1m=10.0)"
    ) == str(refused.value)
    with pytest.raises(ValueError, match="more than any model costs"):
        table.register("my-model", input_per_1k=2.50, output_per_1k=10.00)
    assert "my-model" not in table
    with pytest.raises(ValueError) as refused:
        as_prices({"my-model": (2.50, 10.00)})
    assert str(refused.value).endswith("write {'my-model': wf.llm.Price.per_1m(2.5, 10.0)}")
    table.register("o1-pro", 0.15, 0.6)  # the dearest real prices per 1,000 pass
    assert pytest.approx(0.75) == table.cost("o1-pro", 1000, 1000)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"input_per_1k": 0.1, "input_per_1m": 1.0, "output_per_1m": 2.0}, "input_per_1k, input_per_1m, output_per_1m"),
        ({"input_per_1m": 1.0}, "input_per_1m"),
        ({"input_per_1k": 0.1, "output_per_1m": 2.0}, "input_per_1k, output_per_1m"),
        ({}, "none"),
    ],
)
def test_register_takes_exactly_one_pair_of_prices(given: dict[str, float], named: str) -> None:
    """Both units, half a pair or none is a TypeError saying what was given and the call to write."""
    with pytest.raises(TypeError) as refused:
        Prices().register("m", **given)
    assert (
        f"register('m', ...) takes one pair of prices, got {named}: write register('m', input_per_1m=..., "
        "output_per_1m=...) with USD per million tokens, as providers quote them (or input_per_1k= and "
        "output_per_1k= per 1,000)"
    ) == str(refused.value)
