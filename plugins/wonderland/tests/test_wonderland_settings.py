"""The pack's settings schema, its shared helpers from the core, and its metadata files."""

from __future__ import annotations

import json
import logging
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import pytest

from cass_actions_core import text as core_text
from cass_actions_core.actions import ActionFailed
from cass_actions_core.problems import CatalogueError

from cass_actions_wonderland import common, handlers, world


def test_a_bad_setting_is_a_catalogue_problem_with_its_key_path(wonderland):
    with pytest.raises(CatalogueError) as info:
        wonderland(config={"packs": {"wonderland": {"prompt_experiences": "many", "max_tokens": 0, "narrative": True}}})
    found = sorted((p.code, p.path) for p in info.value.problems)
    assert found == [("invalid-pack-settings", "$.packs.wonderland"),
                     ("invalid-pack-settings", "$.packs.wonderland.max_tokens"),
                     ("invalid-pack-settings", "$.packs.wonderland.prompt_experiences")]
    assert all(p.pack == "wonderland" for p in info.value.problems)


def test_good_settings_build_and_every_key_the_pack_reads_is_declared(wonderland):
    runtime = wonderland(config={"packs": {"wonderland": {"world_file": "w.json", "journal_narrative": False,
                                                          "prompt_experiences": 50, "max_tokens": 4096}}})
    assert not [p for p in runtime.catalogue.problems if p.pack == "wonderland"]
    schema = json.loads((files("cass_actions_wonderland") / "settings.schema.json").read_text("utf-8"))
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(common.SETTINGS)
    for key, (low, high) in common.BOUNDS.items():
        assert (schema["properties"][key]["minimum"], schema["properties"][key]["maximum"]) == (low, high)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    assert all(f"`{key}`" in readme for key in schema["properties"])


def test_the_run_time_getter_still_checks_types_and_bounds():
    def ctx(**settings):
        return SimpleNamespace(settings=settings)

    assert common.setting(ctx(), "prompt_experiences") == 12 and common.setting(ctx(), "world_file") is None
    with pytest.raises(ActionFailed, match=r"prompt_experiences must be an integer, not str"):
        common.setting(ctx(prompt_experiences="many"), "prompt_experiences")
    with pytest.raises(ActionFailed, match=r"max_tokens must be between 1 and 4096, not 5000"):
        common.setting(ctx(max_tokens=5000), "max_tokens")
    with pytest.raises(ActionFailed, match=r"journal_narrative must be true or false"):
        common.setting(ctx(journal_narrative=1), "journal_narrative")


def test_metadata_files_name_their_schema():
    for name, schema in (("templates.json", "template-file"), ("actions.json", "action-pack")):
        doc = json.loads((files("cass_actions_wonderland") / name).read_text("utf-8"))
        assert doc["$schema"] == f"https://cass-actions.dev/schemas/{schema}.schema.json"


def test_text_helpers_come_from_the_core():
    assert getattr(common, "clip", core_text.clip) is core_text.clip and not hasattr(common, "offline_label_free")
    assert not hasattr(world, "first_sentence")
    assert handlers.clip is core_text.clip and handlers.first_sentence is core_text.first_sentence


def test_daemon_name_reads_the_self_model_through_the_core(wonderland, run_action, caplog):
    runtime = wonderland(config={"daemon_id": "wren"})
    (runtime.workspace / "self" / "model.json").write_text('["not", "an object"]', encoding="utf-8")
    assert run_action(runtime, "wonderland.explore").ok
    with caplog.at_level(logging.WARNING):
        outcome = run_action(runtime, "wonderland.journal_experience")
    assert outcome.ok, outcome.error
    text = (runtime.workspace / "wonderland" / "journal" / f"{runtime.clock.today().isoformat()}.md").read_text("utf-8")
    assert "Wren's experiences in Wonderland" in text  # the id, capitalised: the model has no usable name
    assert any("the self model must be a JSON object" in r.getMessage() for r in caplog.records)
