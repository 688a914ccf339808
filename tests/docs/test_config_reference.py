"""docs/config.md and docs/plan-files.md: generated from the schemas, complete, and their examples work.

The generator is ``tools/config_reference.py``; these tests check its output against the
files on disk (drift), and check the files against the schemas, ``cass_actions_core.config``
and the installed catalogue by means of their own, so a generator bug cannot hide itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cass_actions_core import config as config_module
from cass_actions_core import schema_files
from cass_actions_core.problems import UserError
from support import REPO

TOOL = REPO / "tools" / "config_reference.py"
CONFIG_DOC = REPO / "docs" / "config.md"
PLAN_DOC = REPO / "docs" / "plan-files.md"
CONFIG_SCHEMA = REPO / "schemas" / "config.schema.json"
PLAN_SCHEMA = REPO / "schemas" / "plan.schema.json"

#: A commented example line of the complete example config: ``# key = value`` or ``# [table]``.
COMMENTED_SETTING = re.compile(r'^# (?=\[|[A-Za-z0-9_"-]+ = )', re.M)


def load_tool() -> ModuleType:
    """Import tools/config_reference.py (not a package) as a module."""
    spec = importlib.util.spec_from_file_location("config_reference", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a Markdown document."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ``lang`` code blocks in ``text``."""
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell's code span (``| `a.b` | ... |``), cells unescaped."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if match:
            cells = [c.strip().replace("\\|", "|").replace("\\<", "<") for c in re.split(r"(?<!\\)\|", match.group(2))]
            rows[match.group(1)] = cells
    return rows


