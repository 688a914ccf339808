"""The [packs.memory] settings: declared in settings.schema.json, consistent with the actions' call caps."""

from __future__ import annotations

import json
from importlib.resources import files

from cass_actions_core.catalogue import build_catalogue
from cass_actions_core.config import Config

from cass_actions_memory.conversations import MAX_CONVERSATIONS_PER_RUN, MAX_TITLES_PER_RUN


def _doc(name: str) -> dict:
    return json.loads((files("cass_actions_memory") / name).read_text("utf-8"))


def test_per_run_settings_never_exceed_the_actions_call_caps():
    actions = {a["id"]: a for a in _doc("actions.json")["actions"]}
    props = _doc("settings.schema.json")["properties"]
    idle = actions["memory.summarize_idle_conversations"]
    titles = actions["memory.generate_conversation_title"]
    assert props["max_conversations_per_run"]["maximum"] == MAX_CONVERSATIONS_PER_RUN == idle["max_llm_calls"]
    assert props["max_titles_per_run"]["maximum"] == MAX_TITLES_PER_RUN == titles["max_llm_calls"]
    # Each call may cost up to what one memory.summarize_conversation run may (its max_cost_usd).
    one = actions["memory.summarize_conversation"]["max_cost_usd"]
    assert idle["max_cost_usd"] >= idle["max_llm_calls"] * one - 1e-9


def test_every_setting_the_pack_reads_is_declared():
    import re
    from pathlib import Path

    import cass_actions_memory

    source = "\n".join(p.read_text("utf-8") for p in Path(cass_actions_memory.__file__).parent.glob("*.py"))
    read = set(re.findall(r'setting_int\(ctx\.settings, "([a-z_]+)"', source))
    declared = _doc("settings.schema.json")
    assert read == set(declared["properties"]) and declared["additionalProperties"] is False


def _problems(settings: dict) -> list[tuple[str, str | None]]:
    config = Config.from_dict({"plugins": {"load": ["memory"]}, "packs": {"memory": settings}})
    catalogue = build_catalogue(config)
    return sorted((p.code, p.path) for p in catalogue.problems if p.pack == "memory")


def test_bad_settings_are_reported_with_their_key_path():
    assert _problems({"max_conversations_per_run": 5, "prompt_chars": 8000}) == []
    assert _problems({"max_conversations_per_run": 50}) == [
        ("invalid-pack-settings", "$.packs.memory.max_conversations_per_run")]
    assert _problems({"idle_minute": 10}) == [("invalid-pack-settings", "$.packs.memory")]
    assert _problems({"min_messages": "five"}) == [("invalid-pack-settings", "$.packs.memory.min_messages")]


def test_the_run_time_getter_refuses_more_conversations_than_calls(memory_runtime, run_action):
    runtime = memory_runtime()
    runtime.config.packs["memory"] = {"max_conversations_per_run": 6}  # past the schema check, as a second line
    outcome = run_action(runtime, "memory.summarize_idle_conversations")
    assert not outcome.ok and outcome.cost_usd == 0
    assert outcome.error == "setting [packs.memory] max_conversations_per_run must be between 1 and 5, got 6"
