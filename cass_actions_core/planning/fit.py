"""Fitting a day: placing proposed units into phases within their limits, time and money.

One :class:`DayFitter` serves the deterministic plan and the validation of an LLM reply,
so both obey the same rules. A unit of a template goes into a phase only when

- the phase is still to come today (and, for the deterministic plan, the template's
  preferred windows touch it);
- ``max_per_day`` and ``cooldown`` hold, counting units already planned or run today and
  the placements made so far (each placement counts as a start at its phase's start);
- the phase has fewer than ``scheduler.max_units_per_phase`` units and the day fewer
  than ``planner.max_units_per_day``;
- the phase's time holds it: run one after another, each no earlier than its preferred
  windows open in the phase (:func:`~.plans.window_opens`, when the scheduler will start
  it), the phase's units by their learned durations end by the phase's end;
- its learned cost fits its category's money left after reservations and earlier
  placements, and the day's ordinary pool. If it does not fit whole, the cheaper variants
  are tried in turn: optional steps left out, the cheaper model, both. A category
  already below ``planner.cheap_below_fraction`` of its money runs its LLM actions on the
  cheaper model anyway. Every such choice is written on the item, with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cass_actions_core.clock import to_utc
from cass_actions_core.ledger import format_usd as usd
from cass_actions_core.models import Template
from cass_actions_core.planning.costs import CostBook
from cass_actions_core.planning.plans import PHASE_ORDER, PlanItem, window_opens

#: Money comparisons tolerate rounding to the micro-dollar.
_EPS = 1e-9


@dataclass
class Candidate:
    """A template still possible today, with its score components per phase and its learned figures."""

    template: Template
    pack: str
    #: phase -> component -> value (see :mod:`.scoring`); only the phases still to come.
    components: dict[str, dict[str, float]]
    #: phase -> weighted total.
    scores: dict[str, float]
    #: phase -> window fit > 0 (or no windows at all).
    in_window: dict[str, bool]
    cost_usd: float
    minutes: float
    #: How many more units of it today may have (``max_per_day`` minus those already there).
    room: int
    needs_approval: bool
    requires_idle: bool
    optional_steps: tuple[int, ...]

    @property
    def id(self) -> str:
        """The template id."""
        return self.template.id

    @property
    def category(self) -> str:
        """The template's budget category."""
        return self.template.category

    @property
    def best_phase(self) -> str:
        """The phase where it scores best (the earlier one on a tie), preferring phases inside its windows."""
        phases = [p for p in self.scores if self.in_window[p]] or list(self.scores)
        return max(phases, key=lambda p: (self.scores[p], -PHASE_ORDER.index(p)))

    @property
    def best_score(self) -> float:
        """Its score in :attr:`best_phase`."""
        return self.scores[self.best_phase]


@dataclass
class Money:
    """What the day has left: per category (after reservations) and in the ordinary pool."""

    left: dict[str, float]
    limits: dict[str, float]
    pool_left: float

    def fraction_left(self, category: str) -> float:
        """Share of the category's daily limit still left (0 for an unfunded category)."""
        limit = self.limits.get(category, 0.0)
        return self.left.get(category, 0.0) / limit if limit > 0 else 0.0


