"""Learned costs and durations: each action's declared figure blended with what it really took.

The declared ``estimated_cost_usd`` of an action is a pack author's guess, often far off
(the bundled packs' estimates are the earlier system's, set for a pricier model). The
planner and the executor's first reservation use the **learned** figure instead::

    learned = (n * median(recent actual) + declared) / (n + 1)

where ``n`` is the number of recent completed runs looked at (``planner.learned_cost_runs``,
newest first). With no runs it is the declared figure; after a handful it is mostly what
the action really costs. The same rule gives learned durations in minutes. A cheaper model
scales an LLM action's cost by the ratio of the two models' prices (input and output
averaged), which is how the planner prices "the same work on a cheaper model".
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cass_actions_core.catalogue import Catalogue
    from cass_actions_core.models import ActionDefinition, Template
    from cass_actions_core.store import Store


@dataclass(frozen=True)
class LearnedFigure:
    """One action's declared and learned cost (USD) and duration (minutes), and how many runs taught it."""

    action_id: str
    declared_usd: float
    learned_usd: float
    declared_minutes: float
    learned_minutes: float
    runs: int


def blend(declared: float, actual: list[float]) -> float:
    """``(n * median(actual) + declared) / (n + 1)``; ``declared`` when there is nothing to learn from."""
    if not actual:
        return declared
    n = len(actual)
    return (n * median(actual) + declared) / (n + 1)


class CostBook:
    """Learned costs and durations of every action of a catalogue, read once from the store.

    Args:
        catalogue: the actions and their declared figures.
        store: where completed action runs are read from (None: declared figures only).
        runs: how many recent runs per action to learn from.
        model: the model the declared estimates are for (``llm.model``).
    """

    def __init__(self, catalogue: Catalogue, store: Store | None, *, runs: int, model: str) -> None:
        self.catalogue = catalogue
        self.model = model
        history = store.recent_action_runs(runs) if store is not None and runs > 0 else {}
        self.figures: dict[str, LearnedFigure] = {}
        for action_id, action in catalogue.actions.items():
            d = action.definition
            past = history.get(action_id, [])
            self.figures[action_id] = LearnedFigure(
                action_id, d.estimated_cost_usd, round(blend(d.estimated_cost_usd, [c for c, _ in past]), 6),
                d.default_duration_minutes, blend(d.default_duration_minutes, [m for _, m in past]), len(past))

    def cost(self, definition: ActionDefinition, model: str | None = None) -> float:
        """The learned cost of one run of ``definition``, on ``model`` if given (LLM actions only)."""
        figure = self.figures.get(definition.id)
        usd = figure.learned_usd if figure else definition.estimated_cost_usd
        if model and definition.uses_llm and model != self.model:
            usd *= self.price_ratio(model)
        return round(usd, 6)

    def minutes(self, definition: ActionDefinition) -> float:
        """The learned duration of one run of ``definition``, in minutes."""
        figure = self.figures.get(definition.id)
        return figure.learned_minutes if figure else definition.default_duration_minutes

    def price_ratio(self, model: str) -> float:
        """How ``model``'s prices compare with the default model's (input and output averaged)."""
        from cass_actions_core.llm.prices import price_table

        table = price_table(self.catalogue.config.llm.prices)
        base, other = table.price_for(self.model, 0), table.price_for(model, 0)
        base_avg, other_avg = (base.input + base.output) / 2, (other.input + other.output) / 2
        return other_avg / base_avg if base_avg > 0 else 1.0

    def template_cost(self, template: Template, *, skip: tuple[int, ...] = (), model: str | None = None) -> float:
        """Learned cost of a unit of ``template`` without the ``skip`` steps, on ``model`` if given."""
        total = 0.0
        for i, step in enumerate(template.steps):
            action = self.catalogue.actions.get(step.action)
            if action is not None and i not in skip:
                total += self.cost(action.definition, model)
        return round(total, 6)

    def template_minutes(self, template: Template, *, skip: tuple[int, ...] = ()) -> float:
        """Learned duration of a unit of ``template`` without the ``skip`` steps."""
        return sum(self.minutes(self.catalogue.actions[s.action].definition)
                   for i, s in enumerate(template.steps) if s.action in self.catalogue.actions and i not in skip)
