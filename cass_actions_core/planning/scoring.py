"""Candidates and their scores: which templates are still possible today, and how well each fits each phase.

A template is a **candidate** for a day when some phase still to come can take it: its
category is funded and not paused, ``max_per_day`` leaves room after the units already
planned or run that day, and its learned cost (see :mod:`.costs`) fits what its category
has left (with optional steps left out, or on the cheaper model, if that is what it takes).
Every template that is not a candidate gets a reason.

Each candidate gets a score per phase, the weighted sum of components kept for
``plan --dry-run`` (weights in ``[planner.weights]``):

- ``window`` (0..1): how much of the phase its preferred windows cover, by weight,
  relative to its best window; 0.5 for a template with no windows (fits anywhere);
- ``growth`` (0..1): growth edges from ``gather_context`` against the template's words
  (id, name, description, category, tags); a ``growth``-tagged template gets 0.6 of it
  as soon as any growth edge exists;
- ``curiosity`` (0..1): the same with open questions (``curiosity``/``research`` tags);
- ``mood`` (-1..1): mood dimensions (0..1) whose name, or a word it stands for, is one of
  the template's words, above or below the neutral 0.5;
- ``variety`` (-1..0): completed units of the template in the last ``variety_days``
  days, each counting half as much as one a day newer (yesterday's unit: -1);
- ``priority`` (0..1): critical 1, high 0.75, normal 0.5, low 0.25, idle 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cass_actions_core.models import Priority, Template

COMPONENTS = ("window", "growth", "curiosity", "mood", "variety", "priority")

_WORD = re.compile(r"[a-z][a-z0-9]+")
_STOP = frozenset("""a an and are as at be by for from has have how i in is it its me my of on or our that the
their this to was what when where which who why will with you your do does did can could would should about into
than then them they we not no yes more most less very just only also own same""".split())

#: Mood names and the template words they stand for (a mood's own name always counts).
MOOD_WORDS: dict[str, frozenset[str]] = {
    "curiosity": frozenset({"curiosity", "research", "explore", "exploration", "question", "questions", "knowledge"}),
    "generativity": frozenset({"creative", "writing", "create", "building", "build", "making"}),
    "contentment": frozenset({"reflection", "journal", "rest", "consolidation", "memory"}),
    "restlessness": frozenset({"exploration", "explore", "wonderland", "social", "research"}),
    "tiredness": frozenset({"maintenance", "housekeeping", "consolidation", "memory"}),
    "loneliness": frozenset({"social", "conversation", "user", "socialize"}),
}

_PRIORITY_SCORE = {Priority.CRITICAL: 1.0, Priority.HIGH: 0.75, Priority.NORMAL: 0.5, Priority.LOW: 0.25, Priority.IDLE: 0.0}


def words(text: str) -> set[str]:
    """Lower-case content words of ``text`` (stop words dropped, a plural ``s`` folded)."""
    out = set()
    for w in _WORD.findall(text.lower().replace("_", " ")):
        if w in _STOP:
            continue
        out.add(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def template_words(template: Template) -> set[str]:
    """The words a template is matched by: id, name, description, category, tags."""
    return words(" ".join([template.id, template.name, template.description, template.category, *template.tags]))


def _tagged(template: Template, *tags: str) -> bool:
    return template.category in tags or any(t in tags for t in template.tags)


def _overlap(targets: Iterable[str], vocabulary: set[str]) -> float:
    """The best share of one target's content words found in ``vocabulary``."""
    best = 0.0
    for target in targets:
        wanted = words(target)
        if wanted:
            best = max(best, len(wanted & vocabulary) / len(wanted))
    return best


def _texts(value: Any, key: str | None = None) -> list[str]:
    """Strings out of a fact that is a list of strings or of mappings (``area``, ``question``...)."""
    if isinstance(value, str):
        return [value]
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(" ".join(str(v) for k, v in item.items() if isinstance(v, str) and (key is None or k == key)))
    return [t for t in out if t.strip()]


@dataclass(frozen=True)
class Facts:
    """The planning facts the scores read, pulled out of ``gather_context`` (malformed ones ignored)."""

    growth_edges: list[str] = field(default_factory=list)
    open_questions: list[str] = field(default_factory=list)
    mood: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_context(cls, facts: Mapping[str, Any]) -> Facts:
        """Read ``growth_edges`` (their ``area``), ``open_questions`` and ``mood`` from context facts."""
        mood = facts.get("mood")
        return cls(
            growth_edges=_texts(facts.get("growth_edges"), "area"),
            open_questions=_texts(facts.get("open_questions")),
            mood={str(k): float(v) for k, v in mood.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and 0.0 <= v <= 1.0} if isinstance(mood, Mapping) else {},
        )


def growth_score(template: Template, vocabulary: set[str], facts: Facts) -> float:
    """0..1: how much the template works on the daemon's growth edges."""
    if not facts.growth_edges:
        return 0.0
    return round(min(1.0, 0.6 * _tagged(template, "growth") + 0.8 * _overlap(facts.growth_edges, vocabulary)), 4)


def curiosity_score(template: Template, vocabulary: set[str], facts: Facts) -> float:
    """0..1: how much the template pursues the daemon's open questions."""
    if not facts.open_questions:
        return 0.0
    return round(min(1.0, 0.6 * _tagged(template, "curiosity", "research")
                     + 0.8 * _overlap(facts.open_questions, vocabulary)), 4)


def mood_score(vocabulary: set[str], facts: Facts) -> float:
    """-1..1: mood dimensions the template speaks to, above or below neutral."""
    parts = [(value - 0.5) * 2 for name, value in facts.mood.items()
             if vocabulary & (MOOD_WORDS.get(name.lower(), frozenset()) | words(name))]
    return round(max(-1.0, min(1.0, sum(parts) / len(parts))), 4) if parts else 0.0


def variety_score(template_id: str, day: date, completed: Iterable[tuple[str, date]]) -> float:
    """-1..0: completed units of the template on earlier days, each half as heavy as one a day newer."""
    penalty = 0.0
    for tid, when in completed:
        age = (day - when).days
        if tid == template_id and age >= 0:
            penalty += 0.5 ** max(0, age - 1)
    return round(-min(1.0, penalty), 4) + 0.0  # + 0.0: no '-0.00' in printed components


def priority_score(template: Template) -> float:
    """0..1 from the template's priority."""
    return _PRIORITY_SCORE[Priority.of(template.priority)]


def window_component(template: Template, fit: float) -> float:
    """``window``: a phase's window fit relative to the template's best window weight (0.5 with no windows)."""
    if not template.preferred_windows:
        return 0.5
    best = max(w.weight for w in template.preferred_windows)
    return round(min(1.0, fit / best), 4) if best > 0 else 0.0
