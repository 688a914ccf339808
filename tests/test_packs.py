"""file_pack_hooks: the usual pack layout as ready hook implementations."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from cass_actions_core.catalogue import build_catalogue
from cass_actions_core.config import Config
from support import action_def, template_def

PLUGIN = '''
from cass_actions_core.packs import file_pack_hooks

async def hello(ctx):
    return {"summary": "hello"}

register_actions, register_templates = file_pack_hooks(__package__, {"hello.say": hello})
'''


def make_package(root: Path, name: str, *, settings: dict | None = None, templates: bool = True) -> None:
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(PLUGIN)
    (pkg / "actions.json").write_text(json.dumps({"actions": [action_def("hello.say")]}))
    if templates:
        (pkg / "templates.json").write_text(json.dumps({"templates": [template_def("greet", ["hello.say"])]}))
    if settings is not None:
        (pkg / "settings.schema.json").write_text(json.dumps(settings))


def load(root: Path, name: str, config: Config):
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(f"{name}.plugin")
        return build_catalogue(config, plugins=[("hello", module)], entry_points=False)
    finally:
        sys.path.remove(str(root))


def test_file_pack_hooks_register_actions_templates_and_settings(tmp_path: Path):
    make_package(tmp_path, "hello_pack_one", settings={"type": "object", "additionalProperties": False,
                                                       "properties": {"loud": {"type": "boolean"}}})
    cat = load(tmp_path, "hello_pack_one", Config.from_dict({"packs": {"hello": {"loud": "yes"}}}))
    assert "hello.say" in cat.actions and cat.actions["hello.say"].handler is not None
    assert "greet" in cat.templates
    assert [(p.code, p.path) for p in cat.problems] == [("invalid-pack-settings", "$.packs.hello.loud")]
    record = next(p for p in cat.plugins if p.name == "hello")
    assert record.hooks == ["register_actions", "register_templates"]


def test_file_pack_hooks_without_templates_or_settings(tmp_path: Path):
    make_package(tmp_path, "hello_pack_two", templates=False)
    cat = load(tmp_path, "hello_pack_two", Config.from_dict({"packs": {"hello": {"anything": 1}}}))
    assert "hello.say" in cat.actions and not [t for t in cat.templates if t == "greet"]
    assert cat.problems == []
