"""The core and a pack as real wheels in a fresh virtual environment, with no source tree around."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from support import REPO

pytestmark = pytest.mark.packaging


def _run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("CASS_ACTIONS_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900, **kw)


def build_wheel(project: Path, out: Path) -> Path:
    """Build a wheel of ``project`` with the test environment's hatchling (no network needed)."""
    result = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(project)], cwd=out)
    assert result.returncode == 0, result.stderr
    name = project.name if project != REPO else "cass_actions"
    wheels = sorted(out.glob("*.whl"), key=lambda p: p.stat().st_mtime)
    assert wheels, f"no wheel built for {name}"
    return wheels[-1]


@pytest.fixture(scope="session")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A new virtual environment with the core wheel (and its dependencies) installed."""
    root = tmp_path_factory.mktemp("fresh")
    wheels = root / "wheels"
    wheels.mkdir()
    core = build_wheel(REPO, wheels)
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    result = _run([str(bindir / "python"), "-m", "pip", "install", "-q", str(core)], cwd=root)
    assert result.returncode == 0, result.stderr
    return {"root": root, "bin": bindir, "wheels": wheels, "core": core}


def test_core_wheel_carries_schemas_and_cli_works_without_source_tree(fresh_env):
    bindir, root = fresh_env["bin"], fresh_env["root"]
    probe = _run([str(bindir / "python"), "-c",
                  "import cass_actions_core, json; from cass_actions_core.schema_files import load_schema;"
                  "print(cass_actions_core.__file__); print(sorted(load_schema(n)['title'] for n in ['action-pack','template-file','config']))"],
                 cwd=root)
    assert probe.returncode == 0, probe.stderr
    location, titles = probe.stdout.splitlines()
    assert str(REPO) not in location and "site-packages" in location
    assert "cass-actions template file" in titles
    assert _run([str(bindir / "cass-actions"), "validate"], cwd=root).returncode == 0


def test_installed_pack_appears_in_list_and_plugins_then_goes_when_uninstalled(fresh_env):
    bindir, root = fresh_env["bin"], fresh_env["root"]
    pack = build_wheel(REPO / "tests" / "fixtures" / "demo_pack", fresh_env["wheels"])
    assert _run([str(bindir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(pack)], cwd=root).returncode == 0
    env_cli = [str(bindir / "cass-actions")]

    listed = _run([*env_cli, "list", "--json"], cwd=root)
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in json.loads(listed.stdout) if r["pack"] != "core"]
    assert [(r["id"], r["pack"], r["pack_version"]) for r in rows] == [("demo.echo", "demo", "0.4.2")]
    plugins = {p["name"]: p for p in json.loads(_run([*env_cli, "plugins", "--json"], cwd=root).stdout)}
    assert plugins["demo"]["distribution"] == "cass-actions-demo" and plugins["demo"]["version"] == "0.4.2"
    assert plugins["demo"]["status"] == "loaded" and plugins["demo"]["actions"] == 1 and plugins["demo"]["templates"] == 1
    assert _run([*env_cli, "validate", "--strict"], cwd=root).returncode == 0

    assert _run([str(bindir / "python"), "-m", "pip", "uninstall", "-y", "-q", "cass-actions-demo"], cwd=root).returncode == 0
    after = json.loads(_run([*env_cli, "list", "--json"], cwd=root).stdout)
    assert [r["id"] for r in after if r["pack"] != "core"] == []
    assert "demo" not in {p["name"] for p in json.loads(_run([*env_cli, "plugins", "--json"], cwd=root).stdout)}


PACKS = ["journal", "memory", "wonderland", "session"]


def test_bundled_packs_as_wheels_pass_their_own_tests_in_a_fresh_environment(fresh_env, tmp_path: Path):
    """Each pack installed from its wheel (no source tree on the path) passes its own tests."""
    bindir, root = fresh_env["bin"], fresh_env["root"]
    wheels = [build_wheel(REPO / "plugins" / pack, fresh_env["wheels"]) for pack in PACKS]
    install = _run([str(bindir / "python"), "-m", "pip", "install", "-q", *map(str, wheels), "pytest>=8,<10"], cwd=root)
    assert install.returncode == 0, install.stderr
    where = _run([str(bindir / "python"), "-c",
                  "import importlib; print('\\n'.join(importlib.import_module(f'cass_actions_{p}').__file__ for p in "
                  + repr(PACKS) + "))"], cwd=root)
    assert where.returncode == 0, where.stderr
    assert all("site-packages" in line and str(REPO) not in line for line in where.stdout.splitlines())

    listed = json.loads(_run([str(bindir / "cass-actions"), "list", "--json"], cwd=root).stdout)
    assert {r["pack"] for r in listed} == {"core", *PACKS}
    assert len(listed) >= 30 and {r["tier"] for r in listed} == {1, 2, 3, 4, 5}
    strict = _run([str(bindir / "cass-actions"), "validate", "--strict"], cwd=root)
    assert strict.returncode == 0, strict.stdout + strict.stderr

    # The packs' own tests, run by the fresh environment's pytest against the installed wheels.
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\naddopts = -p no:cacheprovider --import-mode=importlib\n")
    tests = [str(REPO / "plugins" / pack / "tests") for pack in PACKS]
    result = _run([str(bindir / "python"), "-m", "pytest", "-q", "-c", str(ini), "--rootdir", str(tmp_path), *tests], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
