"""The shipped world file, its loader's error messages, and the overlay of created things."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files

import pytest

from cass_actions_wonderland.world import World, WorldError, load_world, shipped_world_source


def _minimal(**rooms_extra):
    doc = {
        "name": "Tiny",
        "entrance": "hall",
        "reflection_room": "pool",
        "rooms": {
            "hall": {"name": "Hall", "description": "A hall.", "exits": {"north": "pool"}},
            "pool": {"name": "Pool", "description": "A pool.", "exits": {"south": "hall"}},
        },
        "residents": [{"id": "ada", "name": "Ada", "home": "pool", "description": "A daemon.", "greeting": "Hello."}],
    }
    doc["rooms"].update(rooms_extra)
    return doc


def test_the_shipped_world_is_valid_connected_and_complete():
    world = load_world()
    assert isinstance(world, World)
    assert 8 <= len(world.rooms) <= 12
    assert world.entrance in world.rooms and world.reflection_room == "reflection_pool"
    # Every room can be reached from the entrance, and every room has a way out.
    assert set(world.paths_from(world.entrance)) == set(world.rooms)
    assert all(room.exits and room.description and room.name for room in world.rooms.values())
    assert len(world.residents) >= 3 and all(r.home in world.rooms and r.greeting for r in world.residents)
    assert any(o.sense for room in world.rooms.values() for o in room.objects)
    # It also passes the schema shipped beside it, checked independently of the loader.
    from jsonschema import Draft202012Validator

    schema = json.loads((files("cass_actions_wonderland") / "world.schema.json").read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    assert list(Draft202012Validator(schema).iter_errors(json.loads(shipped_world_source().read_text("utf-8")))) == []


def test_a_broken_exit_is_reported_with_the_file_and_json_path(tmp_path):
    doc = _minimal()
    doc["rooms"]["hall"]["exits"]["west"] = "nowhere"
    path = tmp_path / "broken-world.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(WorldError) as caught:
        load_world(path)
    message = str(caught.value)
    assert str(path) in message
    assert "$.rooms.hall.exits.west" in message and "'nowhere'" in message


def test_a_schema_violation_names_the_file_and_json_path(tmp_path):
    doc = _minimal()
    del doc["rooms"]["pool"]["description"]
    doc["residents"][0]["home"] = 7
    path = tmp_path / "world.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(WorldError) as caught:
        load_world(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid world file")
    assert "$.rooms.pool: 'description' is a required property" in message
    assert "$.residents[0].home: 7 is not of type 'string'" in message


def test_bad_references_and_duplicates_are_all_reported(tmp_path):
    doc = _minimal(cellar={"name": "Cellar", "description": "Dark.", "exits": {"up": "hall"},
                           "objects": [{"id": "lamp", "name": "a lamp", "description": "A lamp."},
                                       {"id": "lamp", "name": "another lamp", "description": "Another."}]})
    doc["reflection_room"] = "pond"
    doc["residents"].append({"id": "ada", "name": "Ada again", "home": "attic", "description": "x", "greeting": "y"})
    path = tmp_path / "w.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(WorldError) as caught:
        load_world(str(path))
    message = str(caught.value)
    assert "$.reflection_room: names unknown room 'pond'" in message
    assert "$.rooms.cellar.objects[1].id: object id 'lamp' is already used at $.rooms.cellar.objects[0].id" in message
    assert "$.residents[1].home: names unknown room 'attic'" in message
    assert "$.residents[1].id: resident id 'ada' is already used at $.residents[0]" in message


def test_invalid_json_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "world.json"
    path.write_text('{"name": "Tiny",\n  "rooms": {,}\n}', encoding="utf-8")
    with pytest.raises(WorldError, match=r"world\.json: not valid JSON: .* at line 2, column 13"):
        load_world(path)
    with pytest.raises(WorldError, match="cannot read the world file"):
        load_world(tmp_path / "missing.json")


def test_changes_are_laid_over_the_world_without_touching_it():
    world = load_world()
    changes = {
        "rooms": {"lantern_loft": {"name": "The Lantern Loft", "description": "Lanterns.", "sense": "Warm light."},
                  "threshold": {"name": "A clash", "description": "Never replaces a shipped room."}},
        "exits": [{"room": "observatory", "direction": "up", "to": "lantern_loft"},
                  {"room": "lantern_loft", "direction": "down", "to": "observatory"},
                  {"room": "threshold", "direction": "north", "to": "lantern_loft"}],
        "objects": [{"room": "lantern_loft", "id": "paper_lantern", "name": "a paper lantern", "description": "Paper."},
                    {"room": "gone_room", "id": "lost", "name": "lost", "description": "Its room is gone."}],
    }
    merged = world.with_changes(changes)
    assert merged.rooms["lantern_loft"].created and merged.rooms["lantern_loft"].exits == {"down": "observatory"}
    assert merged.rooms["observatory"].exits["up"] == "lantern_loft"
    # The shipped exit north of the threshold wins over a clashing change.
    assert merged.rooms["threshold"].exits["north"] == "garden_of_forking_paths"
    assert merged.rooms["threshold"].name == "The Threshold"
    assert [o.id for o in merged.rooms["lantern_loft"].objects] == ["paper_lantern"]
    assert "lost" not in merged.object_ids()
    # The loaded world itself is unchanged.
    assert "lantern_loft" not in world.rooms and "up" not in world.rooms["observatory"].exits


def test_a_custom_world_file_setting_is_used_and_a_broken_one_fails_clearly(wonderland, run_action, tmp_path, wl):
    good = tmp_path / "tiny.json"
    good.write_text(json.dumps(_minimal()), encoding="utf-8")
    runtime = wonderland(config={"packs": {"wonderland": {"world_file": str(good)}}})
    outcome = run_action(runtime, "wonderland.explore")
    assert outcome.ok, outcome.error
    assert wl.kv(runtime, "presence")["room"] == "pool"

    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x"}', encoding="utf-8")
    runtime = wonderland(config={"packs": {"wonderland": {"world_file": str(broken)}}})
    outcome = run_action(runtime, "wonderland.enter")
    assert not outcome.ok
    assert str(broken) in outcome.error and "'entrance' is a required property" in outcome.error


def test_the_shipped_world_file_is_never_modified(wonderland, run_approved):
    source = shipped_world_source()
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    runtime = wonderland()
    outcome = run_approved(runtime, "wonderland.create", {"kind": "room", "name": "The Lantern Loft", "description": "Lanterns."})
    assert outcome.ok, outcome.error
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
