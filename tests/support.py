"""Test helpers shared by the core tests: hand-made packs, installed-looking distributions, the CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from cass_actions_core import hookimpl

REPO = Path(__file__).resolve().parents[1]


def action_def(action_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid action definition with sensible values; override any field."""
    base: dict[str, Any] = {
        "id": action_id,
        "name": action_id.replace(".", " ").replace("_", " ").title(),
        "description": f"Test action {action_id}.",
        "tier": 2,
        "category": "reflection",
        "uses_llm": True,
        "estimated_cost_usd": 0.02,
        "max_cost_usd": 0.05,
        "default_duration_minutes": 5,
        "timeout_seconds": 60,
        "priority": "normal",
        "requires_idle": False,
        "requires_approval": False,
        "idempotent": True,
        "params": {"type": "object", "additionalProperties": False, "properties": {}},
    }
    base.update(overrides)
    return base


def template_def(template_id: str, steps: list[Any], **overrides: Any) -> dict[str, Any]:
    """A valid template; ``steps`` are action ids or full step mappings."""
    base: dict[str, Any] = {
        "id": template_id,
        "name": template_id.replace("_", " ").title(),
        "description": f"Test template {template_id}.",
        "category": "reflection",
        "steps": [s if isinstance(s, dict) else {"action": s} for s in steps],
    }
    base.update(overrides)
    return base


async def _ok_handler(ctx: Any) -> dict[str, Any]:
    return {"summary": f"ran {ctx.action_id}"}


class HandPack:
    """A plugin object built by hand: action definitions, handlers and templates."""

    def __init__(self, actions: list[dict[str, Any]] | None = None, templates: list[dict[str, Any]] | None = None,
                 handlers: dict[str, Any] | None = None, *, handle_all: bool = True) -> None:
        self.actions = actions or []
        self.templates = templates or []
        self.handlers = dict(handlers or {})
        if handle_all:
            for a in self.actions:
                self.handlers.setdefault(a["id"], _ok_handler)

    @hookimpl
    def register_actions(self, register: Any) -> None:
        if self.actions:
            register.load({"actions": self.actions})
        for action_id, fn in self.handlers.items():
            register.handler(action_id, fn)

    @hookimpl
    def register_templates(self, register: Any) -> None:
        if self.templates:
            register.load({"templates": self.templates})






PACK_MODULE = '''
import json
from pathlib import Path
from cass_actions_core import hookimpl
{extra}

HERE = Path(__file__).resolve().parent

async def _handler(ctx):
    return {{"summary": "ok"}}

@hookimpl
def register_actions(register):
    meta = HERE / "{module}_actions.json"
    if meta.exists():
        register.load(meta)
    for action_id in {handlers!r}:
        register.handler(action_id, _handler)

@hookimpl
def register_templates(register):
    tpl = HERE / "{module}_templates.json"
    if tpl.exists():
        register.load(tpl)
'''


def make_dist(site: Path, dist: str, *, version: str = "1.0.0", module: str | None = None, ep_name: str | None = None,
              actions: list[dict[str, Any]] | None = None, templates: list[dict[str, Any]] | None = None,
              handlers: list[str] | None = None, raw_actions: str | None = None, module_source: str | None = None,
              extra: str = "") -> Path:
    """Write a distribution that importlib.metadata sees as installed under ``site``.

    It has a ``*.dist-info`` folder with an entry point in the ``cass_actions`` group and
    a module registering the given actions (``raw_actions`` writes the metadata file
    verbatim, to test malformed JSON) and templates.
    """
    module = module or dist.replace("-", "_")
    ep_name = ep_name or dist
    site.mkdir(parents=True, exist_ok=True)
    if handlers is None:
        handlers = [a["id"] for a in actions or []]
    source = module_source or PACK_MODULE.format(module=module, handlers=handlers, extra=extra)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    if raw_actions is not None:
        (site / f"{module}_actions.json").write_text(raw_actions)
    elif actions is not None:
        (site / f"{module}_actions.json").write_text(json.dumps({"actions": actions}, indent=2))
    if templates is not None:
        (site / f"{module}_templates.json").write_text(json.dumps({"templates": templates}, indent=2))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[cass_actions]\n{ep_name} = {module}\n")
    (info / "RECORD").write_text("")
    return site


