"""``list``, ``plugins`` and ``validate`` through the real CLI, with packs installed as distributions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from support import action_def, make_dist, run_cli, template_def

ONLY = "CASS_ACTIONS_LOAD_PLUGINS"


def test_list_shows_pack_actions_with_filters_and_json(site: Path):
    make_dist(site, "cass-actions-demo", version="2.3.4", ep_name="demo",
              actions=[action_def("demo.alpha", tier=2), action_def("demo.beta", tier=1, uses_llm=False,
                                                                    estimated_cost_usd=0, max_cost_usd=0, category="system")],
              templates=[template_def("demo_block", ["demo.alpha", "demo.beta"])])
    env = {ONLY: "demo"}
    out = run_cli("list", "--json", "--pack", "demo", site=site, env=env)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["id"], r["pack"], r["pack_version"]) for r in rows] == [("demo.beta", "demo", "2.3.4"), ("demo.alpha", "demo", "2.3.4")]
    everything = json.loads(run_cli("list", "--json", site=site, env=env).stdout)
    assert {r["pack"] for r in everything} == {"demo", "core"}
    table = run_cli("list", "--tier", "2", site=site, env=env)
    assert "demo.alpha" in table.stdout and "demo.beta" not in table.stdout
    assert run_cli("list", "--category", "system", "--pack", "demo", "--json", site=site, env=env).stdout.count('"id"') == 1
    tpl = json.loads(run_cli("list", "--templates", "--pack", "demo", "--json", site=site, env=env).stdout)
    assert tpl[0]["id"] == "demo_block" and tpl[0]["estimated_cost_usd"] == 0.02
    assert tpl[0]["estimated_duration_minutes"] == 10
    typo = run_cli("list", "--pack", "dmeo", site=site, env=env)  # not an empty list, exit 0
    assert typo.returncode == 1 and "no loaded pack is named 'dmeo' (did you mean 'demo'?)" in typo.stderr


def test_unknown_action_in_template_file_exits_1_naming_template_step_and_closest(site: Path, tmp_path: Path):
    make_dist(site, "cass-actions-journal-test", ep_name="jt", actions=[action_def("jt.generate_daily")])
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps({"templates": [template_def("memory_maintenance",
                                                          ["jt.generate_daily", "jt.generate_dayly"])]}))
    out = run_cli("validate", str(bad), site=site, env={ONLY: "jt"})
    assert out.returncode == 1
    assert "memory_maintenance" in out.stdout and "step 2" in out.stdout
    assert "$.templates[0].steps[1].action" in out.stdout and "'jt.generate_daily'" in out.stdout
    machine = json.loads(run_cli("validate", "--json", str(bad), site=site, env={ONLY: "jt"}).stdout)
    assert machine["ok"] is False and machine["problems"][0]["hint"].endswith("'jt.generate_daily'")


def test_duplicate_action_ids_across_packs_name_both(site: Path):
    make_dist(site, "cass-actions-one", ep_name="one", actions=[action_def("same.act")])
    make_dist(site, "cass-actions-two", ep_name="two", actions=[action_def("same.act")])
    out = run_cli("validate", site=site, env={ONLY: "one,two"})
    assert out.returncode == 1
    assert "'one'" in out.stdout and "'two'" in out.stdout and "same.act" in out.stdout


def test_missing_handler_and_orphan_handler_are_rejected(site: Path):
    make_dist(site, "cass-actions-half", ep_name="half", actions=[action_def("half.defined")], handlers=["half.orphan"])
    out = run_cli("validate", "--json", site=site, env={ONLY: "half"})
    assert out.returncode == 1
    found = {(p["code"], p["item_id"]) for p in json.loads(out.stdout)["problems"]}
    assert found == {("missing-handler", "half.defined"), ("handler-without-definition", "half.orphan")}


def test_params_violating_schema_are_rejected(site: Path, tmp_path: Path):
    params = {"type": "object", "properties": {"days": {"type": "integer"}}, "additionalProperties": False}
    make_dist(site, "cass-actions-p", ep_name="p", actions=[action_def("p.review", params=params)])
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"templates": [template_def("weekly", [{"action": "p.review", "params": {"days": "seven"}}])]}))
    out = run_cli("validate", str(f), site=site, env={ONLY: "p"})
    assert out.returncode == 1
    assert "weekly" in out.stdout and "$.templates[0].steps[0].params.days" in out.stdout and "'seven'" in out.stdout


def test_invalid_json_metadata_names_file_and_path(site: Path):
    make_dist(site, "cass-actions-bad", ep_name="bad", actions=[action_def("bad.one", priority="urgent")])
    out = run_cli("validate", site=site, env={ONLY: "bad"})
    assert out.returncode == 1
    assert "bad_actions.json" in out.stdout and "$.actions[0].priority" in out.stdout and "'urgent'" in out.stdout
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json", site=site, env={ONLY: "bad"}).stdout)}
    assert plugins["bad"]["problems"] == 1 and plugins["bad"]["distribution"] == "cass-actions-bad"
    # `list` still works and points at validate.
    listing = run_cli("list", site=site, env={ONLY: "bad"})
    assert listing.returncode == 0 and "cass-actions validate" in listing.stderr


def test_pack_raising_importerror_leaves_list_working(site: Path):
    make_dist(site, "cass-actions-good", ep_name="good", actions=[action_def("good.act")])
    make_dist(site, "cass-actions-broken", version="0.9.0", ep_name="broken",
              module_source="import a_module_that_does_not_exist\n")
    env = {ONLY: "good,broken"}
    listing = run_cli("list", "--json", site=site, env=env)
    assert listing.returncode == 0
    assert [r["id"] for r in json.loads(listing.stdout) if r["pack"] != "core"] == ["good.act"]
    assert "broken" in listing.stderr and "No module named 'a_module_that_does_not_exist'" in listing.stderr
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json", site=site, env=env).stdout)}
    assert plugins["broken"]["status"] == "error"
    assert plugins["broken"]["distribution"] == "cass-actions-broken" and plugins["broken"]["version"] == "0.9.0"
    assert "ModuleNotFoundError" in plugins["broken"]["error"] and "\n" not in plugins["broken"]["error"]
    assert plugins["good"]["status"] == "loaded" and plugins["good"]["actions"] == 1
    assert run_cli("validate", site=site, env=env).returncode == 0
    strict = run_cli("validate", "--strict", site=site, env=env)
    assert strict.returncode == 1 and "cass-actions-broken" in strict.stdout


def test_load_and_disable_plugins_env_and_disabled_pack_is_never_imported(site: Path, tmp_path: Path):
    marker = tmp_path / "imported.marker"
    make_dist(site, "cass-actions-good", ep_name="good", actions=[action_def("good.act")])
    make_dist(site, "cass-actions-trap", ep_name="trap",
              module_source=f"open({str(marker)!r}, 'w').close()\nraise ImportError('trap pack was imported')\n")
    disabled = run_cli("plugins", "--json", "--all", site=site, env={ONLY: "good,trap", "CASS_ACTIONS_DISABLE_PLUGINS": "trap"})
    status = {p["name"]: p["status"] for p in json.loads(disabled.stdout)}
    assert status["trap"] == "disabled" and status["good"] == "loaded"
    assert not marker.exists()
    # Selecting by distribution name works too, and unselected packs are not imported.
    only_good = run_cli("plugins", "--json", "--all", site=site, env={ONLY: "cass-actions-good"})
    status = {p["name"]: p["status"] for p in json.loads(only_good.stdout)}
    assert status["trap"] == "not-selected" and status["good"] == "loaded" and not marker.exists()
    # Empty: built-ins only.
    none = json.loads(run_cli("plugins", "--json", site=site, env={ONLY: ""}).stdout)
    assert [p["name"] for p in none] == ["core"]
    # The config file's settings do the same.
    cfg = tmp_path / "c.toml"
    cfg.write_text('[plugins]\nload = ["good", "trap"]\ndisable = ["trap"]\n')
    via_config = json.loads(run_cli("plugins", "--json", "--all", "--config", str(cfg), site=site).stdout)
    assert {p["name"]: p["status"] for p in via_config}["trap"] == "disabled" and not marker.exists()
    # Enabled, it is imported and reported.
    enabled = json.loads(run_cli("plugins", "--json", site=site, env={ONLY: "good,trap"}).stdout)
    assert {p["name"]: p["status"] for p in enabled}["trap"] == "error" and marker.exists()


def test_same_distribution_twice_on_the_path_loads_once(site: Path, tmp_path: Path):
    make_dist(site, "cass-actions-twice", ep_name="twice", actions=[action_def("twice.act")])
    mirror = tmp_path / "mirror"
    make_dist(mirror, "cass-actions-twice", ep_name="twice", actions=[action_def("twice.act")])
    out = run_cli("validate", "--json", site=site, env={ONLY: "twice", "PYTHONPATH": f"{site}:{mirror}"})
    assert out.returncode == 0, out.stdout
    plugins = json.loads(run_cli("plugins", "--json", "--all", site=site,
                                 env={ONLY: "twice", "PYTHONPATH": f"{site}:{mirror}"}).stdout)
    assert [p["status"] for p in plugins if p["name"] == "twice"] == ["loaded"]


def test_load_order_is_deterministic(site: Path):
    for name in ["zeta", "alpha", "mid"]:
        make_dist(site, f"cass-actions-{name}", ep_name=name, actions=[action_def(f"{name}.act")])
    names = [p["name"] for p in json.loads(run_cli("plugins", "--json", site=site, env={ONLY: "zeta,alpha,mid"}).stdout)]
    assert names == ["core", "alpha", "mid", "zeta"]


def test_usage_errors_exit_2_and_bad_config_exits_1_without_traceback(tmp_path: Path):
    assert run_cli("list", "--tier", "9").returncode == 2
    assert run_cli("no-such-command").returncode == 2
    cfg = tmp_path / "c.toml"
    cfg.write_text("[budget]\ndaily_usd = 'lots'\n")
    out = run_cli("list", "--config", str(cfg))
    assert out.returncode == 1
    assert str(cfg) in out.stderr and "$.budget.daily_usd" in out.stderr and "Traceback" not in out.stderr
    cfg.write_text("[budget\n")
    out = run_cli("validate", "--config", str(cfg))
    assert out.returncode == 1 and "not valid TOML" in out.stderr and "Traceback" not in out.stderr


def test_global_options_work_before_and_after_the_command(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[budget]\ndaily_usd = 'bad'\n")
    before = run_cli("--config", str(cfg), "list")
    after = run_cli("list", "--config", str(cfg))
    assert before.returncode == after.returncode == 1


def test_list_does_not_import_the_anthropic_sdk_or_psycopg():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from cass_actions_core.cli.main import main\n"
        "try:\n    main(['list', '--json'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "try:\n    main(['validate'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m == 'anthropic' or m.startswith('anthropic.') or m.startswith('httpx')\n"
        "               or m == 'psycopg' or m.startswith('psycopg.'))\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout, out.stdout


def test_a_load_list_naming_a_pack_that_is_not_installed_is_reported_with_the_closest_name(site: Path):
    make_dist(site, "cass-actions-demo", ep_name="demo", actions=[action_def("demo.alpha")])
    env = {ONLY: "demo,dmeo"}
    plugins = run_cli("plugins", "--json", site=site, env=env)
    assert plugins.returncode == 0, plugins.stderr
    missing = [r for r in json.loads(plugins.stdout) if r["name"] == "dmeo"]
    assert [r["status"] for r in missing] == ["missing"] and "did you mean 'demo'?" in missing[0]["error"]
    lenient = run_cli("validate", site=site, env=env)
    assert lenient.returncode == 0 and "'dmeo'" in lenient.stderr and "CASS_ACTIONS_LOAD_PLUGINS" in lenient.stderr
    strict = run_cli("validate", "--strict", site=site, env=env)
    assert strict.returncode == 1 and "[pack dmeo]" in strict.stdout and "Traceback" not in strict.stderr
    # The installed pack named by its distribution name is not "missing".
    assert run_cli("validate", "--strict", site=site, env={ONLY: "cass-actions-demo"}).returncode == 0


def test_an_id_outside_the_packs_namespace_fails_validate_naming_the_file_and_the_fix(site: Path):
    make_dist(site, "cass-actions-hello", ep_name="hello", actions=[action_def("hello.greet"), action_def("greeting.wave")])
    out = run_cli("validate", site=site, env={ONLY: "hello"})
    assert out.returncode == 1
    line = next(ln for ln in out.stdout.splitlines() if "greeting.wave" in ln)
    assert "actions.json" in line and "$.actions[1].id" in line and "'hello.wave'" in line


COMMAND_PACK = '''
import click
from cass_actions_core import hookimpl
from cass_actions_core.cli.state import CLIState


@hookimpl
def register_commands(cli):
    @cli.group("hello")
    def hello():
        """A pack's group."""

    @hello.command("where")
    @click.pass_obj
    def where(state: CLIState):
        """Print the data folder and config file the command sees."""
        click.echo(f"data={state.data_dir} config={state.config().source}")

    @cli.command("hello-top")
    @click.pass_obj
    def top(state: CLIState):
        """A pack's plain command."""
        click.echo(f"data={state.data_dir}")
