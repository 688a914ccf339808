"""Schema validation and its cache of documents already found valid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cass_actions_core import schema_files
from support import action_def


def test_valid_documents_are_cached_and_invalid_ones_always_reported(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CASS_ACTIONS_CACHE_DIR", str(tmp_path / "cache"))
    good = {"actions": [action_def("demo.cached_one")]}
    bad = {"actions": [action_def("demo.cached_two", tier=9)]}
    code = (
        "import json, sys\n"
        "from cass_actions_core import schema_files\n"
        "doc = json.loads(sys.argv[1])\n"
        "print(json.dumps(schema_files.validate('action-pack', doc)))\n"
        "print('jsonschema' in sys.modules)\n"
    )

    def run(doc):
        out = subprocess.run([sys.executable, "-c", code, json.dumps(doc)], capture_output=True, text=True,
                             env={**__import__("os").environ}, timeout=60)
        assert out.returncode == 0, out.stderr
        errors, imported = out.stdout.splitlines()
        return json.loads(errors), imported == "True"

    assert run(good) == ([], True)  # first time: validated with jsonschema
    assert run(good) == ([], False)  # then known valid: jsonschema is not even imported
    for _ in range(2):
        errors, imported = run(bad)
        assert errors and errors[0][0] == "$.actions[0].tier" and imported
    cache = next((tmp_path / "cache").glob("valid-documents-*.json"))
    assert len(json.loads(cache.read_text())) == 1


def test_an_unreadable_cache_only_costs_speed(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CASS_ACTIONS_CACHE_DIR", str(tmp_path))
    from cass_actions_core import __version__

    (tmp_path / f"valid-documents-{__version__}.json").write_text("{not json")
    cache = schema_files._ValidCache()
    assert "anything" not in cache
    assert schema_files.check_schema({"type": "object"}) is None
    assert schema_files.check_schema({"type": "objekt"}) is not None


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CASS_ACTIONS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(schema_files, "CACHE_LIMIT", 3)
    first = schema_files._ValidCache()
    for key in ["a", "b", "c"]:
        first.add(key)
    first.save()
    second = schema_files._ValidCache()
    assert "a" in second  # used again: becomes the most recent
    second.add("d")
    second.save()
    third = schema_files._ValidCache()
    assert "a" in third and "d" in third and "c" in third and "b" not in third
