"""Work summaries: what a unit did and why, written when it ends, whatever the outcome.

A summary is built from the unit's stored action runs (one source of truth for results
and costs) and stored by unit id. Its shape is ``schemas/work-summary.schema.json`` (the
earlier system wrote records missing required fields: B2). Where validation earns its
cost: what pack code contributes (the handler's result: summary, data, artifacts,
insights, questions) is checked where it enters, by ``ActionResult.check``; the rest is
built here from typed rows, so checking every record against the schema on the hot path
would only re-check this module. The test suite does that instead, with
:func:`summary_problems`, on every summary of its simulated days and for every outcome.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from cass_actions_core import schema_files
from cass_actions_core.text import slugify

if TYPE_CHECKING:
    from cass_actions_core.store import Store, UnitRow


def unit_slug(local_date: date, phase: str, name: str, unit_id: str) -> str:
    """``work/2026-11-26/morning-reflection-block-1a2b3c4d5e6f``.

    Twelve hex digits of the unit id keep slugs unique in practice (four collided after
    a few hundred units of one template in one phase).
    """
    return f"work/{local_date.isoformat()}/{phase}-{slugify(name, 30) or 'unit'}-{unit_id[:12].lower()}"


def _tokens(usage: dict[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (usage or {}).items() if isinstance(v, (int, float))}


def _add_tokens(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def summary_problems(record: dict[str, Any]) -> list[str]:
    """Why ``record`` breaks the work-summary schema (``"$.path: message"`` each); empty when it is valid."""
    return [f"{path}: {message}" for path, message in schema_files.validate(schema_files.SUMMARY, record, cache=False)]


def build_summary(store: Store, unit: UnitRow, *, daemon_id: str, plan_source: str | None = None) -> dict[str, Any]:
    """Build the summary record of ``unit`` from its stored action runs."""
    all_runs = store.action_runs_for_unit(unit.id)  # step order, then attempt order
    by_step: dict[int, list[Any]] = {}
    for r in all_runs:
        by_step.setdefault(r.step_index, []).append(r)
    actions: list[dict[str, Any]] = []
    cost = 0.0
    tokens: dict[str, int] = {}
    insights: list[str] = []
    questions: list[str] = []
    artifacts: list[dict[str, Any]] = []
    for index, step in enumerate(unit.steps):
        attempts = by_step.get(index)
        if not attempts:
            continue
        run = attempts[-1]  # the latest attempt says how the step ended
        result = run.result or {}
        llm = result.get("llm", {})
        # Money and tokens of every attempt count: history and the ledger must agree.
        step_tokens: dict[str, int] = {}
        step_cost = 0.0
        calls = 0
        for attempt in attempts:
            attempt_llm = (attempt.result or {}).get("llm", {})
            _add_tokens(step_tokens, _tokens(attempt_llm.get("usage")))
            step_cost += attempt.cost_usd or 0.0
            calls += int(attempt_llm.get("calls", 0))
        _add_tokens(tokens, step_tokens)
        cost += step_cost
        insights += [str(i) for i in result.get("insights", [])]
        questions += [str(q) for q in result.get("questions", [])]
        arts = [dict(a) for a in result.get("artifacts", [])]
        artifacts += arts
        actions.append({
            "step": index,
            "action_id": run.action_id,
            "status": "completed" if run.status == "completed" else "failed" if run.status == "failed" else "skipped",
            "optional": bool(step.get("optional", False)),
            "summary": str(result.get("summary", "")),
            "error": run.error,
            "cost_usd": round(step_cost, 6),
            "llm_calls": calls,
            "tokens": step_tokens,
            "stop_reason": llm.get("stop_reason"),
            "transcript_ids": [t for a in attempts for t in (a.result or {}).get("llm", {}).get("transcript_ids", [])],
            "artifacts": arts,
            "data": dict(result.get("data", {})),
            "attempts": len(attempts),
        })
    # Money-aware decisions: the planner's for the unit, then each step's own (a cheaper model mid-day).
    choices = [str(c) for c in unit.data.get("choices", [])]
    for run in all_runs:
        choices += [str(c) for c in (run.result or {}).get("choices", [])]
    duration = None
    if unit.started_at and unit.finished_at:
        duration = round((unit.finished_at - unit.started_at).total_seconds() / 60, 3)
    record = {
        "unit_id": unit.id,
        "slug": unit_slug(unit.local_date, unit.phase, unit.name, unit.id),
        "daemon_id": daemon_id,
        "name": unit.name,
        "template_id": unit.template_id,
        "local_date": unit.local_date.isoformat(),
        "phase": unit.phase,
        "category": unit.category,
        "status": unit.status,
        "reason": unit.reason,
        "focus": unit.focus,
        "motivation": unit.motivation,
        "plan_source": plan_source,
        "started_at": _iso(unit.started_at),
        "finished_at": _iso(unit.finished_at),
        "duration_minutes": duration,
        "narrative": narrative(unit, actions, round(cost, 6), choices),
        "cost_usd": round(cost, 6),
        "tokens": tokens,
        "insights": insights,
        "questions_raised": questions,
        "artifacts": artifacts,
        "actions": actions,
        "choices": choices,
    }
    return record


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def narrative(unit: UnitRow, actions: list[dict[str, Any]], cost: float, choices: list[str] | None = None) -> str:
    """A readable account of the unit, from its outcome and its actions' own summaries."""
    outcome = {
        "completed": "completed", "failed": "failed", "expired": "expired without running to the end",
        "cancelled": "was cancelled", "abandoned": "was abandoned after a crash",
        "budget_blocked": "is parked: budget", "awaiting_approval": "is parked: waiting for approval",
    }.get(unit.status, unit.status)
    parts = [f"{unit.phase.capitalize()} of {unit.local_date.isoformat()}: {unit.name} {outcome}"]
    if unit.reason:
        parts[-1] += f" ({unit.reason})"
    spent = f"${cost:.2f}" if cost == round(cost, 2) else f"${cost:.6f}".rstrip("0")
    parts[-1] += f"; {len([a for a in actions if a['status'] == 'completed'])}/{len(unit.steps)} step(s) done, {spent} spent."
    if unit.focus:
        parts.append(f"Focus: {unit.focus.rstrip('.')}.")
    if unit.motivation:
        parts.append(f"Why: {unit.motivation.rstrip('.')}.")
    for choice in choices or []:
        parts.append(f"Choice: {choice.rstrip('.')}.")
    for a in actions:
        line = f"Step {a['step'] + 1} {a['action_id']} {a['status']}"
        if a.get("summary"):
            line += f": {a['summary']}"
        if a.get("error"):
            line += f" (error: {a['error']})"
        parts.append(line.rstrip(".") + ".")
    return " ".join(parts)