'''


def test_pack_commands_take_the_global_options_after_their_name_like_every_command(site: Path, tmp_path: Path):
    make_dist(site, "cass-actions-hello", ep_name="hello", module="hello_cmds", module_source=COMMAND_PACK)
    env = {ONLY: "hello"}
    config = tmp_path / "c.toml"
    config.write_text('daemon_id = "cass"\n')
    data = tmp_path / "data"
    for args in (["hello", "where", "--data-dir", str(data), "--config", str(config)],
                 ["hello", "--data-dir", str(data), "--config", str(config), "where"],
                 ["--data-dir", str(data), "--config", str(config), "hello", "where"]):
        out = run_cli(*args, site=site, env=env)
        assert out.returncode == 0, (args, out.stderr)
        assert out.stdout.strip() == f"data={data.resolve()} config={config.resolve()}", args
    out = run_cli("hello-top", "--data-dir", str(data), site=site, env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"data={data.resolve()}"
    assert "--data-dir" in run_cli("hello", "where", "--help", site=site, env=env).stdout


# -- issue 10: validate saves its result; a warm run confirms nothing changed and prints it again --------

BUNDLED = "journal,memory,session,wonderland"

FILE_PACK_PLUGIN = '''
from cass_actions_core.packs import file_pack_hooks

