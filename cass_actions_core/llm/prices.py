"""The dated price table: USD per million tokens, by model, from ``prices.json``.

Prices change, so they live in one data file stamped with an ``as_of`` date
(``cass_actions_core/llm/prices.json``), never in code. A user corrects or extends
them without a release through ``[llm.prices."<model>"]`` in the config
(:attr:`cass_actions_core.config.LLMSettings.prices`); a config row replaces the whole
row of that model.

Rules:

- A model id matches its row exactly, or as a dated snapshot of it
  (``claude-haiku-4-5-20251001`` uses ``claude-haiku-4-5``).
- A model not in the table is priced at the most expensive known rate, field by
  field, never at $0: a budget must err on the safe side.
- A row may leave cache prices out (config rows often do); they then follow the
  API's usual multipliers of the input price: 5-minute write 1.25x, 1-hour write 2x,
  cache read 0.1x.
- A row may carry a ``long_prompt`` band (Haiku 5.5 above 100K prompt tokens): when
  the whole prompt (uncached + cache write + cache read) exceeds ``above_tokens``,
  every token of that request is charged at the band's prices.
- Costs are computed with :class:`decimal.Decimal` and returned as ``float``, so a sum
  of many calls stays exact to the cent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib.resources import files
from typing import Any

from cass_actions_core.config import ModelPrice
from cass_actions_core.llm.base import Usage

_MTOK = Decimal(1_000_000)
# A dated snapshot id is the family id plus "-YYYYMMDD" (or "-latest").
_SNAPSHOT = re.compile(r"-(\d{8}|latest)$")
_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


def complete_price(price: ModelPrice) -> ModelPrice:
    """``price`` with missing cache prices filled from the usual input multipliers."""
    # round(): derived prices like 0.3 * 0.1 must not carry float noise into Decimal sums.
    return ModelPrice(
        input=price.input,
        output=price.output,
        cache_write_5m=price.cache_write_5m if price.cache_write_5m is not None else round(price.input * 1.25, 10),
        cache_write_1h=price.cache_write_1h if price.cache_write_1h is not None else round(price.input * 2, 10),
        cache_read=price.cache_read if price.cache_read is not None else round(price.input * 0.1, 10),
    )


def _d(value: float | None) -> Decimal:
    # str() first: Decimal(0.1) would carry the binary float's error into the sum.
    return Decimal(str(value or 0.0))


def cost_decimal(usage: Usage, price: ModelPrice) -> Decimal:
    """Exact USD cost of ``usage`` at ``price`` (per-MTok prices), as a Decimal."""
    p = complete_price(price)
    total = (
        usage.input_tokens * _d(p.input)
        + usage.output_tokens * _d(p.output)
        + usage.cache_write_5m_tokens * _d(p.cache_write_5m)
        + usage.cache_write_1h_tokens * _d(p.cache_write_1h)
        + usage.cache_read_tokens * _d(p.cache_read)
    )
    return total / _MTOK


def cost_usd(usage: Usage, price: ModelPrice) -> float:
    """USD cost of ``usage`` at ``price``: each count times its per-MTok price, over 10^6."""
    return float(cost_decimal(usage, price))


@dataclass(frozen=True)
class PriceBand:
    """Prices that apply to a whole request whose prompt exceeds ``above_tokens``."""

    above_tokens: int
    price: ModelPrice


@dataclass(frozen=True)
class PriceEntry:
    """One model's row: base prices and an optional long-prompt band."""

    price: ModelPrice
    long_prompt: PriceBand | None = None

    def price_for(self, prompt_tokens: int) -> ModelPrice:
        """The complete price applying to a request with ``prompt_tokens`` prompt tokens."""
        if self.long_prompt is not None and prompt_tokens > self.long_prompt.above_tokens:
            return complete_price(self.long_prompt.price)
        return complete_price(self.price)


