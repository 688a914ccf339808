"""Day plans: what a plan holds, where it came from, and plan files given by hand.

A plan maps each day phase to an ordered list of :class:`PlanItem` (a template id, a
focus, a motivation, and the money-aware choices made for it). It is persisted once per
local date with its provenance; re-planning a date replaces that date's not-yet-started
units (the earlier system stacked stale units on top: F9). Unknown template ids in a
plan file are reported, never silently skipped (F8).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from cass_actions_core import schema_files
from cass_actions_core.catalogue import Catalogue, closest
from cass_actions_core.config import PhaseSettings
from cass_actions_core.models import Template
from cass_actions_core.problems import JSONTextError, UserError, parse_json, read_user_file

PHASE_ORDER = ("morning", "afternoon", "evening", "night")


#: Where a plan came from: the planning call, the deterministic plan from the scores
#: (the call failed or was not made), a plan file, or a person's edits.
PLAN_SOURCES = ("llm", "fallback", "file", "manual")


@dataclass(frozen=True)
class PlanItem:
    """One planned unit: which template, what to focus on, and why.

    ``skip_steps`` are optional steps left out and ``model`` a cheaper model for its LLM
    actions, both to fit the day's money; ``choices`` says why, in words. ``score`` is
    the planner's score for the template in this phase (None for a plan file).
    """

    template: str
    focus: str | None = None
    motivation: str | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    skip_steps: tuple[int, ...] = ()
    model: str | None = None
    choices: tuple[str, ...] = ()
    score: float | None = None
    estimated_cost_usd: float | None = None
    estimated_minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping, as stored in the plan."""
        out = asdict(self)
        out["skip_steps"], out["choices"] = list(self.skip_steps), list(self.choices)
        return out


@dataclass
class DayPlan:
    """A day's plan: items per phase and its provenance (where it came from, why, at what cost)."""

    day: date
    phases: dict[str, list[PlanItem]]
    source: str
    reason: str
    intention: str = ""
    dropped: list[str] = field(default_factory=list)
    #: Money-aware decisions that shaped the whole plan (cheaper templates, left-out steps...).
    decisions: list[str] = field(default_factory=list)
    provider: str | None = None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    prompt_sha256: str | None = None

    def items(self) -> list[tuple[str, PlanItem]]:
        """Every ``(phase, item)`` in phase order."""
        return [(p, i) for p in PHASE_ORDER for i in self.phases.get(p, [])]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping, as stored (and printed by ``plan --json``)."""
        return {
            "date": self.day.isoformat(), "intention": self.intention, "source": self.source, "reason": self.reason,
            "provider": self.provider, "model": self.model, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens, "cost_usd": self.cost_usd,
            "prompt_sha256": self.prompt_sha256, "dropped": self.dropped, "decisions": self.decisions,
            "phases": {p: [i.to_dict() for i in items] for p, items in self.phases.items()},
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


def window_opens(template: Template, start: datetime, end: datetime) -> datetime | None:
    """When, in ``[start, end)``, the template's preferred windows are first open (``start`` itself
    if they are open then); None for a template without windows or none open in the span.

    A unit waits for this time within its phase, so work lands inside its windows.
    """
    if not template.preferred_windows:
        return None
    t = start
    while t < end:
        if template.window_score(t.hour, t.weekday()) > 0:
            return t
        t = t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return None


#: A step index as plan items key their params: "0", "1" ... (ASCII digits, no leading zero).
STEP_INDEX = re.compile(r"0|[1-9][0-9]*", re.ASCII)


def _param_problems(catalogue: Catalogue, item: dict[str, Any], where: str) -> list[str]:
    """Each step override of a plan item, merged over the template's step params as the unit will be,
    checked against the action's params schema (and its step index against the template)."""
    template = catalogue.templates[item["template"]].template
    problems = []
    for key, override in item.get("params", {}).items():
        if not (isinstance(key, str) and STEP_INDEX.fullmatch(key)) or not isinstance(override, dict):
            problems.append(f"{where}.{key}: expected a step index ('0', '1' ...) mapped to that step's parameters")
            continue
        index = int(key)
        if index >= len(template.steps):
            problems.append(f"{where}.{key}: template {template.id!r} has {len(template.steps)} step(s), numbered from 0")
            continue
        step = template.steps[index]
        action = catalogue.actions.get(step.action)
        if action is None or step.action in catalogue.invalid_params_schemas:
            continue  # the catalogue check reports these
        for path, message in schema_files.validate_instance(action.definition.params, {**step.params, **override}):
            problems.append(f"{where}.{key}{path[1:]}: {message} (step {index} runs {step.action!r})")
    return problems


def load_plan_file(path: str | Path, catalogue: Catalogue, default_day: date) -> DayPlan:
    """Read a plan file (``schemas/plan.schema.json``); unknown template ids are an error."""
    path = Path(path)
    text = read_user_file(path, "plan file")
    try:
        doc = parse_json(text)
    except JSONTextError as exc:
        raise UserError(f"{path}: {exc}.") from None
    errors = schema_files.validate(schema_files.PLAN, doc, cache=False)  # a plan is not catalogue content
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
                continue
            problems += _param_problems(catalogue, item, f"$.phases.{phase}[{i}].params")
        phases[phase] = [PlanItem(it["template"], it.get("focus"), it.get("motivation"), it.get("params", {})) for it in items]
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems) + ".")
    try:
        day = date.fromisoformat(doc["date"]) if "date" in doc else default_day
    except ValueError as exc:  # the schema's format check should have caught it already
        raise UserError(f"{path}: invalid plan: $.date: {doc['date']!r} is not a valid date ({exc}).") from None
    return DayPlan(day, phases, source="file", reason=f"given by hand in {path}", intention=doc.get("intention", ""))
