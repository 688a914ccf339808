"""An outside pack author succeeds from the docs alone, against built wheels in a fresh venv.

The README's "Write your own action pack" walk-through (steps 1-6) is followed verbatim:
the layout of step 1, ``pyproject.toml``, ``actions.json``, ``templates.json`` and
``plugin.py`` exactly as the README's code blocks show them. The pack and the core are
built as wheels and installed into a brand-new virtual environment (the core with its
``testing`` extra, as docs/testing.md says), with no source tree on the path and no
``CASS_ACTIONS_LOAD_PLUGINS`` set, so only what that environment has installed loads.
Then step 6's commands run there, plus ``run-action hello.greet`` with the offline
provider, and the pack's own tests -- the docs/testing.md examples that need nothing the
README pack lacks -- pass with that environment's pytest.

Nothing the docs show is patched here: if a snippet stops working as written, this test
fails, and the doc is what needs fixing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from support import REPO

pytestmark = pytest.mark.packaging

README = REPO / "README.md"
TESTING_DOC = REPO / "docs" / "testing.md"

INSTALL_TIMEOUT = 900  # building and installing wheels (dependencies from the package index)
CLI_TIMEOUT = 180  # one cass-actions command
PYTEST_TIMEOUT = 600  # the pack's own tests


# --- running things in the fresh environment ---------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would leak this repository's setup in.

    As test_packaging.py does: no PYTHONPATH, no VIRTUAL_ENV, no CASS_ACTIONS_* (so
    CASS_ACTIONS_LOAD_PLUGINS is unset and only what is installed loads). Also no
    PYTEST_* (PYTEST_ADDOPTS, PYTEST_DISABLE_PLUGIN_AUTOLOAD would change how the pack's
    tests run) and no ANTHROPIC_* (the walk-through needs no key; the test kit fakes it).
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
           and not k.startswith(("CASS_ACTIONS_", "PYTEST_", "ANTHROPIC_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, env=env if env is not None else _env(), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-4000:]}")


def _show(result: subprocess.CompletedProcess[str]) -> str:
    """A command, its exit code and (the ends of) its output, for assertion messages."""
    args = result.args if isinstance(result.args, list) else [str(result.args)]
    return (f"$ {' '.join(map(str, args))}\nexit code {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-4000:]}")


def _ok(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{what} failed:\n{_show(result)}"
    return result


def _build_wheel(project: Path, out: Path) -> Path:
    """A wheel of ``project`` built with this environment's hatchling (as test_packaging.py does)."""
    out.mkdir(parents=True, exist_ok=True)
    result = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(project)],
                  cwd=out, timeout=INSTALL_TIMEOUT)
    _ok(result, f"building the wheel of {project}")
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel of {project} in {out}, found {[w.name for w in wheels]}"
    return wheels[0]


# --- reading the docs ----------------------------------------------------------------------


