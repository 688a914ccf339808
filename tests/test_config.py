"""load_config: non-finite numbers are refused with the file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cass_actions_core.config import load_config
from cass_actions_core.problems import UserError


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
def test_non_finite_numbers_in_the_file_are_refused(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[budget]\ndaily_usd = {literal}\n", "utf-8")

    with pytest.raises(UserError) as caught:
        load_config(path, env={})

    message = str(caught.value)
    assert str(path.resolve()) in message
    assert "$.budget.daily_usd" in message
    assert "not a finite number" in message


def test_non_finite_numbers_are_found_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[llm.prices.my-model]\ninput = 1.0\noutput = inf\n\n[packs.journal]\nweights = [1.0, nan]\n",
                    "utf-8")

    with pytest.raises(UserError) as caught:
        load_config(path, env={})

    assert "$.llm.prices.my-model.output" in str(caught.value)
    assert "$.packs.journal.weights[1]" in str(caught.value)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity"])
def test_a_non_finite_budget_from_the_environment_is_refused(value: str) -> None:
    with pytest.raises(UserError) as caught:
        load_config(env={"CASS_ACTIONS_DAILY_BUDGET_USD": value})

    message = str(caught.value)
    assert message.startswith("configuration:")
    assert "$.budget.daily_usd" in message
    assert "CASS_ACTIONS_DAILY_BUDGET_USD" in message


def test_finite_numbers_still_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[budget]\ndaily_usd = 7.5\n", "utf-8")

    config = load_config(path, env={"CASS_ACTIONS_DAILY_BUDGET_USD": "3.25"})

    assert config.budget.daily_usd == 3.25