with open({log!r}, "a") as log:  # counts the imports: a warm validate imports no pack
    log.write("imported\\n")

register_actions, register_templates = file_pack_hooks(__package__, {{a: ".handlers:run" for a in {ids!r}}})
'''

ASYNC_HANDLER = "async def run(ctx):\n    return {'summary': 'ok'}\n"


def make_file_pack(site: Path, name: str, actions: list[dict], templates: list[dict] | None = None,
                   log: Path | None = None) -> Path:
    """An installed pack laid out the usual way: a package with actions.json, templates.json, a
    handler module and a plugin module using ``file_pack_hooks``; returns the package folder."""
    package = site / f"cass_actions_{name}"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "handlers.py").write_text(ASYNC_HANDLER)
    (package / "plugin.py").write_text(FILE_PACK_PLUGIN.format(log=str(log or site / "imports.log"),
                                                                 ids=[a["id"] for a in actions]))
    (package / "actions.json").write_text(json.dumps({"actions": actions}, indent=2))
    if templates is not None:
        (package / "templates.json").write_text(json.dumps({"templates": templates}, indent=2))
    info = site / f"cass_actions_{name}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: cass-actions-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[cass_actions]\n{name} = cass_actions_{name}.plugin\n")
    (info / "RECORD").write_text("")
    return package


def saved_results(cache: Path) -> list[Path]:
    """The saved validate results in a cache folder."""
    return sorted(cache.glob("validate-*/*.json"))


def seen(out) -> tuple[str, str, int]:
    return out.stdout, out.stderr, out.returncode


def test_a_warm_validate_prints_byte_for_byte_what_a_fresh_check_prints(site: Path, tmp_path: Path):
    log = tmp_path / "imports.log"
    make_file_pack(site, "demo", [action_def("demo.alpha", params={
        "type": "object", "additionalProperties": False, "properties": {"topic": {"type": "string"}}})],
        [template_def("demo_ok", ["demo.alpha"]),
         template_def("demo_typo", [{"action": "demo.alpah"}]),
         template_def("demo_params", [{"action": "demo.alpha", "params": {"topic": 3}}], category="growth")],
        log=log)
    config = tmp_path / "c.toml"
    config.write_text("[budget.allocations]\ngrowth = 0.0\n")  # a warning besides the problems
    cache = tmp_path / "cache"
    env = {ONLY: "demo", "CASS_ACTIONS_CACHE_DIR": str(cache)}
    for args in (["validate"], ["validate", "--json"], ["validate", "--strict", "--json"], ["validate", "--strict"]):
        fresh = run_cli(*args, "--no-cache", "--config", str(config), site=site, env=env)
        assert fresh.returncode == 1 and "demo.alpah" in fresh.stdout and "params.topic" in fresh.stdout
        assert "'growth' gets no money" in fresh.stdout  # the warning
        first = run_cli(*args, "--config", str(config), site=site, env=env)
        warm = run_cli(*args, "--config", str(config), site=site, env=env)
        assert seen(first) == seen(warm) == seen(fresh), args
    # One run imported the pack and saved the result; every other cached run printed it again.
    # (The --no-cache runs check afresh every time.)
    assert log.read_text().count("imported") == 1 + 4
    assert len(saved_results(cache)) == 1


def test_validate_checks_again_when_a_pack_file_changes_and_accepts_it_again_when_fixed(site: Path, tmp_path: Path):
    package = make_file_pack(site, "demo", [action_def("demo.alpha"), action_def("demo.gamma")],
                             [template_def("demo_one", ["demo.alpha"])])
    cache = tmp_path / "cache"
    env = {ONLY: "demo", "CASS_ACTIONS_CACHE_DIR": str(cache)}
    assert run_cli("validate", site=site, env=env).returncode == 0
    assert saved_results(cache)
    templates = package / "templates.json"
    good = templates.read_text()
    # The same size, written at once (possibly in the same tick of the file system's clock).
    templates.write_text(good.replace('"demo.alpha"', '"demo.alphx"'))
    bad = run_cli("validate", site=site, env=env)
    assert bad.returncode == 1 and "unregistered action 'demo.alphx'" in bad.stdout, bad.stdout
    assert run_cli("validate", site=site, env=env).returncode == 1  # and stays refused
    templates.write_text(good)
    assert run_cli("validate", site=site, env=env).stdout.startswith("OK: 3 action(s) and 2 template(s)")  # core's too

    # A template added, an action's params schema changed, a handler made synchronous: each is seen.
    templates.write_text(json.dumps({"templates": [template_def("demo_one", ["demo.alpha"]),
                                                   template_def("demo_two", ["demo.gamma"])]}))
    assert "and 3 template(s)" in run_cli("validate", site=site, env=env).stdout
    actions = package / "actions.json"
    doc = json.loads(actions.read_text())
    doc["actions"][0]["params"] = {"type": "object", "required": ["topic"]}
    actions.write_text(json.dumps(doc))
    out = run_cli("validate", site=site, env=env)
    assert out.returncode == 1 and "'topic' is a required property" in out.stdout
    actions.write_text(json.dumps({"actions": [action_def("demo.alpha"), action_def("demo.gamma")]}))
    assert run_cli("validate", site=site, env=env).returncode == 0
    (package / "handlers.py").write_text("def run(ctx):\n    return {}\n")
    out = run_cli("validate", site=site, env=env)
    assert out.returncode == 1 and "must be an 'async def' function" in out.stdout


def test_validate_checks_again_when_the_config_or_its_variables_change(site: Path, tmp_path: Path):
    make_file_pack(site, "demo", [action_def("demo.alpha", category="curiosity")])
    config = tmp_path / "c.toml"
    config.write_text("[budget.allocations]\ncuriosity = 0.1\n")
    env = {ONLY: "demo", "CASS_ACTIONS_CACHE_DIR": str(tmp_path / "cache"), "CASS_ACTIONS_CONFIG": str(config)}
    for _ in range(2):
        out = run_cli("validate", site=site, env=env)
        assert out.returncode == 0 and "warning" not in out.stdout
    config.write_text("[budget.allocations]\ncuriosity = 0.0\n")  # the same size, at once
    out = run_cli("validate", site=site, env=env)
    assert out.returncode == 0 and "warning:" in out.stdout and "'curiosity' gets no money" in out.stdout
    config.write_text("[budget.allocations]\ncuriosity = 0.1\n")
    assert "warning" not in run_cli("validate", site=site, env=env).stdout
    out = run_cli("validate", site=site, env={**env, "CASS_ACTIONS_DAILY_BUDGET_USD": "0"})
    assert "budget.daily_usd is 0" in out.stdout


def test_validate_sees_packs_installed_removed_and_disabled(site: Path, tmp_path: Path):
    env = {"CASS_ACTIONS_DISABLE_PLUGINS": BUNDLED, "CASS_ACTIONS_CACHE_DIR": str(tmp_path / "cache")}
    make_file_pack(site, "one", [action_def("one.a")])

    def counts(**extra: str) -> str:
        out = run_cli("validate", site=site, env={**env, **extra})
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout.split(" are valid")[0]

    core = counts(CASS_ACTIONS_LOAD_PLUGINS="")
    one = counts()
    assert one != core and one == counts()
    make_file_pack(site, "two", [action_def("two.a"), action_def("two.b")])
    two = counts()
    assert int(two.split()[1]) == int(one.split()[1]) + 2
    assert counts(CASS_ACTIONS_DISABLE_PLUGINS=BUNDLED + ",two") == one
    shutil.rmtree(site / "cass_actions_two-1.0.dist-info")
    assert counts() == one


def test_a_broken_pack_or_handler_is_reported_every_time_and_never_saved(site: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    make_dist(site, "cass-actions-broken", ep_name="broken", module_source="import a_module_that_does_not_exist\n")
    env = {ONLY: "broken", "CASS_ACTIONS_CACHE_DIR": str(cache)}
    for _ in range(2):
        out = run_cli("validate", site=site, env=env)
        assert out.returncode == 0 and "a_module_that_does_not_exist" in out.stderr
    package = make_file_pack(site, "lazy", [action_def("lazy.a")])
    (package / "handlers.py").write_text("import another_module_that_does_not_exist\n")
    for _ in range(2):
        out = run_cli("validate", site=site, env={**env, ONLY: "lazy"})
        assert out.returncode == 1 and "another_module_that_does_not_exist" in out.stdout
    # A pack asking another program (or the network) at registration: no file records the answer.
    make_dist(site, "cass-actions-asks", ep_name="asks", actions=[action_def("asks.a")],
              extra="import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'], check=True)")
    for _ in range(2):
        assert run_cli("validate", site=site, env={**env, ONLY: "asks"}).returncode == 0
    assert saved_results(cache) == []


OUTSIDE_PACK = '''
import os
from cass_actions_core import hookimpl