def _blocks(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks of ``text`` as (language, body), in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def _walkthrough() -> str:
    """The README's "Write your own action pack" section."""
    text = README.read_text()
    match = re.search(r"^## Write your own action pack\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"{README}: no '## Write your own action pack' section"
    return match.group(1)


def _layout(block: str) -> list[str]:
    """The file paths of step 1's tree (two spaces an indent level, folders end with '/')."""
    stack: list[str] = []
    files = []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth, name = (len(line) - len(line.lstrip(" "))) // 2, line.strip()
        del stack[depth:]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
        else:
            files.append("/".join([*stack, name]))
    return files


def _readme_pack_files() -> tuple[str, dict[str, str]]:
    """The pack's folder name and its files (path relative to it -> text), from the README alone."""
    blocks = _blocks(_walkthrough())
    by_language: dict[str, list[str]] = {}
    for language, body in blocks:
        by_language.setdefault(language, []).append(body)
    (tree,) = by_language[""]  # step 1, the layout
    (pyproject,) = by_language["toml"]  # step 2
    (actions,) = [b for b in by_language["json"] if '"actions"' in b]  # step 3
    (templates,) = [b for b in by_language["json"] if '"templates"' in b]  # step 4
    (plugin,) = by_language["python"]  # step 5

    paths = _layout(tree)
    root = paths[0].split("/")[0]
    assert all(p.startswith(root + "/") for p in paths), paths
    contents = {"pyproject.toml": pyproject, "actions.json": actions, "templates.json": templates,
                "plugin.py": plugin, "__init__.py": ""}  # step 1: an empty __init__.py
    files = {}
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        assert name in contents, f"README step 1 lists {path}, but no step shows its content"
        files[path.split("/", 1)[1]] = contents[name]
    assert sorted(n.rsplit("/", 1)[-1] for n in files) == sorted(contents), f"step 1's layout: {paths}"
    return root, files


def _testing_doc_examples() -> list[str]:
    """The docs/testing.md example test files that run against the README pack as it is.

    The page's examples test the README pack plus one more action, ``hello.publish``
    (needs approval), whose definition and handler the page shows. The README walk-through
    does not add it, so the examples that use it (the approval file) are left out here: the
    pack under test is exactly the README's, and nothing is added to it. (Those examples run
    against a pack that has ``hello.publish`` in tests/testing/test_testing_docs.py.)
    """
    examples = [body for language, body in _blocks(TESTING_DOC.read_text())
                if language == "python" and re.search(r"^def test_", body, flags=re.M)]
    assert examples, f"{TESTING_DOC}: no example test files"
    usable = [b for b in examples if "hello.publish" not in b]
    assert usable and all("hello.greet" in b for b in usable), "no docs/testing.md example tests hello.greet alone"
    return usable


def _step_6_commands() -> list[list[str]]:
    """The ``cass-actions`` commands of the README's step 6 ("Try it"), as argument lists.

    The ``pip install -e`` line is the one thing not run as written: the pack is installed
    from its built wheel instead.
    """
    (block,) = [body for language, body in _blocks(_walkthrough()) if language == "bash" and "cass-actions " in body]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("cass-actions ")]


def _count_tests(sources: list[str]) -> int:
    return sum(len(re.findall(r"^def test_", s, flags=re.M)) for s in sources)


# --- the fresh environment ---------------------------------------------------------------


@pytest.fixture(scope="module")
def author_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The README pack written from the docs, both wheels built and installed in a new venv."""
    root = tmp_path_factory.mktemp("walkthrough")
    folder, files = _readme_pack_files()
    pack = root / folder
    for rel, text in files.items():
        path = pack / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    core_wheel = _build_wheel(REPO, root / "wheels" / "core")
    hello_wheel = _build_wheel(pack, root / "wheels" / "hello")

    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    # docs/testing.md: pip install "cass-actions[testing]", then the pack (here its wheel).
    install = _run([str(python), "-m", "pip", "install", "-q", f"{core_wheel}[testing]", str(hello_wheel)],
                   cwd=root, timeout=INSTALL_TIMEOUT)
    _ok(install, "installing the core wheel (with [testing]) and the hello wheel into a fresh venv")

    work = root / "elsewhere"  # run from a folder with no source tree in it
    work.mkdir()
    where = _run([str(python), "-c", "import cass_actions_core, cass_actions_hello, pytest;"
                  "print(cass_actions_core.__file__); print(cass_actions_hello.__file__)"], cwd=work, timeout=CLI_TIMEOUT)
    _ok(where, "importing the installed core, pack and pytest")
    for line in where.stdout.splitlines():
        assert "site-packages" in line and str(REPO) not in line and str(pack) not in line, where.stdout
    return {"root": root, "pack": pack, "bin": bindir, "python": python, "work": work}


def _cli(author_env: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    # A cache folder of the test's own, so the run never touches the user's; no other setting.
    cache = author_env["root"] / "cache"
    return _run([str(author_env["bin"] / "cass-actions"), *args], cwd=author_env["work"], timeout=CLI_TIMEOUT,
                env=_env(CASS_ACTIONS_CACHE_DIR=str(cache), CASS_ACTIONS_DATA_DIR=str(author_env["root"] / "data")))


# --- the tests -----------------------------------------------------------------------------


# What the task requires of step 6, whatever else the README's block shows; a command the
# block lacks is run in this form.
REQUIRED = {
    "plugins": ["cass-actions", "plugins"],
    "list": ["cass-actions", "list", "--pack", "hello"],
    "validate": ["cass-actions", "validate", "--strict"],
    "run-action": ["cass-actions", "run-action", "hello.greet", "--param", 'name="world"', "--provider", "offline"],
}


def test_readme_walkthrough_step_6_and_run_action_work_from_the_wheels(author_env):
    data_dir = author_env["root"] / "run-data"
    commands = _step_6_commands()
    documented = {cmd[1] for cmd in commands}
    commands += [cmd for name, cmd in REQUIRED.items() if name not in documented]
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    for cmd in commands:
        assert cmd[0] == "cass-actions", cmd
        # Each command as step 6 writes it, with the run's own data folder (a global option).
        results[cmd[1]] = _ok(_cli(author_env, *cmd[1:], "--data-dir", str(data_dir)), shlex.join(cmd))
    for name, cmd in REQUIRED.items():
        ran = next(c for c in commands if c[1] == name)
        assert all(arg in ran for arg in cmd), f"step 6 runs {ran}; expected at least {cmd}"

    # cass-actions plugins: your pack, its version, hooks and counts.
    plugins = results["plugins"]
    rows = [line for line in plugins.stdout.splitlines() if line.split()[:1] == ["hello"]]
    assert len(rows) == 1, f"hello is not listed once:\n{_show(plugins)}"
    assert {"cass-actions-hello", "0.1.0", "loaded"} <= set(rows[0].split()), _show(plugins)
    as_json = _ok(_cli(author_env, "plugins", "--json"), "cass-actions plugins --json")
    records = {p["name"]: p for p in json.loads(as_json.stdout)}
    assert set(records) == {"core", "hello"}, f"only the core and hello are installed:\n{_show(as_json)}"
    hello = records["hello"]
    assert (hello["distribution"], hello["version"], hello["status"], hello["actions"], hello["templates"]) == \
        ("cass-actions-hello", "0.1.0", "loaded", 1, 1), _show(as_json)

    # cass-actions list --pack hello: your action.
    listed = results["list"]
    ids = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("hello.")]
    assert ids == ["hello.greet"], _show(listed)

    # cass-actions validate --strict: exit 0 (checked by _ok above).

    # cass-actions run-action hello.greet ... --provider offline: the greeting is written, labelled.
    ran = results["run-action"]
    greetings = data_dir / "workspace" / "hello" / "greetings"
    written = sorted(greetings.glob("*.md")) if greetings.is_dir() else []
    assert len(written) == 1, f"expected one greeting in {greetings}, found {written}\n{_show(ran)}"
    text = written[0].read_text()
    assert text.startswith("[offline]"), f"{written[0]} does not carry the offline label: {text!r}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\.md", written[0].name), written[0].name


def test_the_pack_tests_from_docs_testing_md_pass_with_the_fresh_venvs_pytest(author_env):
    examples = _testing_doc_examples()
    expected = _count_tests(examples)
    tests = author_env["pack"] / "tests"
    tests.mkdir(exist_ok=True)
    for i, source in enumerate(examples, start=1):
        (tests / f"test_hello_{i}.py").write_text(source)

    # As an author would: `python -m pytest -q` in the pack folder, with the venv's pytest;
    # the test kit comes in through its pytest11 entry point (no conftest.py). (`python -m`
    # puts the pack folder first on sys.path, so the pack's module is imported from its
    # source there, as it is for an author; the core, the test kit and the entry point come
    # from the installed wheels. The CLI test above runs from a folder with no source.)
    result = _run([str(author_env["python"]), "-m", "pytest", "-q"], cwd=author_env["pack"], timeout=PYTEST_TIMEOUT,
                  env=_env(CASS_ACTIONS_CACHE_DIR=str(author_env["root"] / "pytest-cache")))
    _ok(result, "the pack's tests")
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= expected, f"expected at least {expected} passed:\n{_show(result)}"
    assert not re.search(r"\d+ (failed|error|errors|skipped|xfailed)\b", result.stdout), _show(result)
