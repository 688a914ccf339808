"""The catalogue through the Python API: every check of 'startup rejects a bad catalogue'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import json
import pytest

from cass_actions_core.catalogue import build_catalogue
from cass_actions_core.config import DEFAULT_ALLOCATIONS, Config, load_config
from cass_actions_core.problems import CatalogueError, UserError
from support import HandPack, action_def, template_def


def build(*packs: tuple[str, Any], config: Config | None = None, files: tuple[Path, ...] = ()):
    return build_catalogue(config or Config(), plugins=packs, template_files=files, entry_points=False)


def codes(catalogue) -> list[str]:
    return [p.code for p in catalogue.problems]


def test_clean_catalogue_has_no_problems_and_derives_template_cost():
    pack = HandPack(
        [action_def("demo.first", estimated_cost_usd=0.02, default_duration_minutes=5),
         action_def("demo.second", estimated_cost_usd=0.03, default_duration_minutes=10)],
        [template_def("demo_block", ["demo.first", "demo.second"])],
    )
    cat = build(("demo", pack))
    cat.check()
    assert {a for a, act in cat.actions.items() if act.pack == "demo"} == {"demo.first", "demo.second"}
    tpl = cat.template("demo_block").template
    assert cat.template_cost(tpl) == pytest.approx(0.05)
    assert cat.template_duration(tpl) == 15
    assert cat.actions["demo.first"].pack == "demo"
    record = next(p for p in cat.plugins if p.name == "demo")
    assert (record.actions, record.templates) == (2, 1)
    assert record.hooks == ["register_actions", "register_templates"]


def test_b4_template_naming_unregistered_action_is_rejected_with_closest_id():
    pack = HandPack([action_def("journal.generate_daily")],
                    [template_def("memory_maintenance", ["journal.generate_daily", "journal.generate_dialy"])])
    cat = build(("journal", pack))
    with pytest.raises(CatalogueError) as info:
        cat.check()
    (problem,) = info.value.problems
    assert problem.code == "unknown-action"
    assert problem.item_id == "memory_maintenance"
    assert problem.path == "$.templates[0].steps[1].action"
    assert "step 2" in problem.message and "journal.generate_dialy" in problem.message
    assert "journal.generate_daily" in (problem.hint or "")
    assert "memory_maintenance" in str(info.value)


def test_duplicate_action_ids_across_two_packs_are_reported_against_both_packs():
    cat = build(("alpha", HandPack([action_def("shared.thing")])), ("beta", HandPack([action_def("shared.thing")])))
    dup = [p for p in cat.problems if p.code == "duplicate-action"]
    assert sorted(p.pack for p in dup) == ["alpha", "beta"]
    assert all("'alpha'" in p.message and "'beta'" in p.message and p.item_id == "shared.thing" for p in dup)
    # Neither owns the namespace, so each is also told its id is outside its own.
    assert sorted(p.pack for p in cat.problems if p.code == "foreign-namespace") == ["alpha", "beta"]


@pytest.mark.parametrize("order", [("owner", "intruder"), ("intruder", "owner")])
def test_the_namespace_owner_keeps_a_clashing_id_whatever_the_load_order(order: tuple[str, str]):
    async def owner_handler(ctx):
        return {"summary": "owner"}

    async def intruder_handler(ctx):
        return {"summary": "intruder"}

    packs = {
        "owner": HandPack([action_def("owner.greet", name="The owner's")], handlers={"owner.greet": owner_handler}, handle_all=False),
        "intruder": HandPack([action_def("owner.greet", name="The intruder's")], handlers={"owner.greet": intruder_handler},
                             handle_all=False),
    }
    cat = build(*((name, packs[name]) for name in order))
    kept = cat.actions["owner.greet"]
    assert (kept.pack, kept.definition.name, kept.handler) == ("owner", "The owner's", owner_handler)
    assert sorted(p.pack for p in cat.problems if p.code == "duplicate-action") == ["intruder", "owner"]
    (foreign,) = [p for p in cat.problems if p.code == "foreign-namespace"]
    assert foreign.pack == "intruder" and foreign.hint == "rename it to 'intruder.greet'"
    with pytest.raises(CatalogueError):
        cat.check()


def test_an_action_outside_its_packs_namespace_is_a_problem_naming_the_file_and_the_fix():
    cat = build(("hello", HandPack([action_def("hello.ok"), action_def("greetings.wave")])))
    (problem,) = cat.problems
    assert (problem.code, problem.pack, problem.item_id, problem.path) == ("foreign-namespace", "hello", "greetings.wave",
                                                                           "$.actions[1].id")
    assert "'hello.'" in problem.message and problem.hint == "rename it to 'hello.wave'"


def test_handler_without_definition_and_definition_without_handler_are_rejected():
    async def orphan(ctx):
        return None

    pack = HandPack([action_def("demo.defined")], handlers={"demo.orphan": orphan}, handle_all=False)
    cat = build(("demo", pack))
    by_code = {p.code: p for p in cat.problems}
    assert by_code["missing-handler"].item_id == "demo.defined"
    assert by_code["handler-without-definition"].item_id == "demo.orphan"
    assert "orphan" in by_code["handler-without-definition"].message
    with pytest.raises(CatalogueError):
        cat.check()


def test_f7_handler_signature_is_checked_at_registration():
    def not_async(ctx):
        return None

    async def spread(**context):
        return None

    pack = HandPack([action_def("demo.one"), action_def("demo.two")],
                    handlers={"demo.one": not_async, "demo.two": spread}, handle_all=False)
    cat = build(("demo", pack))
    sig = [p for p in cat.problems if p.code == "handler-signature"]
    assert {p.item_id for p in sig} == {"demo.one", "demo.two"}
    assert any("async def" in p.message for p in sig)
    assert any("exactly one argument" in p.message for p in sig)
    # Where the handler is: a function registered directly has no metadata file to name.
    assert {p.file for p in sig} == {f"{__file__}:{not_async.__code__.co_firstlineno}",
                                     f"{__file__}:{spread.__code__.co_firstlineno}"}
    # One mistake, one problem: a refused handler is not also reported as missing.
    assert sorted(p.code for p in cat.problems) == ["handler-signature", "handler-signature"]


def test_step_params_violating_the_action_params_schema_are_rejected():
    params = {"type": "object", "additionalProperties": False, "required": ["days"],
              "properties": {"days": {"type": "integer", "minimum": 1}}}
    pack = HandPack([action_def("demo.review", params=params)],
                    [template_def("weekly", [{"action": "demo.review", "params": {"days": 0}}]),
                     template_def("weekly_two", [{"action": "demo.review", "params": {"weeks": 2}}])])
    cat = build(("demo", pack))
    bad = [p for p in cat.problems if p.code == "invalid-params"]
    assert [(p.item_id, p.path) for p in bad] == [
        ("weekly", "$.templates[0].steps[0].params.days"),
        ("weekly_two", "$.templates[1].steps[0].params"),
        ("weekly_two", "$.templates[1].steps[0].params"),
    ]
    assert "minimum" in bad[0].message


def test_a_params_schema_that_cannot_be_used_is_one_problem_per_fault_and_its_steps_are_not_checked():
    unresolved = {"type": "object", "properties": {"folder": {"$ref": "#/$defs/nowhere"}}}
    mistyped = {"type": "object", "properties": {"folder": {"type": "strng", "minLength": "two"}}}
    pack = HandPack([action_def("demo.count", params=unresolved), action_def("demo.tidy", params=mistyped)],
                    [template_def("both", [{"action": "demo.count", "params": {"folder": "x"}},
                                           {"action": "demo.tidy", "params": {"folder": "x"}}])])
    cat = build(("demo", pack))  # compiling the unresolved $ref used to raise out of the build
    bad = [(p.code, p.item_id, p.path) for p in cat.problems]
    assert bad == [
        ("invalid-params-schema", "demo.count", "$.actions[0].params.properties.folder.$ref"),
        ("invalid-params-schema", "demo.tidy", "$.actions[1].params.properties.folder.minLength"),
        ("invalid-params-schema", "demo.tidy", "$.actions[1].params.properties.folder.type"),
    ]
    assert "Pointer '/$defs/nowhere' does not exist" in cat.problems[0].message
    assert cat.invalid_params_schemas == {"demo.count", "demo.tidy"}


def test_invalid_metadata_names_the_file_and_json_path(tmp_path: Path):
    meta = tmp_path / "demo_actions.json"
    meta.write_text(json.dumps({"actions": [action_def("demo.ok"), action_def("demo.bad", tier=7)]}))
    from cass_actions_core import hookimpl

    class FilePack:
        @hookimpl
        def register_actions(self, register):
            register.load(meta)

    cat = build(("demo", FilePack()))
    (problem,) = cat.problems
    assert problem.code == "schema"
    assert problem.file == str(meta)
    assert problem.path == "$.actions[1].tier"
    assert problem.item_id == "demo.bad"


def test_malformed_json_metadata_names_the_file_and_position(tmp_path: Path):
    meta = tmp_path / "broken.json"
    meta.write_text('{"actions": [\n  {"id": "demo.x",}\n]}')
    from cass_actions_core import hookimpl

    class FilePack:
        @hookimpl
        def register_actions(self, register):
            register.load(meta)

    cat = build(("demo", FilePack()))
    (problem,) = cat.problems
    assert problem.code == "invalid-json" and problem.file == str(meta)
    assert "line 2" in problem.message

    class FilePackWithTemplates(FilePack):
        @hookimpl
        def register_templates(self, register):
            register.load({"templates": [template_def("demo_block", ["demo.x"])]})

    cat = build(("demo", FilePackWithTemplates()))
    assert [p.code for p in cat.problems] == ["invalid-json", "unknown-action"]
    # The step's problem points at the unread file, not at a near miss among other packs' actions.
    assert cat.problems[1].hint == ("pack 'demo' registered no actions from its metadata, which could not be read: "
                                    "see that problem first")


def test_f10_action_without_llm_must_not_carry_a_cost_estimate():
    cat = build(("demo", HandPack([action_def("demo.walk", uses_llm=False, tier=1, estimated_cost_usd=0.05, category="system")])))
    assert "cost-without-llm" in codes(cat)


def test_template_cannot_type_its_own_cost_estimate(tmp_path: Path):
    # F10: cost and duration are derived from the steps; the schema rejects a typed one.
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"templates": [template_def("mine", ["demo.a"], estimated_cost_usd=0.2)]}))
    cat = build(("demo", HandPack([action_def("demo.a")])), files=(path,))
    (problem,) = cat.problems
    assert problem.code == "schema" and problem.path == "$.templates[0]"
    assert "estimated_cost_usd" in problem.message


def test_f1_category_with_no_budget_allocation_is_rejected(tmp_path: Path):
    config_file = tmp_path / "c.toml"
    config_file.write_text("[budget.allocations]\nreflection = 0.1\n")
    cat = build(("demo", HandPack([action_def("demo.a"), action_def("demo.b", category="crafts")])),
                config=load_config(config_file))
    (problem,) = cat.problems
    assert problem.code == "unbudgeted-category" and problem.item_id == "crafts"
    assert problem.file == str(config_file.resolve())
    assert "demo.b" in problem.message


def test_allocations_in_a_config_file_adjust_the_default_table_category_by_category(tmp_path: Path):
    config_file = tmp_path / "c.toml"
    config_file.write_text("[budget.allocations]\nresearch = 0.05\ncrafts = 0.1\n")
    allocations = load_config(config_file).budget.allocations
    assert allocations == {**DEFAULT_ALLOCATIONS, "research": 0.05, "crafts": 0.1}
    # Over 1.0 with the inherited shares: the message lists them and says how to make room.
    config_file.write_text("[budget.allocations]\ncrafts = 0.2\n")
    with pytest.raises(UserError) as info:
        load_config(config_file)
    message = str(info.value)
    assert str(config_file.resolve()) in message and "add up to 1.20" in message
    assert "crafts 0.2," in message and "research 0.18 (default)" in message and "set a category you do not use to 0" in message


def test_a_used_category_with_no_money_is_a_warning_naming_the_key_and_what_never_runs(tmp_path: Path):
    config_file = tmp_path / "c.toml"
    config_file.write_text("[budget.allocations]\ncreative = 0\n")
    pack = HandPack([action_def("demo.a"), action_def("demo.b", category="creative")], [template_def("make", ["demo.b"], category="creative")])
    cat = build(("demo", pack), config=load_config(config_file))
    cat.check()  # allowed: zero is a choice
    (warning,) = cat.warnings
    assert (warning.code, warning.item_id, warning.path) == ("zero-budget", "creative", "$.budget.allocations.creative")
    assert warning.file == str(config_file.resolve()) and "never plans its 1 template(s): make" in warning.message


def test_the_planners_category_needs_an_allocation_unless_the_planner_is_off(tmp_path: Path):
    config_file = tmp_path / "c.toml"
    config_file.write_text('[planner]\ncategory = "thinking"\n')
    pack = ("demo", HandPack([action_def("demo.a")]))
    (problem,) = build(pack, config=load_config(config_file)).problems
    assert problem.code == "unbudgeted-category" and problem.item_id == "thinking"
    assert "$.planner.category" in problem.message
    config_file.write_text('[planner]\ncategory = "thinking"\nenabled = false\n')
    assert build(pack, config=load_config(config_file)).problems == []


def test_user_template_files_from_config_are_checked(tmp_path: Path):
    (tmp_path / "t.json").write_text(json.dumps({"templates": [template_def("mine", ["demo.aa"])]}))
    config_file = tmp_path / "c.toml"
    config_file.write_text('[plugins]\ntemplates = ["t.json"]\n')
    cat = build(("demo", HandPack([action_def("demo.a")])), config=load_config(config_file))
    (problem,) = cat.problems
    assert problem.code == "unknown-action" and problem.file == str((tmp_path / "t.json").resolve())
    assert "demo.a" in (problem.hint or "")


def test_pack_raising_inside_a_hook_is_reported_and_rolled_back():
    from cass_actions_core import hookimpl

    class Exploding:
        @hookimpl
        def register_actions(self, register):
            register.load({"actions": [action_def("boom.half")]})
            raise RuntimeError("metadata server unreachable")

    cat = build(("boom", Exploding()), ("demo", HandPack([action_def("demo.a")])))
    record = next(p for p in cat.plugins if p.name == "boom")
    assert record.status == "error" and "RuntimeError: metadata server unreachable" in (record.error or "")
    assert "boom.half" not in cat.actions and "demo.a" in cat.actions
    cat.check(strict=False)
    with pytest.raises(CatalogueError) as info:
        cat.check(strict=True)
    assert info.value.problems[0].code == "pack-load"


def test_hook_name_typo_is_reported_not_silently_ignored():
    from cass_actions_core import hookimpl

    class Typo:
        @hookimpl
        def register_action(self, register):  # missing the final "s"
            pass

    cat = build(("typo", Typo()))
    record = next(p for p in cat.plugins if p.name == "typo")
    assert record.status == "error" and "register_action" in (record.error or "")


def test_every_problem_is_reported_at_once():
    pack = HandPack([action_def("demo.a"), action_def("demo.a2", category="nowhere")],
                    [template_def("t1", ["demo.b"]), template_def("t2", ["demo.a"], category="elsewhere")])
    cat = build(("demo", pack))
    assert sorted(codes(cat)) == ["unbudgeted-category", "unbudgeted-category", "unknown-action"]
    with pytest.raises(CatalogueError) as info:
        cat.check()
    assert str(info.value).count("\n  - ") == 3


def test_installed_pack_raising_importerror_is_reported_through_the_api(site: Path, monkeypatch):
    from support import make_dist

    make_dist(site, "cass-actions-fine", ep_name="fine", actions=[action_def("fine.act")])
    make_dist(site, "cass-actions-broken", version="0.9.0", ep_name="broken",
              module_source="import a_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(site))
    cat = build_catalogue(Config.from_dict({"plugins": {"load": ["fine", "broken"]}}))
    record = next(p for p in cat.plugins if p.name == "broken")
    assert (record.status, record.distribution, record.version) == ("error", "cass-actions-broken", "0.9.0")
    assert record.error == "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"
    assert "fine.act" in cat.actions
    cat.check(strict=False)
    with pytest.raises(CatalogueError) as info:
        cat.check(strict=True)
    assert "cass-actions-broken" in str(info.value) and "pack-load" == info.value.problems[0].code


def test_pack_settings_are_checked_against_the_schema_the_pack_declares(tmp_path: Path):
    from cass_actions_core import hookimpl

    class SettingsPack(HandPack):
        @hookimpl
        def register_actions(self, register):
            super().register_actions(register)
            register.settings({"type": "object", "additionalProperties": False,
                               "properties": {"max_turns": {"type": "integer", "minimum": 1, "maximum": 10}}})

    config_file = tmp_path / "c.toml"
    config_file.write_text("[packs.demo]\nmax_turns = 50\nturbo = true\n")
    cat = build(("demo", SettingsPack([action_def("demo.a")])), config=load_config(config_file))
    found = sorted((p.code, p.path) for p in cat.problems)
    assert found == [("invalid-pack-settings", "$.packs.demo"), ("invalid-pack-settings", "$.packs.demo.max_turns")]
    assert all(p.file == str(config_file.resolve()) for p in cat.problems)
    config_file.write_text("[packs.demo]\nmax_turns = 4\n")
    assert build(("demo", SettingsPack([action_def("demo.a")])), config=load_config(config_file)).problems == []


def test_settings_for_a_pack_that_is_not_installed_are_a_warning_with_the_closest_name(tmp_path: Path):
    config_file = tmp_path / "c.toml"
    config_file.write_text("[packs.demo]\nmax_turns = 4\n\n[packs.dmeo]\nmax_turns = 5\n\n[packs.elsewhere]\nx = 1\n")
    cat = build(("demo", HandPack([action_def("demo.a")])), config=load_config(config_file))
    assert cat.problems == []  # a warning: the config may be shared with a machine that has the pack
    found = [(w.code, w.path, w.hint) for w in cat.warnings if w.code == "unknown-pack-settings"]
    assert found == [("unknown-pack-settings", "$.packs.dmeo", "did you mean [packs.demo]?"),
                     ("unknown-pack-settings", "$.packs.elsewhere", "run 'cass-actions plugins'")]


# -- issue 9, finding 8: a cooldown past any date, JSON nested past any need --------------

def test_a_cooldown_longer_than_a_year_is_a_problem_not_an_overflow(tmp_path: Path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"templates": [template_def("forever", ["demo.a"], cooldown="99999999999999999999d"),
                                              template_def("yearly", ["demo.a"], cooldown="366d")]}))
    cat = build(("demo", HandPack([action_def("demo.a")])), files=(path,))
    (problem,) = cat.problems
    assert problem.item_id == "forever" and problem.path == "$.templates[0].cooldown"
    assert problem.message == "cooldown '99999999999999999999d' is longer than the most allowed, 366d"


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_json_is_a_problem_not_a_recursion_error(tmp_path: Path, depth: int):
    path = tmp_path / "deep.json"
    path.write_text('{"templates": ' + "[" * depth + "]" * depth + "}")
    cat = build(("demo", HandPack([action_def("demo.a")])), files=(path,))
    (problem,) = cat.problems
    assert problem.code == "invalid-json" and problem.file == str(path)
    assert problem.message == "nested too deeply (more than 64 levels)"


# -- issue 10: checking a catalogue builds no template it does not use -----------------------

def test_templates_read_from_a_file_are_built_on_first_use_and_equal_an_eager_build(tmp_path: Path, monkeypatch):
    from cass_actions_core.models import Template
    from cass_actions_core.registrars import _schema_admits_only_model_fields

    assert _schema_admits_only_model_fields()  # the shipped schema admits exactly the dataclasses' fields
    raw = template_def("from_file", [{"action": "demo.a", "params": {}}], cooldown="4h",
                       preferred_windows=[{"start_hour": 22, "end_hour": 2, "weight": 2.0}], tags=["growth"])
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"templates": [raw]}))
    built: list[str] = []
    original = Template.from_dict.__func__

    def counting(cls, doc):
        built.append(doc["id"])
        return original(cls, doc)

    monkeypatch.setattr(Template, "from_dict", classmethod(counting))
    inline = template_def("inline", ["demo.a"])
    cat = build(("demo", HandPack([action_def("demo.a")], [inline])), files=(path,))
    assert cat.problems == [] and built == ["inline"]  # inline metadata (the pack's own object) is built at once
    entry = cat.template("from_file")
    assert entry.id == "from_file" and entry.category == "reflection" and built == ["inline"]
    assert entry.template == original(Template, raw) and built == ["inline", "from_file"]
    assert entry.template is entry.template and built == ["inline", "from_file"]  # built once
    assert cat.template_cost(entry.template) == 0.02 and "reflection" in cat.categories()


@pytest.mark.parametrize(("depth", "ok"), [(64, True), (65, False)])
def test_json_nested_to_the_limit_is_read_and_one_level_more_is_refused(tmp_path: Path, depth: int, ok: bool):
    from cass_actions_core.problems import JSONTextError, parse_json

    text = "[" * depth + "]" * depth
    if ok:
        assert parse_json(text) is not None
    else:
        with pytest.raises(JSONTextError, match="more than 64 levels"):
            parse_json(text)
    wide = json.dumps({"a": [{"b": [1, {"c": "x" * 70}]}] * 40, "s": "[" * 100})  # brackets in strings, many siblings
    assert parse_json(wide)["s"] == "[" * 100
