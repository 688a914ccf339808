"""Day plans until the LLM planner lands: a plan file given by hand, or templates in order.

A plan maps each day phase to an ordered list of :class:`PlanItem` (a template id, a
focus, a motivation). It is persisted once per local date; re-planning a date replaces
that date's not-yet-started units (the earlier system stacked stale units on top: F9).
Unknown template ids in a plan file are reported, never silently skipped (F8).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from cass_actions_core import schema_files
from cass_actions_core.catalogue import Catalogue, closest
from cass_actions_core.config import PhaseSettings
from cass_actions_core.models import Priority, Template
from cass_actions_core.problems import UserError, read_user_file

PHASE_ORDER = ("morning", "afternoon", "evening", "night")


@dataclass(frozen=True)
class PlanItem:
    """One planned unit: which template, what to focus on, and why."""

    template: str
    focus: str | None = None
    motivation: str | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DayPlan:
    """A day's plan: items per phase, where it came from, and why."""

    day: date
    phases: dict[str, list[PlanItem]]
    source: str
    reason: str
    intention: str = ""
    dropped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping, as stored."""
        return {
            "date": self.day.isoformat(), "intention": self.intention, "source": self.source, "reason": self.reason,
            "dropped": self.dropped,
            "phases": {p: [asdict(i) for i in items] for p, items in self.phases.items()},
        }


def phase_hours(settings: PhaseSettings) -> dict[str, list[int]]:
    """The local hours each phase covers (night wraps midnight)."""
    starts = {"morning": settings.morning, "afternoon": settings.afternoon, "evening": settings.evening, "night": settings.night}
    out = {}
    for i, phase in enumerate(PHASE_ORDER):
        start, end = starts[phase], starts[PHASE_ORDER[(i + 1) % 4]]
        out[phase] = [(start + h) % 24 for h in range((end - start) % 24)]
    return out


def window_fit(template: Template, hours: list[int], day: date) -> float:
    """How well a phase suits a template: mean window score over the phase's hours."""
    weekday = day.weekday()
    # Hours after midnight in the night phase fall on the next weekday.
    scores = [template.window_score(h, weekday if h >= hours[0] else (weekday + 1) % 7) for h in hours]
    return sum(scores) / len(scores) if scores else 0.0


def plan_from_templates(catalogue: Catalogue, day: date, settings: PhaseSettings, *, max_per_phase: int,
                        phases: tuple[str, ...] = PHASE_ORDER) -> DayPlan:
    """A deterministic plan: each template once, in the phase its preferred windows fit best.

    Templates with windows come first, each group by priority, then id. One with windows goes to its best-fitting
    phase with room (ties: the earlier phase), and is left out (with the reason) when
    its windows touch none of the phases planned; one without windows fills the phase
    with the most room left. Only ``phases`` are planned (a mid-day start plans the rest of
    the day). Templates in a category with a zero allocation are left out, with a reason.
    """
    hours = phase_hours(settings)
    plan: dict[str, list[PlanItem]] = {p: [] for p in phases}
    dropped: list[str] = []
    # Templates with preferred windows are placed first, so one that may run any time
    # never takes the slot of one that fits only this phase.
    templates = sorted((t.template for t in catalogue.templates.values()),
                       key=lambda t: (not t.preferred_windows, Priority.of(t.priority), t.id))
    allocations = catalogue.config.budget.allocations
    for template in templates:
        if allocations.get(template.category, 0.0) <= 0:
            dropped.append(f"{template.id}: category {template.category!r} has no budget today")
            continue
        fits = {p: window_fit(template, hours[p], day) for p in phases}
        if template.preferred_windows:
            ranked = [p for p in sorted(phases, key=lambda p: (-fits[p], PHASE_ORDER.index(p))) if fits[p] > 0]
            if not ranked:
                dropped.append(f"{template.id}: its preferred windows fall in no phase still to come today")
                continue
        else:
            ranked = sorted(phases, key=lambda p: (len(plan[p]), PHASE_ORDER.index(p)))
        target = next((p for p in ranked if len(plan[p]) < max_per_phase), None)
        if target is None:
            dropped.append(f"{template.id}: every remaining phase already has {max_per_phase} unit(s)")
            continue
        motivation = (f"fits the {target} window best (score {fits[target]:.2f})" if template.preferred_windows
                      else f"no preferred window; {target} had the most room")
        plan[target].append(PlanItem(template.id, focus=template.description, motivation=motivation))
    return DayPlan(day, plan, source="templates", reason="built from the catalogue's templates in order (no planner call)",
                   dropped=dropped)


def load_plan_file(path: str | Path, catalogue: Catalogue, default_day: date) -> DayPlan:
    """Read a plan file (``schemas/plan.schema.json``); unknown template ids are an error."""
    path = Path(path)
    text = read_user_file(path, "plan file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    errors = schema_files.validate(schema_files.PLAN, doc)
    if errors:
        raise UserError(f"{path}: invalid plan: " + "; ".join(f"{p}: {m}" for p, m in errors) + ".")
    problems = []
    phases: dict[str, list[PlanItem]] = {}
    for phase in PHASE_ORDER:
        items = doc["phases"].get(phase, [])
        for i, item in enumerate(items):
            if item["template"] not in catalogue.templates:
                hint = closest(item["template"], catalogue.templates)
                problems.append(f"$.phases.{phase}[{i}].template: unknown template {item['template']!r}"
                                + (f" (did you mean {hint!r}?)" if hint else ""))
        phases[phase] = [PlanItem(it["template"], it.get("focus"), it.get("motivation"), it.get("params", {})) for it in items]
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems) + ".")
    try:
        day = date.fromisoformat(doc["date"]) if "date" in doc else default_day
    except ValueError as exc:  # the schema's format check should have caught it already
        raise UserError(f"{path}: invalid plan: $.date: {doc['date']!r} is not a valid date ({exc}).") from None
    return DayPlan(day, phases, source="file", reason=f"given by hand in {path}", intention=doc.get("intention", ""))
