"""Schema validation and its cache of documents already found valid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cass_actions_core import schema_files
from support import action_def, make_dist, run_cli, template_def


def test_valid_documents_are_cached_and_invalid_ones_always_reported(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CASS_ACTIONS_CACHE_DIR", str(tmp_path / "cache"))
    good = {"actions": [action_def("demo.cached_one")]}
    bad = {"actions": [action_def("demo.cached_two", tier=9)]}
    code = (
        "import json, sys\n"
        "from cass_actions_core import schema_files\n"
        "doc = json.loads(sys.argv[1])\n"
        "print(json.dumps(schema_files.validate('action-pack', doc)))\n"
        "print(any(m in sys.modules for m in ('jsonschema', 'jsonschema_rs')))\n"
    )

    def run(doc):
        out = subprocess.run([sys.executable, "-c", code, json.dumps(doc)], capture_output=True, text=True,
                             env={**__import__("os").environ}, timeout=60)
        assert out.returncode == 0, out.stderr
        errors, imported = out.stdout.splitlines()
        return json.loads(errors), imported == "True"

    assert run(good) == ([], True)  # first time: validated
    assert run(good) == ([], False)  # then known valid: no validator is even imported
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
    assert schema_files.schema_problems({"type": "object"}) == []
    assert schema_files.schema_problems({"type": "objekt"}) != []


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


# -- issue 10: keyed by content, filled by catalogue checks only -------------------------------

def cache_entries(folder: Path) -> set[str]:
    """The digests the cache folder holds (every cache file of this version)."""
    out: set[str] = set()
    for file in folder.glob("valid-documents-*.json"):
        out |= set(json.loads(file.read_text()))
    return out


def test_a_changed_pack_file_is_checked_again_and_a_fixed_one_passes_again(tmp_path: Path, site: Path) -> None:
    cache = tmp_path / "cache"
    env = {"CASS_ACTIONS_CACHE_DIR": str(cache), "CASS_ACTIONS_LOAD_PLUGINS": "cached"}
    make_dist(site, "cached", actions=[action_def("cached.a")],
              templates=[template_def("cached_t", ["cached.a"])])
    first = run_cli("validate", site=site, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert cache_entries(cache), "a valid catalogue leaves its digests in the cache"
    again = run_cli("validate", site=site, env=env)
    assert again.returncode == 0 and cache_entries(cache)

    # The same file, now broken in a way only the schema sees: the cache must not vouch for it.
    broken = json.loads((site / "cached_actions.json").read_text())
    broken["actions"][0]["tier"] = 9
    (site / "cached_actions.json").write_text(json.dumps(broken))
    bad = run_cli("validate", site=site, env=env)
    assert bad.returncode == 1
    assert "cached_actions.json" in bad.stdout and "$.actions[0].tier" in bad.stdout

    fixed = json.loads((site / "cached_actions.json").read_text())
    fixed["actions"][0]["tier"] = 2
    (site / "cached_actions.json").write_text(json.dumps(fixed))
    assert run_cli("validate", site=site, env=env).returncode == 0


def test_running_units_adds_nothing_to_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"CASS_ACTIONS_CACHE_DIR": str(cache), "CASS_ACTIONS_LOAD_PLUGINS": "journal,memory"}
    assert run_cli("validate", env=env).returncode == 0
    before = cache_entries(cache)
    day = run_cli("simulate", "--days", "2", "--start", "2026-11-23", "--data-dir", str(tmp_path / "data"), env=env)
    assert day.returncode == 0, day.stderr
    assert "completed" in day.stdout
    # Two days of units wrote summaries and events: none of that is catalogue content.
    assert cache_entries(cache) == before


# -- issue 10: params and settings schemas checked by the compiled validator -------------------

DRAFT = "https://json-schema.org/draft/2020-12/schema"
PLAINLY_VALID = [
    {"type": "object"},
    {"type": "object", "additionalProperties": False, "required": ["topic"], "properties": {
        "topic": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[a-z ]+$"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8}}},
    {"$schema": DRAFT, "$id": "https://cass-actions.dev/schemas/packs/x.settings.schema.json", "type": "object",
     "$defs": {"name": {"type": "string"}}, "properties": {"who": {"$ref": "#/$defs/name"}},
     "patternProperties": {"^x-[a-z]+$": {"type": "integer"}}},
]
NOT_VOUCHED_FOR = [
    {"type": "objekt"},
    {"minLength": -1},
    {"required": ["a", "a"]},
    {"pattern": "(("},
    {"pattern": "\\p{L}+"},  # fine for the compiled checker's regex engine, not for Python's
    {"patternProperties": {"((": {}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "prefixItems": 5},  # draft 7 allows it; 2020-12 not
    {"$ref": "not a uri reference"},
    {"$id": "http://exa mple.com/"},
    {"$vocabulary": {"https://example.com/vocab": True}},
    {"properties": {"x": {"type": "string", "pattern": "[z-a]"}}},
]


def _jsonschema_says(schema) -> str | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    return None


def _bundled_settings_schemas() -> list:
    plugins = Path(__file__).resolve().parents[1] / "plugins"
    return [json.loads(p.read_text()) for p in sorted(plugins.glob("*/cass_actions_*/settings.schema.json"))]


def test_the_compiled_schema_check_vouches_only_for_schemas_jsonschema_accepts():
    for schema in PLAINLY_VALID + _bundled_settings_schemas():
        assert schema_files._plainly_valid_schema(schema), schema  # the quick path is taken
        assert _jsonschema_says(schema) is None
    for schema in NOT_VOUCHED_FOR:
        assert not schema_files._plainly_valid_schema(schema), schema
    # Either way, the verdict and the message are jsonschema's own.
    for schema in PLAINLY_VALID + NOT_VOUCHED_FOR:
        said = _jsonschema_says(schema)
        found = [message for _, message in schema_files._schema_text_problems(schema_files._canonical(schema))]
        if schema in ({"$ref": "not a uri reference"}, {"$id": "http://exa mple.com/"}):
            # Valid to jsonschema's metaschema check (no URI format checker installed), but it cannot be used.
            assert said is None and len(found) == 1 and found[0].startswith("it does not compile: Invalid URI reference")
            continue
        assert found == ([] if said is None else [said]), schema


def test_every_metaschema_error_of_a_params_schema_is_reported_at_its_path():
    schema = {"type": "object", "properties": {"folder": {"type": "strng", "minLength": "two"}}}
    assert schema_files.schema_problems(schema) == [
        ("$.properties.folder.minLength", "'two' is not of type 'integer'"),
        ("$.properties.folder.type", "'strng' is not valid under any of the given schemas"),
    ]


def test_a_ref_that_does_not_resolve_within_the_schema_is_a_problem_and_nothing_is_fetched():
    local = {"type": "object", "properties": {"folder": {"$ref": "#/$defs/nowhere"}}}
    assert schema_files.schema_problems(local) == [
        ("$.properties.folder.$ref", "it does not compile: Pointer '/$defs/nowhere' does not exist")]
    # A remote reference is refused by the check itself, not by a failed download (this would reach the
    # network: the retriever refuses first).
    remote = {"type": "object", "properties": {"x": {"$ref": "http://127.0.0.1:9/never.json"}}}
    ((where, why),) = schema_files.schema_problems(remote)
    assert where == "$.properties.x.$ref" and "never fetched from the network" in why
    resolved = {"$defs": {"name": {"type": "string"}}, "type": "object", "properties": {"who": {"$ref": "#/$defs/name"}}}
    assert schema_files.schema_problems(resolved) == []
    assert schema_files.validate_instance(resolved, {"who": 3}) == [("$.who", "3 is not of type 'string'")]


def test_checking_a_fresh_catalogue_never_imports_the_python_validator(tmp_path: Path):
    code = (
        "import sys\n"
        "from cass_actions_core.cli.main import main\n"
        "try:\n    main(['validate', '--no-cache'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('IMPORTED=' + ','.join(m for m in ('jsonschema', 'jsonschema_rs') if m in sys.modules))\n"
    )
    env = {**__import__("os").environ, "CASS_ACTIONS_CACHE_DIR": str(tmp_path / "empty-cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED=jsonschema_rs\n" in out.stdout, out.stdout
