"""End to end: the four bundled packs, installed, over a simulated day (the README's main job)."""

from __future__ import annotations

import json
from pathlib import Path

from support import run_cli

PACKS = "journal,memory,wonderland,session"


def test_the_catalogue_has_30_plus_actions_in_all_five_tiers_and_validates_strictly():
    listed = json.loads(run_cli("list", "--json", env={"CASS_ACTIONS_LOAD_PLUGINS": PACKS}).stdout)
    assert len(listed) >= 30
    assert {r["tier"] for r in listed} == {1, 2, 3, 4, 5}
    assert {r["pack"] for r in listed} == {"core", "journal", "memory", "wonderland", "session"}
    templates = json.loads(run_cli("list", "--templates", "--json", env={"CASS_ACTIONS_LOAD_PLUGINS": PACKS}).stdout)
    assert len(templates) >= 17
    assert sum(1 for t in templates if len(t["steps"]) > 1) >= 5
    used = {s["action"] for t in templates for s in t["steps"]}
    assert {r["id"] for r in listed} <= used, "every action is used by at least one template"
    strict = run_cli("validate", "--strict", env={"CASS_ACTIONS_LOAD_PLUGINS": PACKS})
    assert strict.returncode == 0, strict.stdout + strict.stderr


def test_a_simulated_day_with_the_four_packs_does_real_work(tmp_path: Path):
    data = tmp_path / "day"
    out = run_cli("simulate", "--json", "--start", "2026-11-26", "--data-dir", str(data), env={"CASS_ACTIONS_LOAD_PLUGINS": PACKS})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    workspace = data / "workspace"
    # a journal entry for the day, written in its night
    entry = workspace / "journal" / "2026-11-26.md"
    assert entry.exists() and "[offline]" in entry.read_text()
    # summarised conversations: the planner picks which memory template runs, each writes one
    # summary per demo conversation it handled
    summaries = {p.name for p in (workspace / "memory" / "summaries").glob("*.md")}
    assert summaries and summaries <= {"conv-short.md", "conv-garden.md", "conv-reading.md"}, summaries
    # a wonderland journal with at least one recorded experience
    wl = (workspace / "wonderland" / "journal" / "2026-11-26.md").read_text()
    assert "<!-- wonderland-flush 2026-11-26/" in wl and any(f"· {kind} ·" in wl for kind in ("Exploration", "Encounter", "Reflection", "Creation")), wl
    # at least one session artifact
    sessions = list((workspace / "session" / "sessions" / "2026-11-26").glob("*.md"))
    assert sessions and all(p.read_text().strip() for p in sessions)
    # costs recorded per action
    history = json.loads(run_cli("history", "--json", "--data-dir", str(data), env={"CASS_ACTIONS_LOAD_PLUGINS": PACKS}).stdout)
    llm_steps = [a for h in history for a in h["actions"] if a["llm_calls"] > 0]
    assert llm_steps and all(a["cost_usd"] > 0 and a["tokens"]["output_tokens"] > 0 for a in llm_steps)
    assert result["cost_usd"] > 0 and set(result["cost_by_category"]) >= {"journal", "memory", "reflection"}
    assert result["by_status"].get("failed", 0) == 0, result["summaries"]
