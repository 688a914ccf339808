"""file_pack_hooks: the usual pack layout as ready hook implementations."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

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


# -- issue 10: handlers by reference, imported on first use ------------------------------------

LAZY_PLUGIN = '''
from cass_actions_core.packs import file_pack_hooks

register_actions, register_templates = file_pack_hooks(__package__, {
    "hello.say": ".handlers:say", "hello.shout": ".handlers:shout", "hello.gone": ".nowhere:say"})
'''

LAZY_HANDLERS = '''
async def say(ctx):
    return {"summary": "hello " + ctx.params.get("who", "world")}

def shout(ctx):  # not async: refused when resolved
    return {"summary": "HELLO"}
'''


def make_lazy_package(root: Path, name: str) -> None:
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(LAZY_PLUGIN)
    (pkg / "handlers.py").write_text(LAZY_HANDLERS)
    (pkg / "actions.json").write_text(json.dumps({"actions": [action_def(i) for i in ("hello.say", "hello.shout",
                                                                                        "hello.gone")]}))


def test_handlers_by_reference_are_imported_only_for_a_full_catalogue_and_checked_then(tmp_path: Path):
    make_lazy_package(tmp_path, "hello_lazy")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("hello_lazy.plugin")
        actions_only = build_catalogue(Config(), plugins=[("hello", module)], entry_points=False, full=False)
        assert "hello_lazy.handlers" not in sys.modules  # what `cass-actions list` builds imports no handler
        assert {"hello.say", "hello.shout", "hello.gone"} <= set(actions_only.actions)
        full = build_catalogue(Config(), plugins=[("hello", module)], entry_points=False)
    finally:
        sys.path.remove(str(tmp_path))
    problems = {(p.code, p.item_id): p.message for p in full.problems if p.pack == "hello"}
    assert set(problems) == {("handler-signature", "hello.shout"), ("handler-import", "hello.gone")}
    assert "must be an 'async def' function" in problems[("handler-signature", "hello.shout")]
    assert "cannot import handler 'hello_lazy.nowhere:say'" in problems[("handler-import", "hello.gone")]
    ok = full.actions["hello.say"].handler
    assert ok is not None and asyncio.run(ok(SimpleNamespace(params={"who": "you"}))) == {"summary": "hello you"}
