"""The planning prompt and the reply's schema.

The prompt has two parts:

- a **stable prefix** (the system prompt, marked for prompt caching): how to plan, who
  the daemon is (identity and values) and a digest of the catalogue (categories, their
  template counts and daily money);
- the **day's message**: the date, the phases still to come with their time, money left
  per category, mood, growth edges, open questions, recent work and the top-K candidates
  with their scores.

Its size is bounded whatever the catalogue: every list is clipped and at most ``top_k``
candidates are shown; if the whole still passes :data:`PROMPT_TOKEN_BOUND` (counted the
meter's conservative way, UTF-8 bytes / 3, output schema included) candidates are taken
off the bottom until it fits.

The reply's schema (:func:`reply_model`) limits template ids to the candidates shown and
phases to those still to come. Validation of what comes back is lenient by design: an
item the schema would refuse (a model ignoring the grammar, a fake server) is dropped
with its reason rather than throwing the whole reply away (:func:`parse_reply`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from cass_actions_core.llm.base import conservative_tokens, output_schema
from cass_actions_core.planning.fit import Candidate, usd

#: The most tokens a planning prompt may have, system prompt and output schema included.
PROMPT_TOKEN_BOUND = 6000

_LIST_ITEMS = 8
_ITEM_CHARS = 200
_DESCRIPTION_CHARS = 110

INSTRUCTIONS = """You plan one day of work for an autonomous agent (a daemon) from a list of candidate work units.
The daemon decides what to do with its day; the candidates and their scores are only proposals.
Rules:
- Choose items only from the candidate templates listed, and only for the phases still to come.
- Each item: the template id, the phase, a focus (what this unit should concentrate on today, one sentence,
  concrete, drawn from the daemon's growth edges, open questions, mood or recent work) and a motivation
  (why this unit today, one sentence).
- Respect each candidate's `room` (units still allowed today) and keep each phase's total minutes within its time.
- Keep the day within the money left per category; prefer cheaper candidates when a category is low.
- Give variety across days: recent work is listed; do not repeat yesterday's plan when alternatives exist.
- Serve every funded category over the week.
- Write a one-sentence intention for the whole day.
Reply with JSON only, following the schema."""


def _clip(text: Any, limit: int = _ITEM_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lines(values: Any, limit: int = _LIST_ITEMS) -> list[str]:
    if isinstance(values, Mapping):
        values = [f"{k}: {v}" for k, v in values.items()]
    if isinstance(values, str):
        values = [values]
    out = []
    for value in list(values or [])[:limit]:
        if isinstance(value, Mapping):
            value = " — ".join(str(v) for v in value.values() if isinstance(v, str) and v)
        out.append(f"- {_clip(value)}")
    return out


def system_prompt(facts: Mapping[str, Any], digest: Sequence[tuple[str, int, float]]) -> list[dict[str, Any]]:
    """The stable prefix as one cached system block: instructions, identity, values, catalogue digest."""
    parts = [INSTRUCTIONS]
    identity = _lines(facts.get("identity"))
    if identity:
        parts.append("Who the daemon is:\n" + "\n".join(identity))
    values = _lines(facts.get("values"))
    if values:
        parts.append("What it values:\n" + "\n".join(values))
    if digest:
        parts.append("Catalogue (category: templates, daily money):\n"
                     + "\n".join(f"- {c}: {n} template(s), {usd(m)}/day" for c, n, m in digest[:40]))
    return [{"type": "text", "text": "\n\n".join(parts), "cache_control": {"type": "ephemeral"}}]


def day_message(*, day: date, phases: Mapping[str, tuple[str, float]], money: Mapping[str, tuple[float, float]],
                facts: Mapping[str, Any], recent: Sequence[tuple[date, Sequence[str]]],
                candidates: Sequence[Candidate]) -> str:
    """The day's user message (see the module docstring)."""
    out = [f"Date: {day.isoformat()} ({day:%A})."]
    out.append("Phases still to come (name: hours, minutes of work time):\n"
               + "\n".join(f"- {p}: {hours}, {minutes:.0f} min" for p, (hours, minutes) in phases.items()))
    out.append("Money left today per category (left of daily limit):\n"
               + "\n".join(f"- {c}: {usd(left)} of {usd(limit)}" for c, (left, limit) in list(money.items())[:40]))
    for key, title in (("mood", "Mood (0 to 1)"), ("growth_edges", "Growth edges"), ("open_questions", "Open questions")):
        lines = _lines(facts.get(key))
        if lines:
            out.append(f"{title}:\n" + "\n".join(lines))
    if recent:
        out.append("Recent work (completed):\n" + "\n".join(
            f"- {d.isoformat()}: {', '.join(list(ids)[:16]) or 'nothing'}" for d, ids in list(recent)[:3]))
    rows = []
    for c in candidates:
        phases_fit = ", ".join(f"{p} {c.scores[p]:.2f}" for p in c.scores)
        flags = "".join([" needs-approval" if c.needs_approval else "", " needs-idle" if c.requires_idle else ""])
        rows.append(f"- {c.id} [{c.category}] {usd(c.cost_usd)}, {c.minutes:.0f} min, room {c.room}{flags}; "
                    f"score by phase: {phases_fit}; {_clip(c.template.description, _DESCRIPTION_CHARS)}")
    out.append("Candidates (id [category] cost, minutes, room; score by phase; what it is):\n" + "\n".join(rows))
    return "\n\n".join(out)


class LooseItem(BaseModel):
    """One reply item as read back: any strings (checked afterwards, each drop with its reason)."""

    model_config = ConfigDict(extra="ignore")

    template: str
    phase: str
    focus: str = ""
    motivation: str = ""


class LooseReply(BaseModel):
    """The reply as read back (see :class:`LooseItem`)."""

    model_config = ConfigDict(extra="ignore")

    intention: str = ""
    items: list[LooseItem] = Field(default_factory=list)


def reply_model(template_ids: Sequence[str], phases: Sequence[str]) -> type[BaseModel]:
    """The reply schema for one call: ids limited to ``template_ids``, phases to ``phases``.

    Its JSON schema is built once per class (:func:`~cass_actions_core.llm.base.output_schema`) and shared by
    the prompt's size, its hash and the call itself."""
    TemplateId = Literal[tuple(template_ids)]  # type: ignore[valid-type]
    Phase = Literal[tuple(phases)]  # type: ignore[valid-type]
    item = create_model("PlannedUnit", __config__=ConfigDict(extra="forbid"),
                        template=(TemplateId, Field(description="a candidate template id")),
                        phase=(Phase, Field(description="a phase still to come")),
                        focus=(str, Field(description="what this unit concentrates on today")),
                        motivation=(str, Field(description="why this unit today")))
    return create_model("DayPlanReply", __config__=ConfigDict(extra="forbid"),
                        intention=(str, Field(description="the day's intention, one sentence")),
                        items=(list[item], Field(description="the units to run, in order")))  # type: ignore[valid-type]


def parse_reply(text: str) -> LooseReply:
    """Read a reply leniently (raises ``ValueError`` when it is not a JSON object with the fields)."""
    from pydantic import ValidationError

    try:
        return LooseReply.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "the reply"
        raise ValueError(f"{where}: {first.get('msg', 'invalid')}") from None


def prompt_tokens(system: Sequence[Mapping[str, Any]], message: str, model: type[BaseModel]) -> int:
    """The prompt's size as the meter counts it: system, message and output schema, bytes / 3."""
    text = "\n\n".join([*(str(b.get("text", "")) for b in system), message])
    return conservative_tokens(text) + conservative_tokens(json.dumps(output_schema(model)))


def prompt_hash(system: Sequence[Mapping[str, Any]], message: str, model: type[BaseModel]) -> str:
    """SHA-256 of exactly what is sent: system blocks, message and output schema."""
    payload = json.dumps({"system": list(system), "message": message, "schema": output_schema(model)},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
