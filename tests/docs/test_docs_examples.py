"""The code in the documentation runs as written."""

from __future__ import annotations

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
