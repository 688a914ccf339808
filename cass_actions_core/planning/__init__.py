"""Planning a day: plans and plan files, candidates and scores, learned costs, the DecisionEngine.

- :mod:`~cass_actions_core.planning.plans` -- :class:`DayPlan`, :class:`PlanItem`, plan files;
- :mod:`~cass_actions_core.planning.costs` -- learned costs and durations;
- :mod:`~cass_actions_core.planning.scoring` -- candidates' score components;
- :mod:`~cass_actions_core.planning.fit` -- placing units within limits, time and money;
- :mod:`~cass_actions_core.planning.prompt` -- the planning prompt and the reply schema;
- :mod:`~cass_actions_core.planning.engine` -- :class:`DecisionEngine`, which ties them together.

See ``docs/planner.md``.
"""

from cass_actions_core.planning.plans import PHASE_ORDER, PLAN_SOURCES, DayPlan, PlanItem, load_plan_file, phase_hours, window_fit

__all__ = ["PHASE_ORDER", "PLAN_SOURCES", "DayPlan", "PlanItem", "load_plan_file", "phase_hours", "window_fit"]
