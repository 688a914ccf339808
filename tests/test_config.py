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


# -- issue 10: sections are plain dataclasses; the schema is still the judge -------------------

def test_from_dict_checks_the_document_like_a_file_and_builds_nested_sections() -> None:
    from cass_actions_core.config import ActionLLMSettings, Config, PlannerWeights

    config = Config.from_dict({"budget": {"daily_usd": 2}, "planner": {"weights": {"variety": 4.0}},
                               "llm": {"actions": {"journal.x": {"model": "claude-opus-5-5"}}}})
    assert config.budget.daily_usd == 2 and config.planner.weights == PlannerWeights(variety=4.0)
    assert config.llm.actions == {"journal.x": ActionLLMSettings(model="claude-opus-5-5")}
    with pytest.raises(UserError, match=r"configuration: invalid configuration: \$\.budget: .*daily_dollars"):
        Config.from_dict({"budget": {"daily_dollars": 2}})


def test_a_runtime_refuses_a_directly_built_configuration_the_schema_refuses(tmp_path: Path) -> None:
    from cass_actions_core.config import BudgetSettings, Config
    from cass_actions_core.runtime import Runtime

    with pytest.raises(UserError, match=r"\$\.timezone: unknown time zone 'Mars/Base'"):
        Runtime(Config(timezone="Mars/Base"), data_dir=tmp_path, entry_points=False)
    with pytest.raises(UserError, match=r"\$\.budget\.daily_usd"):
        Runtime(Config(budget=BudgetSettings(daily_usd=-1.0)), data_dir=tmp_path, entry_points=False)
    assert not (tmp_path / "cass-actions.sqlite").exists()  # refused before anything was written


def test_the_run_time_budget_ceiling_is_the_schemas_daily_maximum():
    import json
    from importlib.resources import files

    from cass_actions_core.config import MAX_DAILY_USD

    schema = json.loads((files("cass_actions_core") / "schemas" / "config.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["budget"]["properties"]["daily_usd"]["maximum"] == MAX_DAILY_USD