async def run(ctx):
    return {{"summary": "ok"}}

@hookimpl
def register_actions(register):
    register.load({{"actions": [{action!r}]}})
    register.handler("outside.a", run)

@hookimpl
def register_templates(register):
    register.load({templates!r})  # a file outside the pack's own folder
    if os.environ.get("OUTSIDE_MORE") == "1":
        register.load({{"templates": [{extra!r}]}})
'''


def test_validate_sees_files_a_pack_reads_from_elsewhere_and_variables_it_looks_up(site: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere" / "templates.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps({"templates": [template_def("outside_one", ["outside.a"])]}))
    make_dist(site, "cass-actions-outside", ep_name="outside", module_source=OUTSIDE_PACK.format(
        action=action_def("outside.a"), templates=str(elsewhere), extra=template_def("outside_more", ["outside.a"])))
    env = {ONLY: "outside", "CASS_ACTIONS_CACHE_DIR": str(tmp_path / "cache"), "OUTSIDE_MORE": None}
    # (core's template besides the pack's)
    assert "and 2 template(s)" in run_cli("validate", site=site, env=env).stdout
    assert "and 3 template(s)" in run_cli("validate", site=site, env={**env, "OUTSIDE_MORE": "1"}).stdout
    assert "and 2 template(s)" in run_cli("validate", site=site, env={**env, "OUTSIDE_MORE": "0"}).stdout
    elsewhere.write_text(json.dumps({"templates": [template_def("outside_one", ["outside.b"])]}))
    out = run_cli("validate", site=site, env=env)
    assert out.returncode == 1 and "'outside.b'" in out.stdout


def test_validate_no_cache_neither_reads_nor_saves(site: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    make_file_pack(site, "demo", [action_def("demo.alpha")])
    env = {ONLY: "demo", "CASS_ACTIONS_CACHE_DIR": str(cache)}
    assert run_cli("validate", "--no-cache", site=site, env=env).returncode == 0
    assert saved_results(cache) == []
    assert run_cli("validate", site=site, env=env).returncode == 0
    (entry,) = saved_results(cache)
    entry.write_text(entry.read_text().replace('"actions": 2', '"actions": 99'))  # a doctored entry is believed ...
    assert "OK: 99 action(s)" in run_cli("validate", site=site, env=env).stdout
    assert "OK: 2 action(s)" in run_cli("validate", "--no-cache", site=site, env=env).stdout  # ... --no-cache is not


def test_a_file_rewritten_within_its_clocks_tick_is_checked_by_content(site: Path, tmp_path: Path):
    package = make_file_pack(site, "demo", [action_def("demo.alpha")], [template_def("demo_one", ["demo.alpha"])])
    cache = tmp_path / "cache"
    env = {ONLY: "demo", "CASS_ACTIONS_CACHE_DIR": str(cache)}
    templates = package / "templates.json"
    assert run_cli("validate", site=site, env=env).returncode == 0
    # Rewritten with the same size and (as a coarse file system clock would leave it) the same time:
    # only the content tells, and a file this fresh had its content hash saved.
    before = templates.stat()
    templates.write_text(templates.read_text().replace('"demo.alpha"', '"demo.alphx"'))
    os.utime(templates, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert templates.stat().st_size == before.st_size
    out = run_cli("validate", site=site, env=env)
    assert out.returncode == 1 and "'demo.alphx'" in out.stdout
    # Files last changed long before they were recorded are compared by size and time alone.
    old = before.st_mtime_ns - 3_000_000_000
    for path in package.iterdir():
        os.utime(path, ns=(old, old))
    assert run_cli("validate", site=site, env=env).returncode == 1
    (entry,) = saved_results(cache)
    files = {f[0]: f for f in json.loads(entry.read_text())["files"]}
    assert files[str(templates)][3] is None and files[str(templates)][2] == old