def run_cli(*args: str, site: Path | None = None, env: dict[str, str | None] | None = None,
            cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``cass-actions`` in a subprocess, with ``site`` on its path; returns the result.
    ``env`` adds variables to this process's environment (``None``: remove that variable)."""
    full_env = dict(os.environ)
    if site is not None:
        full_env["PYTHONPATH"] = os.pathsep.join([str(site), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run([sys.executable, "-m", "cass_actions_core.cli.main", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


def only_allocations(**shares: float) -> dict[str, float]:
    """A ``[budget.allocations]`` table giving money to exactly these categories: a config file's table
    adjusts the defaults category by category, so every other default category is set to 0."""
    from cass_actions_core.config import DEFAULT_ALLOCATIONS

    return {**{category: 0.0 for category in DEFAULT_ALLOCATIONS}, **shares}

#: Environment for a `cass-actions run` whose LLM work goes to the offline provider: the daemon
#: refuses to start on the default provider (anthropic) without an API key.
OFFLINE = {"CASS_ACTIONS_LLM_PROVIDER": "offline"}


#: The ``sim`` test pack's module (entry point ``sim``): an LLM action that writes an artifact, a free
#: one, one that fails, one that needs approval, and an expensive one (see :func:`make_sim_pack`).
SIM_PACK = '''
from pathlib import Path
from cass_actions_core import hookimpl
from cass_actions_core.actions import ActionFailed

HERE = Path(__file__).resolve().parent

async def think(ctx):
    reply = await ctx.llm.complete("Think about " + (ctx.focus or "the day"))
    path = ctx.write_text("thoughts/" + ctx.local_date.isoformat() + ".md", reply.text + "\\n")
    ctx.add_artifact("markdown", "Thoughts", path)
    return {"summary": reply.text[:50]}

async def tidy(ctx):
    return {"summary": "tidied"}

async def fail(ctx):
    raise ActionFailed("nothing to work with")

@hookimpl
def register_actions(register):
    register.load(HERE / "simpack_actions.json")
    register.handler("sim.think", think)
    register.handler("sim.tidy", tidy)
    register.handler("sim.fail", fail)
    register.handler("sim.build", tidy)
    register.handler("sim.splurge", think)

@hookimpl
def register_templates(register):
    register.load(HERE / "simpack_templates.json")
'''


SIM_TEMPLATES = {
    "morning_thoughts": (["sim.think", "sim.tidy"], {"preferred_windows": [{"start_hour": 6, "end_hour": 12}]}),
    "broken": (["sim.fail"], {"category": "system", "preferred_windows": [{"start_hour": 12, "end_hour": 18}]}),
    "build": (["sim.tidy", "sim.build"], {"category": "system", "preferred_windows": [{"start_hour": 18, "end_hour": 22}]}),
    "splurge": (["sim.splurge"], {"category": "creative", "preferred_windows": [{"start_hour": 12, "end_hour": 18}]}),
    "late_thoughts": (["sim.think"], {"preferred_windows": [{"start_hour": 22, "end_hour": 6}]}),
}


def make_sim_pack(site: Path, *, module: str = "simpack", templates: tuple[str, ...] | None = None) -> Path:
    """Install the ``sim`` test pack into ``site`` (all of :data:`SIM_TEMPLATES`, or only ``templates``)."""
    free = dict(tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system")
    make_dist(site, f"cass-actions-{module}", ep_name="sim", module=module,
              module_source=SIM_PACK.replace("simpack_", f"{module}_"),
              actions=[action_def("sim.think", category="reflection"), action_def("sim.tidy", **free),
                       action_def("sim.fail", **free), action_def("sim.build", **{**free, "requires_approval": True}),
                       action_def("sim.splurge", category="creative", estimated_cost_usd=0.6, max_cost_usd=0.7)],
              templates=[template_def(tid, steps, **extra) for tid, (steps, extra) in SIM_TEMPLATES.items()
                         if templates is None or tid in templates])
    return site