class PriceTable:
    """Per-model prices with snapshot matching, overrides and a safe fallback."""

    def __init__(self, entries: Mapping[str, PriceEntry], *, as_of: str, source: str = "") -> None:
        """Build a table from ``entries`` (model id -> row) stamped ``as_of`` (``"2026-11"``)."""
        if not entries:
            raise ValueError("a price table needs at least one model")
        self._entries = dict(entries)
        self.as_of = as_of
        self.source = source
        # The most expensive known rate, field by field, bands included: what an
        # unknown model costs, so a misspelt or brand-new model cannot spend for free.
        prices = [complete_price(e.price) for e in self._entries.values()]
        prices += [complete_price(e.long_prompt.price) for e in self._entries.values() if e.long_prompt]
        self.fallback = ModelPrice(**{f: max(getattr(p, f) for p in prices) for f in _FIELDS})

    @property
    def models(self) -> list[str]:
        """The model ids with a row, sorted."""
        return sorted(self._entries)

    def match(self, model: str) -> str | None:
        """The row id ``model`` uses (exact, or the family of a dated snapshot), or ``None``."""
        if model in self._entries:
            return model
        family = _SNAPSHOT.sub("", model)
        return family if family in self._entries else None

    def is_known(self, model: str) -> bool:
        """Whether ``model`` has its own row (else it is priced at :attr:`fallback`)."""
        return self.match(model) is not None

    def price_for(self, model: str, prompt_tokens: int = 0) -> ModelPrice:
        """The complete price of a ``model`` request with ``prompt_tokens`` prompt tokens."""
        row = self.match(model)
        if row is None:
            return self.fallback
        return self._entries[row].price_for(prompt_tokens)

    def cost_decimal(self, model: str, usage: Usage) -> Decimal:
        """Exact USD cost of one request's ``usage`` on ``model``."""
        return cost_decimal(usage, self.price_for(model, usage.prompt_tokens))

    def cost(self, model: str, usage: Usage) -> float:
        """USD cost of one request's ``usage`` on ``model``."""
        return float(self.cost_decimal(model, usage))

    def with_overrides(self, overrides: Mapping[str, ModelPrice]) -> PriceTable:
        """A copy where each model in ``overrides`` gets that row (replacing any band)."""
        if not overrides:
            return self
        entries = dict(self._entries)
        entries.update({model: PriceEntry(price) for model, price in overrides.items()})
        return PriceTable(entries, as_of=self.as_of, source=self.source)


def _entry(model: str, row: Mapping[str, Any]) -> PriceEntry:
    band = row.get("long_prompt")
    base = {k: v for k, v in row.items() if k != "long_prompt"}
    try:
        price = ModelPrice(**base)
        long_prompt = None
        if band is not None:
            band_fields = {k: v for k, v in band.items() if k != "above_tokens"}
            long_prompt = PriceBand(int(band["above_tokens"]), ModelPrice(**band_fields))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"prices.json: bad row for {model!r}: {exc}") from None
    return PriceEntry(price, long_prompt)


def parse_price_document(doc: Mapping[str, Any]) -> PriceTable:
    """Build a table from a document shaped like ``prices.json``."""
    if not isinstance(doc.get("as_of"), str) or not isinstance(doc.get("models"), Mapping):
        raise ValueError("prices.json: needs an 'as_of' string and a 'models' mapping")
    entries = {model: _entry(model, row) for model, row in doc["models"].items()}
    return PriceTable(entries, as_of=doc["as_of"], source=str(doc.get("source", "")))


@cache
def default_price_table() -> PriceTable:
    """The table shipped in ``prices.json`` (read once per process)."""
    text = files("cass_actions_core.llm").joinpath("prices.json").read_text("utf-8")
    return parse_price_document(json.loads(text))


def price_table(overrides: Mapping[str, ModelPrice] | None = None) -> PriceTable:
    """The shipped table with the config's ``llm.prices`` rows applied."""
    return default_price_table().with_overrides(overrides or {})
