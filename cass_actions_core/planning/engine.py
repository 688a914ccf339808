"""The DecisionEngine: the daemon plans its own day with one LLM call over scored candidates.

Planning a local date (or what is left of it):

1. **candidates** (:meth:`DecisionEngine.candidates`): templates still possible today,
   each scored per phase (:mod:`.scoring`) with learned costs (:mod:`.costs`); every
   template left out gets a reason;
2. the **deterministic plan** from those scores (:meth:`DecisionEngine.deterministic`):
   first the best affordable unit of each funded category (a cheaper template, optional
   steps left out, or the cheaper model when money is short, each recorded), then the
   best-scored units while limits, time and money allow;
3. **one structured-output call** through the metered LLM layer, charged to its own
   budget category (``planner.category``), with the top-K candidates only; the offline
   provider answers it with the deterministic plan, labelled offline;
4. **validation** of the reply (:meth:`DecisionEngine.validate`): unknown or unoffered
   ids, past phases, duplicates, per-phase and per-day limits, cooldowns, time and money,
   each drop with its reason in ``dropped``;
5. any failure of the call, or a reply leaving nothing while work was possible, gives
   the deterministic plan (``source: fallback``) with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cass_actions_core.config import zero_budget_reason
from cass_actions_core.clock import to_utc
from cass_actions_core.planning import scoring
from cass_actions_core.planning.costs import CostBook
from cass_actions_core.planning.fit import (
    Candidate,
    DayFitter,
    Money,
    cooldown_conflict,
    describe,
    first_window_offsets,
    usd,
)
from cass_actions_core.planning.plans import PHASE_ORDER, DayPlan, PlanItem, phase_hours, window_fit
from cass_actions_core.planning.prompt import (
    PROMPT_TOKEN_BOUND,
    LooseReply,
    day_message,
    parse_reply,
    prompt_hash,
    prompt_tokens,
    reply_model,
    system_prompt,
)
from cass_actions_core.text import OFFLINE_LABEL

if TYPE_CHECKING:
    from cass_actions_core.catalogue import Catalogue
    from cass_actions_core.context import PlanningContext
    from cass_actions_core.ledger import BudgetLedger
    from cass_actions_core.phases import DayPhases
    from cass_actions_core.store import Store

log = logging.getLogger("cass_actions.planner")

#: The action id planning calls are metered and recorded under.
PLANNER_ACTION_ID = "planner.plan_day"


@dataclass
class PlanningInput:
    """Everything one planning run reads, gathered once (also what ``plan --dry-run`` shows)."""

    day: date
    phases: list[str]
    candidates: list[Candidate]
    excluded: list[str]
    money: Money
    phase_starts: dict[str, datetime]
    phase_minutes: dict[str, float]
    last_starts: dict[str, datetime]
    recent: list[tuple[date, list[str]]]
    facts: dict[str, Any]
    costs: CostBook

    def top(self, k: int) -> list[Candidate]:
        """The ``k`` best candidates by their best phase score (ties by id)."""
        return sorted(self.candidates, key=lambda c: (-c.best_score, c.id))[:k]


class DecisionEngine:
    """Plans days for one daemon; everything it reads is passed in (no globals).

    Args:
        catalogue: templates, actions, config and the LLM providers.
        store: units, action runs and plans of the daemon.
        ledger: money left per category.
        phases: the daemon's day phases.
        now: the time source (the runtime's clock ``now``).
        transcripts: ``run_key -> TranscriptSink`` for the planning call's transcript.
        paused: the categories paused right now.
    """

    def __init__(self, *, catalogue: Catalogue, store: Store, ledger: BudgetLedger, phases: DayPhases,
                 now: Callable[[], datetime], transcripts: Callable[[str], Any] | None = None,
                 paused: Callable[[], set[str]] = set) -> None:
        self.catalogue, self.store, self.ledger, self.phases = catalogue, store, ledger, phases
        self.config = catalogue.config
        self.settings = catalogue.config.planner
        self._now = now
        self._transcripts = transcripts
        self._paused = paused

    # -- inputs ------------------------------------------------------------------------
    def costs(self) -> CostBook:
        """Learned costs and durations as of now."""
        return CostBook(self.catalogue, self.store, runs=self.settings.learned_cost_runs, model=self.config.llm.model)

    def gather(self, day: date, phases: Sequence[str], context: PlanningContext | None,
               costs: CostBook | None = None) -> PlanningInput:
        """Candidates, scores, money and time for planning ``phases`` of ``day``."""
        now = self._now()
        costs = costs or self.costs()
        facts = dict(context.facts) if context is not None else {}
        parsed = scoring.Facts.from_context(facts)
        weights = self.settings.weights
        hours = phase_hours(self.config.phases)
        starts: dict[str, datetime] = {}
        minutes: dict[str, float] = {}
        for phase in phases:
            instance = self.phases.instance(day, phase)
            starts[phase] = max(instance.start, now, key=to_utc)
            minutes[phase] = max(0.0, (to_utc(instance.end) - to_utc(starts[phase])).total_seconds() / 60)
        status = self.ledger.status(day)
        money = Money(left={c: v["available"] for c, v in status["categories"].items()},
                      limits={c: v["limit"] for c, v in status["categories"].items()},
                      pool_left=status["totals"]["available"])
        since = day - timedelta(days=max(1, self.settings.variety_days))
        last_starts, done = self.store.template_activity(since)
        recent_by_day: dict[date, list[str]] = {}
        for tid, when in done:
            if when < day:
                recent_by_day.setdefault(when, []).append(tid)
        recent = sorted(((d, sorted(ids)) for d, ids in recent_by_day.items()), reverse=True)
        today_counts: dict[str, int] = {}
        for unit in self.store.list_units(local_date=day):
            if unit.status in ("planned", "queued") and unit.started_at is None \
                    and unit.data.get("source") not in ("trigger", "run-action"):
                continue  # a unit of the plan this one replaces (see Store.delete_units_for_plan)
            if unit.status == "cancelled" and unit.started_at is None:
                continue  # removed or cancelled before it ran: it used none of the day's allowance
            today_counts[unit.template_id] = today_counts.get(unit.template_id, 0) + 1
        paused = self._paused()
        approvals = self.config.approvals
        candidates: list[Candidate] = []
        excluded: list[str] = []
        for entry in self.catalogue.templates.values():
            t = entry.template
            if money.limits.get(t.category, 0.0) <= 0:
                excluded.append(f"{t.id}: {zero_budget_reason(self.config, t.category)}")
                continue
            if t.category in paused:
                excluded.append(f"{t.id}: category {t.category!r} is paused")
                continue
            room = t.max_per_day - today_counts.get(t.id, 0)
            if room <= 0:
                excluded.append(f"{t.id}: already {t.max_per_day} unit(s) on {day} (max_per_day)")
                continue
            if t.id in last_starts:
                cooling = [cooldown_conflict(t, starts[p], [last_starts[t.id]]) for p in phases]
                if all(cooling):
                    excluded.append(f"{t.id}: {cooling[-1]}: no phase still to come today is clear of it")
                    continue
            fits = {p: window_fit(t, hours[p], day) for p in phases}
            in_window = {p: (fits[p] > 0 or not t.preferred_windows) for p in phases}
            vocabulary = scoring.template_words(t)
            shared = {
                "growth": scoring.growth_score(t, vocabulary, parsed),
                "curiosity": scoring.curiosity_score(t, vocabulary, parsed),
                "mood": scoring.mood_score(vocabulary, parsed),
                "variety": scoring.variety_score(t.id, day, done),
                "priority": scoring.priority_score(t),
            }
            components = {p: {"window": scoring.window_component(t, fits[p]), **shared} for p in phases}
            scores = {p: round(sum(getattr(weights, k) * v for k, v in components[p].items()), 4) for p in phases}
            steps = [self.catalogue.actions[s.action].definition for s in t.steps if s.action in self.catalogue.actions]
            optional = tuple(i for i, s in enumerate(t.steps) if s.optional)
            cheapest = costs.template_cost(t, skip=optional, model=self.settings.cheap_model)
            if cheapest > money.left.get(t.category, 0.0) + 1e-9:
                excluded.append(f"{t.id}: {t.category} has {usd(money.left.get(t.category, 0.0))} left today, "
                                f"its cheapest form needs {usd(cheapest)}")
                continue
            candidates.append(Candidate(
                template=t, pack=entry.origin.pack, components=components, scores=scores, in_window=in_window,
                cost_usd=costs.template_cost(t), minutes=costs.template_minutes(t), room=room,
                needs_approval=any(d.requires_approval or d.id in approvals.actions or d.category in approvals.categories
                                   for d in steps),
                requires_idle=t.requires_idle or any(d.requires_idle for d in steps),
                optional_steps=optional,
            ))
        return PlanningInput(day, list(phases), candidates, excluded, money, starts, minutes, last_starts, recent,
                             facts, costs)

    def _fitter(self, data: PlanningInput) -> DayFitter:
        return DayFitter(
            phases=data.phases, phase_starts=data.phase_starts, phase_minutes=data.phase_minutes,
            money=Money(dict(data.money.left), dict(data.money.limits), data.money.pool_left), costs=data.costs,
            max_per_phase=self.config.scheduler.max_units_per_phase, max_per_day=self.settings.max_units_per_day,
            last_starts=data.last_starts, default_model=self.config.llm.model, cheap_model=self.settings.cheap_model,
            cheap_below=self.settings.cheap_below_fraction)

    # -- the deterministic plan ----------------------------------------------------------
    def deterministic(self, data: PlanningInput) -> tuple[dict[str, list[PlanItem]], list[str]]:
        """The plan from the scores alone, and the money-aware decisions it took (see the module docstring)."""
        fitter = self._fitter(data)
        decisions: list[str] = []
        ranked = sorted(data.candidates, key=lambda c: (-c.best_score, c.id))
        by_category: dict[str, list[Candidate]] = {}
        for c in ranked:
            by_category.setdefault(c.category, []).append(c)

        def motivation(c: Candidate, phase: str) -> str:
            parts = c.components[phase]
            top = sorted(((k, parts[k] * getattr(self.settings.weights, k)) for k in parts), key=lambda kv: -kv[1])
            named = ", ".join(f"{k} {v:+.2f}" for k, v in top if abs(v) >= 0.01)
            return f"score {c.scores[phase]:.2f} in the {phase} ({named})"

        def try_phases(c: Candidate) -> tuple[PlanItem | None, str | None]:
            reason = None
            for phase in sorted((p for p in c.scores if c.in_window[p]), key=lambda p: (-c.scores[p], PHASE_ORDER.index(p))):
                item, reason = fitter.place(c, phase, focus=c.template.description, motivation=motivation(c, phase),
                                            windows=True)
                if item is not None:
                    return item, None
            return None, reason

        # 1. Every funded category with a candidate gets its best affordable unit first.
        order = sorted(by_category, key=lambda cat: (-by_category[cat][0].best_score, cat))
        for category in order:
            misses: list[str] = []
            for c in by_category[category]:
                item, reason = try_phases(c)
                if item is not None:
                    best = by_category[category][0]
                    if c is not best:
                        decisions.append(f"{category}: {c.id} ({usd(item.estimated_cost_usd or 0)}) instead of the "
                                         f"better-scored {best.id} ({usd(best.cost_usd)}): {misses[0] if misses else 'it did not fit'}")
                    break
                misses.append(f"{c.id}: {reason}")
        # 2. Then the best-scored units while limits, time and money allow.
        pairs = sorted(((c, p) for c in ranked for p in c.scores if c.in_window[p]),
                       key=lambda cp: (-cp[0].scores[cp[1]], cp[0].id, PHASE_ORDER.index(cp[1])))
        for c, phase in pairs:
            if fitter.total >= fitter.max_per_day:
                break
            fitter.place(c, phase, focus=c.template.description, motivation=motivation(c, phase), windows=True)
        hours = phase_hours(self.config.phases)
        fitter.order({c.id: first_window_offsets(c, hours, data.day.weekday()) for c in data.candidates})
        for phase, items in fitter.placed.items():
            for item in items:
                decisions.extend(f"{item.template} ({phase}): {choice}" for choice in item.choices)
        return fitter.placed, decisions

    # -- the reply -----------------------------------------------------------------------
    def validate(self, data: PlanningInput, reply: LooseReply, offered: Sequence[str]) -> tuple[dict[str, list[PlanItem]], list[str], list[str]]:
        """The reply's items that hold, the drops with their reasons, and the money-aware decisions."""
        fitter = self._fitter(data)
        by_id = {c.id: c for c in data.candidates}
        offered_set = set(offered)
        dropped: list[str] = []
        seen: set[tuple[str, str]] = set()
        for n, item in enumerate(reply.items):
            where = f"reply item {n + 1} ({item.template!r} in {item.phase!r})"
            if item.template not in self.catalogue.templates:
                dropped.append(f"{where}: no template with that id is registered")
                continue
            if item.template not in offered_set or item.template not in by_id:
                dropped.append(f"{where}: not one of the candidates offered")
                continue
            if item.phase not in PHASE_ORDER:
                dropped.append(f"{where}: not a day phase")
                continue
            if item.phase not in data.phases:
                dropped.append(f"{where}: the {item.phase} is not a phase still to come today")
                continue
            if (item.template, item.phase) in seen:
                dropped.append(f"{where}: a duplicate of an earlier item")
                continue
            placed, reason = fitter.place(by_id[item.template], item.phase, focus=_clip(item.focus) or None,
                                          motivation=_clip(item.motivation) or None, windows=False)
            if placed is None:
                dropped.append(f"{where}: {reason}")
                continue
            seen.add((item.template, item.phase))
        decisions = [f"{i.template} ({p}): {c}" for p, items in fitter.placed.items() for i in items for c in i.choices]
        return fitter.placed, dropped, decisions

    # -- planning ------------------------------------------------------------------------
    def offered(self, data: PlanningInput, fallback: dict[str, list[PlanItem]]) -> list[Candidate]:
        """The top-K candidates the call sees: the deterministic plan's templates first, then the best-scored."""
        by_id = {c.id: c for c in data.candidates}
        chosen: dict[str, Candidate] = {}
        for phase in PHASE_ORDER:
            for item in fallback.get(phase, []):
                if item.template in by_id:
                    chosen.setdefault(item.template, by_id[item.template])
        for c in data.top(self.settings.top_k):
            chosen.setdefault(c.id, c)
        return sorted(list(chosen.values())[: self.settings.top_k], key=lambda c: (-c.best_score, c.id))

    def request(self, data: PlanningInput, fallback: dict[str, list[PlanItem]]) -> tuple[list[dict[str, Any]], str, type[Any], list[str]]:
        """The planning call's system blocks, message, reply schema and offered ids, within the token bound."""
        budget = self.config.budget
        digest_counts: dict[str, int] = {}
        for entry in self.catalogue.templates.values():
            digest_counts[entry.template.category] = digest_counts.get(entry.template.category, 0) + 1
        digest = [(c, n, budget.category_limit(c)) for c, n in sorted(digest_counts.items())]
        system = system_prompt(data.facts, digest)
        hours = phase_hours(self.config.phases)
        phases = {p: (f"{hours[p][0]:02d}:00–{(hours[p][-1] + 1) % 24:02d}:00", data.phase_minutes[p]) for p in data.phases}
        money = {c: (data.money.left.get(c, 0.0), lim) for c, lim in data.money.limits.items() if lim > 0}
        top = self.offered(data, fallback)
        while True:
            ids = [c.id for c in top] or ["none"]
            model = reply_model(ids, data.phases)
            message = day_message(day=data.day, phases=phases, money=money, facts=data.facts, recent=data.recent,
                                  candidates=top)
            if prompt_tokens(system, message, model) <= PROMPT_TOKEN_BOUND or len(top) <= 1:
                return system, message, model, [c.id for c in top]
            top = top[:-1]

    def dry_run(self, day: date, phases: Sequence[str], context: PlanningContext | None) -> dict[str, Any]:
        """Candidates with their score components, the exact prompt and the deterministic plan; calls nothing."""
        data = self.gather(day, phases, context)
        placed, decisions = self.deterministic(data)
        system, message, model, offered = self.request(data, placed)
        return {
            "date": day.isoformat(), "phases": list(phases),
            "candidates": [describe(c) for c in data.top(len(data.candidates))],
            "excluded": data.excluded, "offered": offered,
            "prompt": {"system": system, "message": message, "schema": model.model_json_schema(),
                       "tokens_bound": PROMPT_TOKEN_BOUND, "tokens_estimate": prompt_tokens(system, message, model),
                       "sha256": prompt_hash(system, message, model)},
            "deterministic_plan": {p: [i.to_dict() for i in items] for p, items in placed.items()},
            "decisions": decisions,
        }

    async def plan(self, day: date, phases: Sequence[str], context: PlanningContext | None,
                   costs: CostBook | None = None) -> DayPlan:
        """Plan ``phases`` of ``day`` (see the module docstring); never raises for an LLM failure.
        ``costs``: the learned costs to plan with, when the caller has just read them."""
        data = self.gather(day, phases, context, costs)
        fallback, decisions = self.deterministic(data)
        excluded = list(data.excluded)

        def fallback_plan(reason: str, **extra: Any) -> DayPlan:
            return DayPlan(day, fallback, source="fallback", reason=reason, dropped=excluded + extra.pop("dropped", []),
                           decisions=decisions, intention=_fallback_intention(fallback), **extra)

        if not data.candidates:
            return fallback_plan("no template is possible today (see dropped)")
        if not self.settings.enabled:
            return fallback_plan("planner.enabled is false: the plan comes from the scores, with no planning call")
        system, message, model, offered = self.request(data, fallback)
        digest = prompt_hash(system, message, model)
        try:
            reply, llm = await self._call(data, system, message, model, fallback, offered, decisions)
        except _CallFailed as failed:
            return fallback_plan(f"the planning call failed, so the plan comes from the scores: {failed.reason}",
                                 **failed.provenance(digest))
        provenance = _provenance(llm, digest)
        placed, dropped, reply_decisions = self.validate(data, reply, offered)
        if not any(placed.values()) and any(fallback.values()):
            return fallback_plan("the planning reply left nothing to do while work was possible, so the plan comes "
                                 f"from the scores ({len(dropped)} reply item(s) dropped)", dropped=dropped, **provenance)
        return DayPlan(day, placed, source="llm",
                       reason=f"planned by {provenance['provider']} ({provenance['model']}) from {len(offered)} of "
                              f"{len(data.candidates)} candidate(s)",
                       intention=_clip(reply.intention, 500), dropped=excluded + dropped,
                       decisions=[d for d in decisions if d.startswith("planning call")] + reply_decisions,
                       **provenance)

    async def _call(self, data: PlanningInput, system: list[dict[str, Any]], message: str, model: type[Any],
                    fallback: dict[str, list[PlanItem]], offered: Sequence[str],
                    decisions: list[str]) -> tuple[LooseReply, Any]:
        from cass_actions_core.executor import LedgerGate
        from cass_actions_core.ledger import Blocked
        from cass_actions_core.llm.errors import LLMError
        from cass_actions_core.llm.metered import MeteredLLM
        from cass_actions_core.llm.registry import resolve_settings

        settings = resolve_settings(self.config.llm, None)
        settings = replace(settings, model=self.settings.model or settings.model, max_tokens=self.settings.max_tokens)
        try:
            provider = self.catalogue.providers.provider_for(settings)
        except LLMError as exc:
            raise _CallFailed(exc.message) from None
        now = self._now()
        budget_day = now.astimezone(self.phases.tz).date()
        reservation = self.ledger.reserve(self.settings.category, 0.0, budget_day=budget_day, now=now,
                                          note=f"{PLANNER_ACTION_ID} for {data.day}")
        if isinstance(reservation, Blocked):
            raise _CallFailed(f"no money for the planning call: {reservation.reason}")
        clock = _NowClock(self._now)
        gate = LedgerGate(self.ledger, reservation, self.store, clock)  # type: ignore[arg-type]
        key = f"{data.day.isoformat()}/plan"

        def metered(on: Any) -> MeteredLLM:
            return MeteredLLM(provider, on, action_id=PLANNER_ACTION_ID, max_cost_usd=self.settings.max_cost_usd,
                              max_calls=1, gate=gate, transcripts=self._transcripts(key) if self._transcripts else None,
                              run_key=key)

        llm = metered(settings)
        cheap = self.settings.cheap_model
        if cheap and cheap != settings.model:
            # The executor's rule, applied to the planner itself: when the call may cost more
            # than its category has left (or than planner.max_cost_usd), plan on the cheaper model.
            worst = llm.estimate_usd(message, system=system, max_tokens=self.settings.max_tokens, output_model=model)
            left = min(self.ledger.available(self.settings.category, budget_day), self.settings.max_cost_usd)
            if worst > left + 1e-9:
                decisions.append(f"planning call on {cheap} instead of {settings.model}: it may cost up to "
                                 f"{usd(worst)} and {self.settings.category} allows {usd(left)}")
                settings = replace(settings, model=cheap)
                llm = metered(settings)
        offline = _offline_reply(fallback, data, set(offered))
        try:
            try:
                value = await llm.structured(message, model, system=system, max_tokens=self.settings.max_tokens,
                                             offline=lambda: offline)
                reply = LooseReply.model_validate(value.model_dump())
            except LLMError as exc:
                if exc.kind == "invalid_output" and exc.response is not None:
                    try:
                        reply = parse_reply(exc.response.text)  # keep the good items, drop the rest with reasons
                    except ValueError:
                        raise _CallFailed(exc.message, llm) from None
                else:
                    raise _CallFailed(exc.message, llm) from None
        finally:
            self.ledger.settle(reservation, llm.spent_usd, self._now(), note=f"{PLANNER_ACTION_ID} for {data.day}")
            self.store.delete_state(f"spend:{reservation.id}")
        return reply, llm


class _NowClock:
    """The bit of a clock :class:`~cass_actions_core.executor.LedgerGate` uses."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now


class _CallFailed(Exception):
    """The planning call gave nothing usable; ``reason`` says why, ``llm`` what it cost."""

    def __init__(self, reason: str, llm: Any = None) -> None:
        super().__init__(reason)
        self.reason, self.llm = reason, llm

    def provenance(self, digest: str) -> dict[str, Any]:
        return _provenance(self.llm, digest) if self.llm is not None else {"prompt_sha256": digest}


def _provenance(llm: Any, digest: str) -> dict[str, Any]:
    usage = llm.usage
    return {"provider": llm.provider.name, "model": (llm.last_response.model if llm.last_response else llm.settings.model),
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_5m_tokens + usage.cache_write_1h_tokens,
            "cost_usd": llm.spent_usd, "prompt_sha256": digest}


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _fallback_intention(placed: dict[str, list[PlanItem]]) -> str:
    categories = sorted({i.template for items in placed.values() for i in items})
    return f"A day of {len(categories)} kind(s) of work chosen by their scores." if categories else ""


def _offline_reply(placed: dict[str, list[PlanItem]], data: PlanningInput, offered: set[str]) -> dict[str, Any]:
    """What the offline provider answers: the deterministic plan (offered ids only), every text labelled offline."""
    items = []
    for phase in PHASE_ORDER:
        for item in placed.get(phase, []):
            if item.template not in offered:
                continue
            items.append({"template": item.template, "phase": phase,
                          "focus": f"{OFFLINE_LABEL} {item.focus or item.template}",
                          "motivation": f"{OFFLINE_LABEL} {item.motivation or 'chosen by its score'}"})
    edges = scoring.Facts.from_context(data.facts).growth_edges
    theme = f", leaning into {edges[0]}" if edges else ""
    return {"intention": f"{OFFLINE_LABEL} A day of {len(items)} unit(s) chosen by their scores{theme}.", "items": items}
