"""load_plan_file: a bad date is a UserError naming the file and $.date, never a traceback."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from cass_actions_core.catalogue import Catalogue
from cass_actions_core.config import Config
from cass_actions_core.planning import load_plan_file
from cass_actions_core.plugins import new_plugin_manager
from cass_actions_core.problems import UserError

DEFAULT_DAY = date(2026, 11, 3)


def empty_catalogue() -> Catalogue:
    return Catalogue(config=Config(), plugin_manager=new_plugin_manager(), plugins=[])


@pytest.mark.parametrize("bad", ["2026-13-40", "2026-02-30", "2026-00-01"])
def test_an_impossible_date_is_reported_with_file_and_path(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"date": bad, "phases": {}}), "utf-8")

    with pytest.raises(UserError) as caught:
        load_plan_file(path, empty_catalogue(), DEFAULT_DAY)

    message = str(caught.value)
    assert str(path) in message
    assert "$.date" in message
    assert bad in message


def test_a_real_date_is_used_and_a_missing_one_defaults(tmp_path: Path) -> None:
    dated, undated = tmp_path / "dated.json", tmp_path / "undated.json"
    dated.write_text(json.dumps({"date": "2026-02-28", "phases": {}}), "utf-8")
    undated.write_text(json.dumps({"phases": {}}), "utf-8")

    assert load_plan_file(dated, empty_catalogue(), DEFAULT_DAY).day == date(2026, 2, 28)
    assert load_plan_file(undated, empty_catalogue(), DEFAULT_DAY).day == DEFAULT_DAY