def schema_keys(schema: dict[str, Any], root: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(dotted path regex, schema)`` of every key; a free-form name (additionalProperties) is ``<...>``
    and array items are ``[]``. Written independently of the generator."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if prefix:
        yield prefix, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_keys(sub, root, f"{prefix}\\.{re.escape(name)}" if prefix else re.escape(name))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from schema_keys(extra, root, f"{prefix}\\.<[a-z_]+>")
    items = schema.get("items")
    if schema.get("type") == "array" and isinstance(items, dict):
        for path, sub in schema_keys(items, root, f"{prefix}\\[\\]"):
            if path != f"{prefix}\\[\\]":
                yield path, sub


def documented(keys: dict[str, list[str]], pattern: str) -> list[str]:
    """The documented keys a schema key's path regex matches."""
    return [k for k in keys if re.fullmatch(pattern, k)]


@pytest.fixture(scope="module")
def config_doc() -> str:
    return CONFIG_DOC.read_text("utf-8")


@pytest.fixture(scope="module")
def config_schema() -> dict[str, Any]:
    return json.loads(CONFIG_SCHEMA.read_text("utf-8"))


# -- drift --------------------------------------------------------------------------------

def test_the_docs_are_exactly_what_the_generator_writes():
    for path, text in load_tool().outputs().items():
        assert path.read_text("utf-8") == text, f"{path} is stale: run python3 tools/config_reference.py"


def test_check_passes_on_the_repository_with_the_standard_library_alone():
    # -S: no site-packages at all, so the tool needs nothing but the standard library.
    out = subprocess.run([sys.executable, "-I", "-S", str(TOOL), "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_check_fails_with_a_clear_message_when_a_doc_drifted(tmp_path: Path, monkeypatch, capsys):
    tool = load_tool()
    stale = tmp_path / "config.md"
    stale.write_text(CONFIG_DOC.read_text("utf-8").replace("Default output limit per call", "Default limit"), "utf-8")
    monkeypatch.setattr(tool, "CONFIG_DOC", stale)

    assert tool.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert f"{stale} out of date with the schemas" in err
    assert "run: python3 tools/config_reference.py" in err
    assert "+| `llm.max_tokens`" in err  # the difference is shown
    assert "Default limit" in stale.read_text("utf-8")  # --check writes nothing

    assert tool.main([]) == 0  # without --check it rewrites the file
    assert stale.read_text("utf-8") == CONFIG_DOC.read_text("utf-8")
    assert tool.main(["--check"]) == 0


# -- completeness -------------------------------------------------------------------------

@pytest.mark.parametrize("path", [CONFIG_SCHEMA, PLAN_SCHEMA], ids=lambda p: p.name)
def test_every_schema_key_has_a_description(path: Path):
    schema = json.loads(path.read_text("utf-8"))
    missing = [p for p, sub in schema_keys(schema, schema) if len(sub.get("description", "").strip()) < 10]
    assert not missing, f"keys without a description in {path.name}: {missing}"


def test_every_config_key_is_documented_with_type_range_default_and_description(config_doc, config_schema):
    rows = table_rows(config_doc)
    for pattern, sub in schema_keys(config_schema, config_schema):
        matches = documented(rows, pattern)
        assert len(matches) == 1, f"{pattern}: documented as {matches}"
        key = matches[0]
        type_, allowed, default, description = rows[key]
        assert type_, key
        assert sub["description"] in description, key
        for bound in ("minimum", "maximum", "exclusiveMinimum"):
            if bound in sub:
                assert str(sub[bound]) in allowed, (key, bound)
        for value in sub.get("enum", []):
            assert json.dumps(value) in allowed, (key, value)
        if sub.get("default") is not None and not isinstance(sub["default"], dict):
            written = re.fullmatch(r"`(.*)`", default)
            assert written, (key, default)
            assert tomllib.loads(f"v = {written.group(1)}")["v"] == sub["default"], key


def test_the_approvals_and_scheduler_keys_users_asked_for_are_documented(config_doc):
    for key in ("approvals.expire_after_hours", "approvals.on_expiry", "approvals.categories", "approvals.actions",
                "scheduler.idle_after_minutes", "scheduler.tick_seconds"):
        assert f"| `{key}` |" in config_doc


def test_every_environment_override_is_documented_and_declared_in_the_schema(config_doc, config_schema):
    env_rows = table_rows(section(config_doc, "Environment variables"))
    expected = {var: dotted for var, (dotted, _kind) in config_module.ENV_OVERRIDES.items()}
    expected[config_module.LOAD_PLUGINS_ENV] = "plugins.load"
    expected[config_module.DISABLE_PLUGINS_ENV] = "plugins.disable"
    for var, dotted in expected.items():
        assert var in env_rows, f"{var} is not documented"
        assert env_rows[var][0] == f"`{dotted}`", var
    # The schema's x-env is the source the doc is generated from: it must say exactly what config.py does.
    declared = {}
    for pattern, sub in schema_keys(config_schema, config_schema):
        env = sub.get("x-env")
        if env is not None:
            declared[env if isinstance(env, str) else env["name"]] = pattern.replace("\\", "")
    assert declared == expected
    for var in (config_module.CONFIG_ENV, config_module.DATA_DIR_ENV):
        assert f"| `{var}` |" in config_doc


def test_the_default_allocation_table_is_documented_and_matches_the_code(config_doc, config_schema):
    budget = config_schema["properties"]["budget"]["properties"]
    assert budget["allocations"]["default"] == config_module.DEFAULT_ALLOCATIONS
    rows = table_rows(section(config_doc, "Default budget allocations"))
    shown = {category: float(cells[0]) for category, cells in rows.items() if category in config_module.DEFAULT_ALLOCATIONS}
    assert shown == config_module.DEFAULT_ALLOCATIONS
    assert sum(shown.values()) + budget["reserve_fraction"]["default"] <= 1.0 + 1e-9
    allocations = section(config_doc, "`[budget.allocations]`")
    assert "merge over the default table" in allocations and "set" in allocations and "to 0" in allocations
    assert "at most 1.0" in allocations


def test_the_documented_allocation_example_merges_over_the_defaults(config_doc):
    (block,) = fenced(section(config_doc, "Default budget allocations"), "toml")
    given = tomllib.loads(block)["budget"]["allocations"]
    assert 0 < len(given) < len(config_module.DEFAULT_ALLOCATIONS)  # it names only some categories
    built = config_module.Config.from_dict(tomllib.loads(block))
    assert built.budget.allocations == {**config_module.DEFAULT_ALLOCATIONS, **given}


# -- the example config -------------------------------------------------------------------

def example_config(doc: str, *, uncommented: bool = False) -> str:
    (block,) = fenced(section(doc, "Complete example"), "toml")
    return COMMENTED_SETTING.sub("", block) if uncommented else block


def flat_keys(doc: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every dotted key path of a TOML document, tables included (a name with a dot in quotes)."""
    for name, value in doc.items():
        name = f'"{name}"' if "." in name else name
        path = f"{prefix}.{name}" if prefix else name
        yield path
        if isinstance(value, dict):
            yield from flat_keys(value, path)


def test_the_example_config_holds_the_defaults_and_shows_every_key(config_doc, config_schema):
    plain = tomllib.loads(example_config(config_doc))
    built = config_module.Config.from_dict(plain)
    assert built.to_dict() == config_module.Config().to_dict()  # "every value below is the default"

    everything = list(flat_keys(tomllib.loads(example_config(config_doc, uncommented=True))))
    for pattern, _sub in schema_keys(config_schema, config_schema):
        loose = pattern.replace("<[a-z_]+>", '(?:"[^"]+"|[^."]+)')
        assert any(re.fullmatch(loose, key) for key in everything), f"{pattern} is not in the complete example"


@pytest.mark.parametrize("uncommented", [False, True], ids=["as-shown", "every-key-switched-on"])
def test_the_example_config_passes_cass_actions_validate(tmp_path: Path, config_doc, uncommented: bool):
    path = tmp_path / "config.toml"
    path.write_text(example_config(config_doc, uncommented=uncommented), "utf-8")
    cli = Path(sys.executable).with_name("cass-actions")
    if not cli.exists():
        cli = REPO / ".venv" / "bin" / "cass-actions"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASS_ACTIONS_", "ANTHROPIC_"))}
    env["CASS_ACTIONS_DATA_DIR"] = str(tmp_path / "data")
    env["CASS_ACTIONS_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run([str(cli), "validate", "--config", str(path)], capture_output=True, text=True,
                         env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "valid" in out.stdout


def test_a_broken_example_would_be_caught(tmp_path: Path, config_doc):
    # The validate test can fail: the same file with one share too many is refused.
    text = example_config(config_doc).replace("planning = 0.02", "planning = 0.5")
    with pytest.raises(UserError, match=r"budget\.allocations"):
        config_module.Config.from_dict(tomllib.loads(text))


# -- the plan file example ----------------------------------------------------------------

def plan_example() -> dict[str, Any]:
    (block,) = fenced(section(PLAN_DOC.read_text("utf-8"), "Example"), "json")
    return json.loads(block)


def test_every_plan_field_is_documented():
    schema = json.loads(PLAN_SCHEMA.read_text("utf-8"))
    rows = table_rows(section(PLAN_DOC.read_text("utf-8"), "Fields"))
    for pattern, sub in schema_keys(schema, schema):
        # The item fields are documented once, for phases.morning[]: every phase has the same items.
        pattern = re.sub(r"phases\\\.(afternoon|evening|night)\\\[\\\]", r"phases\\.morning\\[\\]", pattern)
        matches = documented(rows, pattern)
        assert len(matches) == 1, f"{pattern}: documented as {matches}"
        assert sub["description"] in rows[matches[0]][3]


@pytest.fixture
def installed_catalogue():
    from cass_actions_core.catalogue import build_catalogue

    return build_catalogue(config_module.load_config(env={}))


def test_the_plan_example_is_valid_and_loads_against_the_installed_catalogue(tmp_path: Path, installed_catalogue):
    from jsonschema import Draft202012Validator

    from cass_actions_core.planning import PHASE_ORDER, load_plan_file

    doc = plan_example()
    schema = json.loads(PLAN_SCHEMA.read_text("utf-8"))
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(doc)
    assert schema_files.validate(schema_files.PLAN, doc) == []
    assert {p for p in PHASE_ORDER if doc["phases"].get(p)} == set(PHASE_ORDER)  # shows every phase

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc), "utf-8")
    plan = load_plan_file(path, installed_catalogue, date(2030, 1, 1))

    assert plan.day == date.fromisoformat(doc["date"])
    assert plan.intention == doc["intention"]
    assert plan.source == "file"
    for phase in PHASE_ORDER:
        given = doc["phases"].get(phase, [])
        assert [i.template for i in plan.phases[phase]] == [i["template"] for i in given]
        assert [i.focus for i in plan.phases[phase]] == [i.get("focus") for i in given]
        assert [i.motivation for i in plan.phases[phase]] == [i.get("motivation") for i in given]
        for item in plan.phases[phase]:
            # Step params are not checked on load, so check here that the example's fit their actions.
            steps = installed_catalogue.templates[item.template].template.steps
            for index, params in item.params.items():
                action = installed_catalogue.actions[steps[int(index)].action].definition
                assert schema_files.validate_instance(action.params, params) == [], (item.template, index)


def test_the_plan_loader_would_refuse_an_unknown_template_in_the_example(tmp_path: Path, installed_catalogue):
    from cass_actions_core.planning import load_plan_file

    doc = plan_example()
    doc["phases"]["morning"][0]["template"] = "reflection_blok"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(UserError, match="unknown template 'reflection_blok'"):
        load_plan_file(path, installed_catalogue, date(2030, 1, 1))
