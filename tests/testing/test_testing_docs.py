"""docs/testing.md and the ``scripted_llm`` docstring run as written, the way a pack author runs them.

Each example is written to a fresh folder and run by pytest in a subprocess (``pytester``),
with the README's hello pack (``hello_pack/``, plus ``hello.publish``) installed there as
an entry point, and the test kit loaded through its ``pytest11`` entry point as users get it.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from cass_actions_core.testing import pytest_plugin
from support import REPO

DOC = REPO / "docs" / "testing.md"
HELLO_PACK = Path(__file__).resolve().parent / "hello_pack"


def blocks(language: str) -> list[str]:
    """The ``language`` code blocks of docs/testing.md, in order."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_blocks(language: str = "python") -> list[str]:
    """The python blocks that are test files (the others are snippets of the pack)."""
    return [b for b in blocks(language) if re.search(r"^def test_", b, flags=re.M)]


test_blocks.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def run_examples(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> pytest.RunResult:
    """Run ``files`` (name -> source) with pytest in a subprocess, the hello pack installed."""
    site = pytester.path / "site"
    shutil.copytree(HELLO_PACK, site)
    # A dist-info folder on the path is an installed distribution to importlib.metadata, so
    # cass_runtime(load=["hello"]) finds the pack through its entry point.
    monkeypatch.setenv("PYTHONPATH", str(site))
    for name, source in files.items():
        (pytester.path / name).write_text(source)
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-v", str(pytester.path))


def test_every_example_in_docs_testing_md_passes(pytester, monkeypatch):
    examples = test_blocks()
    expected = sum(len(re.findall(r"^def test_", b, flags=re.M)) for b in examples)
    assert len(examples) == 3 and expected == 7  # the page's three example files: none silently dropped
    result = run_examples(pytester, monkeypatch, {f"test_doc_{i}.py": b for i, b in enumerate(examples)})
    result.assert_outcomes(passed=expected)


def test_the_examples_can_fail(pytester, monkeypatch):
    # The check above is worth something only if a wrong expectation in a doc example fails.
    (approval,) = [b for b in test_blocks() if "awaiting_approval" in b]
    broken = approval.replace('outcome.status == "awaiting_approval"', 'outcome.status == "completed"')
    assert broken != approval
    result = run_examples(pytester, monkeypatch, {"test_broken.py": broken})
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*assert 'awaiting_approval' == 'completed'*"])


def scripted_llm_example() -> str:
    """The example test in the ``scripted_llm`` fixture's docstring, exactly as written there."""
    tree = ast.parse(Path(pytest_plugin.__file__).read_text())
    (fixture,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "scripted_llm"]
    doc = ast.get_docstring(fixture)
    assert doc is not None and "::\n" in doc
    return textwrap.dedent(doc.split("::\n", 1)[1])


def test_the_scripted_llm_docstring_example_passes(pytester, monkeypatch):
    example = scripted_llm_example()
    assert "def test_" in example and 'plugins=[("llm", llm)]' in example
    result = run_examples(pytester, monkeypatch, {"test_docstring.py": example})
    result.assert_outcomes(passed=1)


def test_the_publish_action_shown_matches_the_pack_tested():
    (shown,) = [json.loads(b) for b in blocks("json") if '"hello.publish"' in b]
    actions = json.loads((HELLO_PACK / "cass_actions_hello" / "actions.json").read_text())["actions"]
    assert shown == next(a for a in actions if a["id"] == "hello.publish")
    (handler,) = [b for b in blocks("python") if b.startswith("async def publish(ctx):")]
    assert handler in (HELLO_PACK / "cass_actions_hello" / "plugin.py").read_text()


def test_the_greet_action_is_the_readme_walk_through():
    # The pack the page tests is the README's: its hello.greet definition and handler.
    readme = (REPO / "README.md").read_text()
    (readme_actions,) = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", readme, flags=re.S)
                         if '"actions"' in b]
    actions = json.loads((HELLO_PACK / "cass_actions_hello" / "actions.json").read_text())["actions"]
    assert readme_actions["actions"][0] == next(a for a in actions if a["id"] == "hello.greet")
    plugin = (HELLO_PACK / "cass_actions_hello" / "plugin.py").read_text()
    greet = re.search(r"^async def greet\(ctx\):\n(?:    .*\n)+", plugin, flags=re.M)
    assert greet is not None and greet.group(0) in readme


def fixture_names() -> list[str]:
    """The fixtures the plugin module defines (functions decorated with ``@pytest.fixture``)."""
    tree = ast.parse(Path(pytest_plugin.__file__).read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
            and any(ast.unparse(d).startswith("pytest.fixture") for d in n.decorator_list)]


def test_every_fixture_is_documented_with_its_signature():
    text = DOC.read_text()
    names = fixture_names()
    assert set(names) == {"virtual_clock", "scripted_llm", "fake_anthropic", "cass_runtime", "run_action"}
    for name in names:
        assert f"### `{name}`" in text, name
        assert re.search(rf"```text\n{name}\b", text), f"no signature block for {name}"
    for field in ("status", "reason", "parked", "approval", "budget_block", "result", "cost_usd", "error", "summary"):
        assert hasattr(pytest_plugin.ActionRun, field) or field in pytest_plugin.ActionRun.__dataclass_fields__
        assert f"| `{field}` |" in text, field