@dataclass
class DayFitter:
    """Places units into the phases still to come, within limits, time and money (see the module docstring)."""

    phases: list[str]
    phase_starts: dict[str, datetime]
    phase_minutes: dict[str, float]
    money: Money
    costs: CostBook
    max_per_phase: int
    max_per_day: int
    last_starts: dict[str, datetime]
    default_model: str
    cheap_model: str | None = None
    cheap_below: float = 0.25
    placed: dict[str, list[PlanItem]] = field(default_factory=dict)
    #: phase -> (earliest start, minutes) of each unit placed there.
    _jobs: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _starts: dict[str, list[datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for phase in self.phases:
            self.placed.setdefault(phase, [])
            self._jobs.setdefault(phase, [])

    @property
    def total(self) -> int:
        """Units placed so far."""
        return sum(len(items) for items in self.placed.values())

    def count(self, template_id: str) -> int:
        """Units of ``template_id`` placed so far."""
        return self._counts.get(template_id, 0)

    def phase_end(self, phase: str) -> datetime:
        """When ``phase`` ends."""
        return self.phase_starts[phase] + timedelta(minutes=self.phase_minutes[phase])

    def release(self, template: Template, phase: str) -> datetime:
        """The earliest a unit of ``template`` starts in ``phase``: when its windows open there, else the phase's start."""
        start = self.phase_starts[phase]
        return window_opens(template, start, self.phase_end(phase)) or start

    def finish(self, phase: str, extra: tuple[datetime, float] | None = None) -> datetime:
        """When the phase's units (and ``extra``), run one after another from their release times, are done.

        For one worker and a common deadline, running in release order is optimal, and
        the finish is the latest ``r + (minutes of the units released at r or later)``.
        """
        jobs = sorted([*self._jobs[phase], *([extra] if extra else [])], key=lambda j: to_utc(j[0]))
        end = self.phase_starts[phase]
        for released, minutes in jobs:
            end = max(end, released, key=to_utc) + timedelta(minutes=minutes)
        return end

    def _variants(self, candidate: Candidate) -> list[tuple[tuple[int, ...], str | None]]:
        cheap = self.cheap_model if self.cheap_model and self.cheap_model != self.default_model else None
        uses_llm = any(self.costs.catalogue.actions[s.action].definition.uses_llm
                       for s in candidate.template.steps if s.action in self.costs.catalogue.actions)
        out: list[tuple[tuple[int, ...], str | None]] = [((), None)]
        if candidate.optional_steps:
            out.append((candidate.optional_steps, None))
        if cheap and uses_llm:
            out.append(((), cheap))
            if candidate.optional_steps:
                out.append((candidate.optional_steps, cheap))
        return out

    def why_not(self, candidate: Candidate, phase: str, *, windows: bool) -> str | None:
        """Why a unit of ``candidate`` cannot go into ``phase`` for a reason other than money, or None."""
        t = candidate.template
        if phase not in self.phases:
            return f"{phase} is not a phase still to come today"
        if windows and not candidate.in_window.get(phase, False):
            return f"its preferred windows do not touch the {phase}"
        if self.count(t.id) >= candidate.room:
            return f"max_per_day {t.max_per_day} reached"
        starts = [*self._starts.get(t.id, []), *([self.last_starts[t.id]] if t.id in self.last_starts else [])]
        cooling = cooldown_conflict(t, self.phase_starts[phase], starts)
        if cooling is not None:
            return cooling
        if len(self.placed[phase]) >= self.max_per_phase:
            return f"the {phase} already has {self.max_per_phase} unit(s) (scheduler.max_units_per_phase)"
        if self.total >= self.max_per_day:
            return f"the day already has {self.max_per_day} unit(s) (planner.max_units_per_day)"
        return None

    def place(self, candidate: Candidate, phase: str, *, focus: str | None, motivation: str | None,
              windows: bool) -> tuple[PlanItem | None, str | None]:
        """Place one unit of ``candidate`` in ``phase``; ``(item, None)`` or ``(None, why not)``."""
        reason = self.why_not(candidate, phase, windows=windows)
        if reason is not None:
            return None, reason
        t = candidate.template
        category = t.category
        left = self.money.left.get(category, 0.0)
        released = self.release(t, phase)
        phase_end = self.phase_end(phase)
        low = self.money.fraction_left(category) < self.cheap_below
        misses: list[str] = []
        for skip, model in self._variants(candidate):
            if low and model is None and self.cheap_model and any(m for _s, m in self._variants(candidate)):
                continue  # a category running low uses the cheaper model whenever it can
            cost = self.costs.template_cost(t, skip=skip, model=model)
            minutes = self.costs.template_minutes(t, skip=skip)
            finish = self.finish(phase, (released, minutes))
            if to_utc(finish) > to_utc(phase_end) + timedelta(seconds=1):
                over = (to_utc(finish) - to_utc(phase_end)).total_seconds() / 60
                misses.append(f"needs {minutes:.0f} min from {released:%H:%M}: the {phase}'s work would run "
                              f"{over:.0f} min past its end at {phase_end:%H:%M}")
                continue
            if cost > left + _EPS:
                misses.append(f"{category} has {usd(max(0.0, left))} left, needs {usd(cost)}")
                continue
            if cost > self.money.pool_left + _EPS:
                misses.append(f"the day has {usd(max(0.0, self.money.pool_left))} left, needs {usd(cost)}")
                continue
            choices = self._choices(candidate, skip, model, cost, left, low)
            item = PlanItem(t.id, focus=focus, motivation=motivation, skip_steps=skip, model=model, choices=tuple(choices),
                            score=round(candidate.scores.get(phase, 0.0), 4), estimated_cost_usd=cost,
                            estimated_minutes=round(minutes, 2))
            self.placed[phase].append(item)
            self._jobs[phase].append((released, minutes))
            self._counts[t.id] = self.count(t.id) + 1
            self._starts.setdefault(t.id, []).append(self.phase_starts[phase])
            self.money.left[category] = round(left - cost, 6)
            self.money.pool_left = round(self.money.pool_left - cost, 6)
            return item, None
        return None, "; ".join(dict.fromkeys(misses))

    def _choices(self, candidate: Candidate, skip: tuple[int, ...], model: str | None, cost: float, left: float,
                 low: bool) -> list[str]:
        t = candidate.template
        out = []
        if skip:
            names = ", ".join(f"{i + 1} ({t.steps[i].action})" for i in skip)
            full = self.costs.template_cost(t)
            out.append(f"optional step(s) {names} left out to fit the money: {usd(cost)} instead of {usd(full)} "
                       f"({t.category} had {usd(left)} left)")
        if model:
            why = (f"{t.category} has {self.money.fraction_left(t.category):.0%} of its money left "
                   f"(below planner.cheap_below_fraction {self.cheap_below:.0%})" if low
                   else f"it fits {t.category}'s {usd(left)} only on the cheaper model")
            out.append(f"LLM actions on {model} instead of {self.default_model}: {why}")
        return out

    def order(self, first_hours: dict[str, dict[str, int]]) -> None:
        """Order each phase's units by where their windows begin in it, then by score (the deterministic plan)."""
        for phase, items in self.placed.items():
            items.sort(key=lambda i: (first_hours.get(i.template, {}).get(phase, 99), -(i.score or 0.0)))


def cooldown_conflict(template: Template, begins: datetime, starts: list[datetime]) -> str | None:
    """Why a unit of ``template`` beginning at ``begins`` breaks its cooldown against ``starts``, or None."""
    cooldown = template.cooldown_delta
    if cooldown <= timedelta(0):
        return None
    for start in starts:
        if abs(to_utc(begins) - to_utc(start)) < cooldown:
            return f"cooldown {template.cooldown} since a unit starting {start:%Y-%m-%d %H:%M}"
    return None


def first_window_offsets(candidate: Candidate, hours: dict[str, list[int]], day_weekday: int) -> dict[str, int]:
    """Per phase, how many hours after the phase's start the template's windows first open (0 with none)."""
    out: dict[str, int] = {}
    for phase in candidate.scores:
        phase_hours = hours[phase]
        if not candidate.template.preferred_windows:
            out[phase] = 0
            continue
        for offset, hour in enumerate(phase_hours):
            weekday = day_weekday if hour >= phase_hours[0] else (day_weekday + 1) % 7
            if candidate.template.window_score(hour, weekday) > 0:
                out[phase] = offset
                break
        else:
            out[phase] = 99
    return out


def describe(candidate: Candidate) -> dict[str, Any]:
    """A candidate as a JSON-ready mapping (``plan --dry-run --json``)."""
    return {
        "template": candidate.id, "pack": candidate.pack, "category": candidate.category,
        "cost_usd": candidate.cost_usd, "minutes": round(candidate.minutes, 2), "room": candidate.room,
        "needs_approval": candidate.needs_approval, "requires_idle": candidate.requires_idle,
        "best_phase": candidate.best_phase, "best_score": round(candidate.best_score, 4),
        "scores": {p: round(s, 4) for p, s in candidate.scores.items()},
        "components": candidate.components,
    }
