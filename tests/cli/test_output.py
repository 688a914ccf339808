"""Terminal formatting helpers of the CLI (cli/output.py)."""

from __future__ import annotations

import pytest

from cass_actions_core.cli.output import usd


@pytest.mark.parametrize("value, shown", [
    (0, "$0.00"), (1.5, "$1.50"), (0.15, "$0.15"), (0.000648, "$0.0006"), (12.34567, "$12.3457"),
    # an amount four decimals would round to zero keeps its digits: a step that spent money never shows $0.00
    (0.00002, "$0.00002"), (0.000022, "$0.000022"), (0.00005, "$0.0001"),
])
def test_usd_shows_up_to_four_decimals_and_never_rounds_money_spent_to_zero(value: float, shown: str) -> None:
    assert usd(value) == shown
