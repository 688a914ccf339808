"""The dated price table: shipped rows, snapshots, unknown models, bands, overrides."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cass_actions_core.config import ModelPrice
from cass_actions_core.llm.base import Usage
from cass_actions_core.llm.prices import cost_usd, default_price_table, price_table

# Typed in from the published table (anthropic-sdk.md section 6, as of 2026-11):
# model -> (input, 5m write, 1h write, cache read, output), USD per MTok.
PUBLISHED = {
    "claude-opus-5-5": (4.00, 5.00, 8.00, 0.20, 20.00),
    "claude-sonnet-5-5": (2.00, 2.50, 4.00, 0.20, 10.00),
    "claude-haiku-5-5": (0.10, 0.125, 0.20, 0.01, 0.50),
    "claude-haiku-4-5": (1.00, 1.25, 2.00, 0.10, 5.00),
    "claude-opus-5": (5.00, 6.25, 10.00, 0.50, 25.00),
    "claude-opus-4-8": (5.00, 6.25, 10.00, 0.50, 25.00),
    "claude-opus-4-5": (5.00, 6.25, 10.00, 0.50, 25.00),
}


def test_price_file_is_stamped_with_its_date() -> None:
    doc = json.loads(files("cass_actions_core.llm").joinpath("prices.json").read_text("utf-8"))
    assert doc["as_of"] == "2026-11"
    assert default_price_table().as_of == "2026-11"


@pytest.mark.parametrize(("model", "row"), sorted(PUBLISHED.items()))
def test_shipped_rows_match_the_published_prices(model: str, row: tuple[float, ...]) -> None:
    price = default_price_table().price_for(model)
    assert (price.input, price.cache_write_5m, price.cache_write_1h, price.cache_read, price.output) == row


def test_unknown_model_is_priced_at_the_most_expensive_known_rate() -> None:
    table = default_price_table()
    price = table.price_for("claude-brand-new-9")
    assert not table.is_known("claude-brand-new-9")
    # The legacy Opus row is the dearest in every category.
    assert (price.input, price.cache_write_5m, price.cache_write_1h, price.cache_read, price.output) == (
        5.00, 6.25, 10.00, 0.50, 25.00)
    assert table.cost("claude-brand-new-9", Usage(1000, 1000)) == pytest.approx((1000 * 5 + 1000 * 25) / 1e6)


def test_dated_snapshot_uses_its_family_row() -> None:
    table = default_price_table()
    assert table.match("claude-haiku-4-5-20251001") == "claude-haiku-4-5"
    assert table.price_for("claude-haiku-4-5-20251001").output == 5.00
    assert table.match("claude-haiku-4-5-extra") is None


def test_haiku_55_long_prompt_band_applies_to_the_whole_request() -> None:
    table = default_price_table()
    small = Usage(input_tokens=100_000, output_tokens=1000)
    big = Usage(input_tokens=150_000, output_tokens=1000)
    assert table.cost("claude-haiku-5-5", small) == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert table.cost("claude-haiku-5-5", big) == pytest.approx((150_000 * 0.50 + 1000 * 2.50) / 1e6)
    # Cache reads count toward the prompt size that selects the band.
    mixed = Usage(input_tokens=10_000, output_tokens=0, cache_read_tokens=95_000)
    assert table.cost("claude-haiku-5-5", mixed) == pytest.approx((10_000 * 0.50 + 95_000 * 0.05) / 1e6)


def test_config_overrides_replace_rows_and_fill_cache_prices() -> None:
    table = price_table({"claude-haiku-5-5": ModelPrice(input=1.0, output=2.0), "my-model": ModelPrice(input=3, output=4)})
    price = table.price_for("claude-haiku-5-5", prompt_tokens=500_000)  # no band any more
    assert (price.input, price.output, price.cache_write_5m, price.cache_write_1h, price.cache_read) == (
        1.0, 2.0, 1.25, 2.0, 0.1)
    assert table.is_known("my-model")
    assert table.cost("my-model", Usage(1_000_000, 1_000_000)) == pytest.approx(7.0)
    # The shipped table itself is untouched.
    assert default_price_table().price_for("claude-haiku-5-5").input == 0.10


def test_cost_is_exact_for_awkward_numbers() -> None:
    price = ModelPrice(input=0.1, output=0.5, cache_write_5m=0.125, cache_write_1h=0.2, cache_read=0.01)
    assert cost_usd(Usage(3, 3, 3, 3, 3), price) == 0.000002805


@given(
    a=st.tuples(*[st.integers(0, 10**7)] * 5),
    b=st.tuples(*[st.integers(0, 10**7)] * 5),
)
def test_cost_is_additive_over_usage(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    price = default_price_table().price_for("claude-sonnet-5-5")
    ua, ub = Usage(*a), Usage(*b)
    assert cost_usd(ua + ub, price) == pytest.approx(cost_usd(ua, price) + cost_usd(ub, price), rel=1e-12, abs=1e-12)
