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


# -- issue 9, finding 8: numbers without bounds --------------------------------------------

@pytest.mark.parametrize("text, key", [
    ("[scheduler]\ntick_seconds = 1e300\n", "$.scheduler.tick_seconds"),
    ("[scheduler]\ncatch_up_window_minutes = 9223372036854775807\n", "$.scheduler.catch_up_window_minutes"),
    ("[approvals]\nexpire_after_hours = 1e18\n", "$.approvals.expire_after_hours"),
    ("[budget]\ndaily_usd = 1e308\n", "$.budget.daily_usd"),
    ("[retention]\nevents_days = 99999999\n", "$.retention.events_days"),
])
def test_out_of_range_numbers_are_refused_naming_the_key(tmp_path: Path, text: str, key: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and key in message and "greater than the maximum" in message
    assert "\n" not in message


def test_the_largest_allowed_numbers_run_a_simulated_day(tmp_path: Path):
    from support import run_cli

    config = tmp_path / "c.toml"
    config.write_text("[scheduler]\ntick_seconds = 3600\ncatch_up_window_minutes = 10080\nidle_after_minutes = 10080\n"
                      "[approvals]\nexpire_after_hours = 8760\n[retention]\nevents_days = 3650\ntranscripts_days = 3650\n")
    out = run_cli("simulate", "--start", "2026-11-26", "--data-dir", str(tmp_path / "d"), "--config", str(config),
                  env={"CASS_ACTIONS_LOAD_PLUGINS": "journal"})
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
