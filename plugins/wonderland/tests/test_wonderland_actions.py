"""Each wonderland action, checked for what it wrote: presence, experiences, overlay, journal."""

from __future__ import annotations

import pytest

from cass_actions_core.problems import UserError
from cass_actions_core.testing.fake_anthropic import usage

from cass_actions_wonderland.handlers import choose_exit
from cass_actions_wonderland.world import load_world


def _request_text(request) -> str:
    """The user text of a recorded Messages API request."""
    content = request.body["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(block.get("text", "") for block in content)


def _system_text(request) -> str:
    system = request.body.get("system", "")
    return system if isinstance(system, str) else " ".join(block.get("text", "") for block in system)


# -- enter -------------------------------------------------------------------------------

def test_enter_creates_the_presence_at_the_entrance_then_resumes_it(wonderland, run_action, wl):
    runtime = wonderland()
    first = run_action(runtime, "wonderland.enter")
    assert first.ok, first.error
    presence = wl.kv(runtime, "presence")
    assert presence["room"] == "threshold" and presence["visits"] == {"threshold": 1} and presence["stays"] == 1
    assert presence["entered_at"] == runtime.clock.now().isoformat()
    assert first.result["data"]["new"] is True and first.cost_usd == 0

    assert run_action(runtime, "wonderland.explore").ok
    moved_to = wl.kv(runtime, "presence")["room"]
    again = run_action(runtime, "wonderland.enter")
    assert again.ok and again.result["data"]["new"] is False
    presence = wl.kv(runtime, "presence")
    # Resumed where it was, not sent back to the entrance; the stay is counted once.
    assert presence["room"] == moved_to != "threshold"
    assert presence["stays"] == 2 and presence["visits"]["threshold"] == 1
    assert "Resumed" in again.result["summary"]


def test_enter_returns_to_the_entrance_when_the_last_room_is_gone(wonderland, run_action, wl):
    runtime = wonderland()
    runtime.store.kv_set("wonderland", "presence", {"room": "demolished_room", "visits": {"demolished_room": 3}, "stays": 1})
    outcome = run_action(runtime, "wonderland.enter")
    assert outcome.ok, outcome.error
    assert wl.kv(runtime, "presence")["room"] == "threshold"
    assert "the last room, 'demolished_room', no longer exists in" in outcome.result["summary"]


# -- explore -----------------------------------------------------------------------------

def test_explore_looks_senses_and_moves_through_an_existing_exit(wonderland, run_action, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.enter").ok
    outcome = run_action(runtime, "wonderland.explore")
    assert outcome.ok, outcome.error
    world = load_world()
    (experience,) = wl.kv(runtime, "experiences")
    details = experience["details"]
    assert experience["kind"] == "exploration" and experience["room"] == "threshold"
    # The exit exists in the room it left, and the presence is now where it leads.
    assert world.rooms["threshold"].exits[details["direction"]] == details["to"]
    presence = wl.kv(runtime, "presence")
    assert presence["room"] == details["to"] and presence["visits"][details["to"]] == 1 and presence["moves"] == 1
    # What "look" and "sense" found is in the record.
    assert "a brass welcome bell" in experience["text"] and "rain that has not fallen" in experience["text"]
    assert details["look"]["exits"] == {"east": "The Clockwork Tea Room", "north": "The Garden of Forking Paths",
                                        "west": "The Library of Echoes"}
    assert f"took the {details['direction']} exit to {world.rooms[details['to']].name}" in experience["text"]
    # Free and honest: no LLM call, no cost.
    assert outcome.cost_usd == 0 and outcome.result["llm"]["calls"] == 0


def test_explore_prefers_the_least_visited_room_and_is_deterministic(wonderland, run_action, wl):
    room = load_world().rooms["threshold"]
    assert choose_exit(room, {}) == ("east", "clockwork_tea_room")  # all unvisited: by direction name
    assert choose_exit(room, {"clockwork_tea_room": 2, "library_of_echoes": 1}) == ("north", "garden_of_forking_paths")
    assert choose_exit(room, {"clockwork_tea_room": 1, "garden_of_forking_paths": 1, "library_of_echoes": 1}) == (
        "east", "clockwork_tea_room")

    paths = []
    for _ in range(2):
        runtime = wonderland()
        for _step in range(4):
            assert run_action(runtime, "wonderland.explore").ok
        paths.append([(e["details"]["from"], e["details"]["to"]) for e in wl.kv(runtime, "experiences")])
    assert paths[0] == paths[1]
    assert paths[0][0] == ("threshold", "clockwork_tea_room")
    # From the tea room the threshold (already visited) is not chosen while unvisited rooms remain.
    assert paths[0][1][1] != "threshold"


def test_explore_without_enter_enters_first_and_says_so(wonderland, run_action, wl):
    runtime = wonderland()
    outcome = run_action(runtime, "wonderland.explore")
    assert outcome.ok and "had not entered yet" in outcome.result["summary"]
    assert wl.kv(runtime, "presence")["visits"]["threshold"] == 1


# -- reflect -----------------------------------------------------------------------------

def test_reflect_offline_moves_to_the_pool_and_records_a_labelled_reflection(wonderland, run_action, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    (exploration,) = wl.kv(runtime, "experiences")
    outcome = run_action(runtime, "wonderland.reflect", focus="patience with open questions")
    assert outcome.ok, outcome.error
    assert wl.kv(runtime, "presence")["room"] == "reflection_pool"
    reflection = wl.kv(runtime, "experiences")[-1]
    assert reflection["kind"] == "reflection" and reflection["room"] == "reflection_pool"
    assert reflection["text"].startswith("[offline]")
    assert reflection["details"]["reflected_on"] == [exploration["id"]]
    assert reflection["details"]["focus"] == "patience with open questions"
    assert wl.kv(runtime, "reflected") == [exploration["id"]]
    assert outcome.result["llm"]["calls"] == 1 and outcome.cost_usd > 0
    assert outcome.result["insights"] == []  # an offline digest is not an insight

    # The same experience is not reflected on twice: with no focus there is nothing to do.
    again = run_action(runtime, "wonderland.reflect")
    assert again.ok and again.cost_usd == 0 and again.result["llm"]["calls"] == 0
    assert "Nothing to reflect on" in again.result["summary"]


def test_reflect_through_the_messages_api(cass_runtime, run_action, fake_anthropic, wl):
    from cass_actions_core.workspace import seed_demo_workspace

    runtime = cass_runtime(load=["wonderland"], anthropic=fake_anthropic)
    seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
    assert run_action(runtime, "wonderland.explore").ok
    exploration = wl.kv(runtime, "experiences")[0]
    reply = "The pool gave back the shape of my morning: a doorway, a tea party, and my own hurry."
    fake_anthropic.reply_text(reply, usage=usage(400, 60))
    outcome = run_action(runtime, "wonderland.reflect", focus="what makes a day well spent")
    assert outcome.ok, outcome.error
    reflection = wl.kv(runtime, "experiences")[-1]
    assert reflection["text"] == reply
    assert outcome.result["insights"] == ["The pool gave back the shape of my morning: a doorway, a tea party, and my own hurry."]
    (request,) = fake_anthropic.message_requests
    sent = _request_text(request)
    assert exploration["title"] in sent and "Focus: what makes a day well spent" in sent
    assert "You are Cass" in _system_text(request)  # the name from the demo self model
    assert request.body["max_tokens"] == 600
    assert outcome.cost_usd > 0


def test_reflect_sees_experiences_already_journaled(wonderland, run_action, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    assert run_action(runtime, "wonderland.journal_experience").ok
    assert wl.kv(runtime, "experiences") == []
    outcome = run_action(runtime, "wonderland.reflect")
    assert outcome.ok and outcome.result["llm"]["calls"] == 1
    assert len(wl.kv(runtime, "experiences")[-1]["details"]["reflected_on"]) == 1


# -- create ------------------------------------------------------------------------------

def test_create_an_object_from_params_needs_approval_and_writes_the_overlay(wonderland, run_action, run_approved, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.enter").ok
    outcome = run_approved(runtime, "wonderland.create",
                           {"kind": "object", "name": "a paper lantern", "description": "A lantern folded from a journal page.",
                            "sense": "It glows brighter near unanswered questions.", "room": "observatory"})
    assert outcome.ok, outcome.error
    assert outcome.cost_usd == 0 and outcome.result["llm"]["calls"] == 0  # given in full: no LLM call
    (obj,) = wl.kv(runtime, "world_changes")["objects"]
    assert obj["id"] == "paper_lantern" and obj["room"] == "observatory" and obj["inspired"] is False
    assert obj["sense"] == "It glows brighter near unanswered questions."
    creation = wl.kv(runtime, "experiences")[-1]
    assert creation["kind"] == "creation" and creation["details"]["created"]["id"] == "paper_lantern"
    page = (runtime.workspace / "wonderland" / "creations.md").read_text("utf-8")
    assert "**a paper lantern** (`paper_lantern`, in `observatory`" in page
    # The object is part of the world from now on: explore sees it in the observatory.
    merged = load_world().with_changes(wl.kv(runtime, "world_changes"))
    assert "paper_lantern" in [o.id for o in merged.rooms["observatory"].objects]


def test_create_a_room_adds_exits_both_ways(wonderland, run_action, run_approved, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.enter").ok
    outcome = run_approved(runtime, "wonderland.create",
                           {"kind": "room", "name": "The Lantern Loft", "description": "A loft hung with lanterns.", "direction": "south"})
    assert outcome.ok, outcome.error
    changes = wl.kv(runtime, "world_changes")
    assert changes["rooms"]["lantern_loft"]["from_room"] == "threshold"
    assert {(e["room"], e["direction"], e["to"]) for e in changes["exits"]} == {
        ("threshold", "south", "lantern_loft"), ("lantern_loft", "north", "threshold")}
    merged = load_world().with_changes(changes)
    assert merged.rooms["threshold"].exits["south"] == "lantern_loft" and "lantern_loft" in merged.paths_from("threshold")

    # A direction already taken is refused with a clear message and nothing is written.
    clash = run_approved(runtime, "wonderland.create", {"kind": "room", "name": "Another", "description": "x", "direction": "north"})
    assert not clash.ok
    assert "already has a 'north' exit" in clash.error and "garden_of_forking_paths" in clash.error
    assert list(wl.kv(runtime, "world_changes")["rooms"]) == ["lantern_loft"]


def test_create_params_are_checked_against_the_schema(wonderland):
    import asyncio

    runtime = wonderland()
    with pytest.raises(UserError, match="kind"):
        asyncio.run(runtime.run_action("wonderland.create", {"name": "a lantern"}))
    with pytest.raises(UserError, match="should not be valid"):
        asyncio.run(runtime.run_action("wonderland.create", {"kind": "object", "name": "x", "description": "y", "direction": "up"}))


def test_create_inspired_object_offline_is_built_from_the_experiences(wonderland, run_action, run_approved, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    exploration = wl.kv(runtime, "experiences")[0]
    outcome = run_approved(runtime, "wonderland.create")
    assert outcome.ok, outcome.error
    (obj,) = wl.kv(runtime, "world_changes")["objects"]
    assert obj["inspired"] is True and obj["room"] == exploration["details"]["to"]
    assert obj["name"] == "[offline] a keepsake of the Threshold" and obj["id"] == "keepsake_of_threshold"
    assert obj["description"].startswith("[offline]") and exploration["title"] in obj["description"]
    assert outcome.result["llm"]["calls"] == 1


def test_create_inspired_object_through_the_messages_api(cass_runtime, run_action, run_approved, fake_anthropic, wl):
    runtime = cass_runtime(load=["wonderland"], anthropic=fake_anthropic)
    from cass_actions_core.planning import DayPlan

    day = runtime.clock.today()
    runtime.store_plan(day, DayPlan(day, {}, source="file", reason="empty plan: the test queues its own units"))
    assert run_action(runtime, "wonderland.explore").ok
    exploration = wl.kv(runtime, "experiences")[0]
    fake_anthropic.reply_json({"name": "a teacup of rain", "description": "A cup that is always about to be full.",
                               "sense": "It smells of the rain that never falls at the Threshold."})
    outcome = run_approved(runtime, "wonderland.create")
    assert outcome.ok, outcome.error
    (obj,) = wl.kv(runtime, "world_changes")["objects"]
    assert (obj["id"], obj["name"]) == ("teacup_of_rain", "a teacup of rain")
    assert obj["sense"] == "It smells of the rain that never falls at the Threshold."
    (request,) = fake_anthropic.message_requests
    assert exploration["title"] in _request_text(request)
    assert request.body["output_config"]["format"]["type"] == "json_schema"


# -- socialize ---------------------------------------------------------------------------

def test_socialize_offline_goes_to_the_nearest_resident_and_records_the_encounter(wonderland, run_action, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.enter").ok
    outcome = run_action(runtime, "wonderland.socialize")
    assert outcome.ok, outcome.error
    # Three residents are one step from the threshold; the tie goes to the id first in order.
    (encounter,) = wl.kv(runtime, "experiences")
    assert encounter["kind"] == "encounter" and encounter["details"]["resident"] == "marrow"
    assert encounter["details"]["path"] == ["threshold", "garden_of_forking_paths"]
    assert encounter["text"].startswith("[offline] Marrow said: \u201cMind the basil.")
    assert encounter["text"].count("[offline]") == 1
    assert wl.kv(runtime, "presence")["room"] == "garden_of_forking_paths"
    assert wl.kv(runtime, "acquaintances")["marrow"]["meetings"] == 1
    assert outcome.result["llm"]["calls"] == 1

    # A named resident is sought out, however far.
    far = run_action(runtime, "wonderland.socialize", {"resident": "orrery"})
    assert far.ok, far.error
    assert wl.kv(runtime, "presence")["room"] == "observatory"
    assert wl.kv(runtime, "experiences")[-1]["details"]["path"][-1] == "observatory"

    unknown = run_action(runtime, "wonderland.socialize", {"resident": "nobody"})
    assert not unknown.ok and "unknown resident 'nobody'" in unknown.error and "thessaly" in unknown.error


def test_socialize_through_the_messages_api(cass_runtime, run_action, fake_anthropic, wl):
    runtime = cass_runtime(load=["wonderland"], anthropic=fake_anthropic)
    assert run_action(runtime, "wonderland.explore").ok  # threshold -> tea room, where Quill lives
    exploration = wl.kv(runtime, "experiences")[0]
    exchange = "Quill: Sit, sit!\nMe: I came from the Threshold.\nQuill: Then you are right on time."
    fake_anthropic.reply_text(exchange)
    outcome = run_action(runtime, "wonderland.socialize")
    assert outcome.ok, outcome.error
    encounter = wl.kv(runtime, "experiences")[-1]
    assert encounter["details"]["resident"] == "quill" and encounter["details"]["path"] == ["clockwork_tea_room"]
    assert encounter["text"].endswith(exchange)
    sent = _request_text(fake_anthropic.message_requests[0])
    assert "Quill greets me:" in sent and exploration["title"] in sent and "Times we have met before: 0" in sent


# -- journal_experience ------------------------------------------------------------------

def test_journal_offline_writes_a_section_and_clears_the_buffer_once(wonderland, run_action, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    exploration = wl.kv(runtime, "experiences")[0]
    outcome = run_action(runtime, "wonderland.journal_experience")
    assert outcome.ok, outcome.error
    path = wl.journal_path(runtime)
    text = path.read_text("utf-8")
    assert text.startswith(f"# Wonderland journal \u2014 {runtime.clock.today().isoformat()}")
    assert "Cass's experiences in Wonderland" in text
    assert f"**{exploration['title']}**" in text and "\u00b7 Exploration \u00b7 The Threshold" in text
    assert text.count("<!-- wonderland-flush ") == 1
    assert "[offline]" in text  # the narrative, labelled
    assert wl.kv(runtime, "experiences") == []
    assert [e["id"] for e in wl.kv(runtime, "journaled")] == [exploration["id"]]
    assert outcome.result["artifacts"][0]["path"] == f"wonderland/journal/{runtime.clock.today().isoformat()}.md"

    # Again with no new experiences: nothing written, nothing spent.
    again = run_action(runtime, "wonderland.journal_experience")
    assert again.ok and again.cost_usd == 0 and again.result["llm"]["calls"] == 0
    assert "Nothing to journal" in again.result["summary"]
    assert path.read_text("utf-8") == text


def test_journal_through_the_messages_api(cass_runtime, run_action, fake_anthropic, wl):
    runtime = cass_runtime(load=["wonderland"], anthropic=fake_anthropic)
    assert run_action(runtime, "wonderland.explore").ok
    exploration = wl.kv(runtime, "experiences")[0]
    narrative = "I stepped through the pale doorway and followed the smell of bergamot east."
    fake_anthropic.reply_text(narrative)
    outcome = run_action(runtime, "wonderland.journal_experience")
    assert outcome.ok, outcome.error
    text = wl.journal_path(runtime).read_text("utf-8")
    assert narrative in text and exploration["title"] in text
    sent = _request_text(fake_anthropic.message_requests[0])
    assert exploration["title"] in sent and "Experiences:" in sent


def test_journal_keeps_the_entries_when_the_narrative_call_fails(cass_runtime, run_action, fake_anthropic, wl):
    runtime = cass_runtime(load=["wonderland"], anthropic=fake_anthropic)
    assert run_action(runtime, "wonderland.explore").ok
    fake_anthropic.reply_error(400, "invalid_request_error", "something about the request")
    outcome = run_action(runtime, "wonderland.journal_experience")
    assert outcome.ok, outcome.error
    text = wl.journal_path(runtime).read_text("utf-8")
    assert "*No narrative: LLM call stopped (bad_request)" in text and "\u00b7 Exploration \u00b7" in text
    assert outcome.result["data"]["narrative_error"].startswith("LLM call stopped (bad_request)")
    assert wl.kv(runtime, "experiences") == []


def test_journal_without_narrative_setting_makes_no_call(wonderland, run_action, wl):
    runtime = wonderland(config={"packs": {"wonderland": {"journal_narrative": False}}})
    assert run_action(runtime, "wonderland.explore").ok
    outcome = run_action(runtime, "wonderland.journal_experience")
    assert outcome.ok and outcome.result["llm"]["calls"] == 0 and outcome.cost_usd == 0
    text = wl.journal_path(runtime).read_text("utf-8")
    assert "[offline]" not in text and "\u00b7 Exploration \u00b7" in text
