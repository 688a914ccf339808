"""The code in the documentation runs as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from support import REPO


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_embedding_example_runs(tmp_path):
    (block,) = python_blocks(REPO / "docs" / "embedding.md")
    script = tmp_path / "example.py"
    script.write_text(block)
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "'completed'" in out.stdout


def test_readme_pack_example_is_valid_metadata():
    import json

    from cass_actions_core import schema_files

    blocks = re.findall(r"```json\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    actions = next(json.loads(b) for b in blocks if '"actions"' in b)
    templates = next(json.loads(b) for b in blocks if '"templates"' in b)
    assert schema_files.validate(schema_files.ACTION_PACK, actions) == []
    assert schema_files.validate(schema_files.TEMPLATE_FILE, templates) == []


def toml_blocks(path) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", path.read_text(), flags=re.S)


def test_the_readme_and_planner_configs_work_verbatim_with_the_bundled_packs(tmp_path):
    # A config a user copies from the docs, unchanged, must pass the catalogue check with the
    # bundled packs, with no problem and no warning.
    from support import run_cli

    (readme,) = [b for b in toml_blocks(REPO / "README.md") if "[budget]" in b]
    (planner,) = [b for b in toml_blocks(REPO / "docs" / "planner.md") if "[planner]" in b]
    for name, text in (("readme.toml", readme), ("planner.toml", planner)):
        path = tmp_path / name
        path.write_text(text)
        out = run_cli("validate", "--strict", "--json", "--config", str(path),
                      env={"CASS_ACTIONS_LOAD_PLUGINS": "journal,memory,wonderland,session"})
        assert out.returncode == 0, (name, out.stdout, out.stderr)
        report = json.loads(out.stdout)
        assert report["ok"] and report["problems"] == [] and report["warnings"] == [], (name, report)
        assert report["templates"] >= 20
