"""The daemon's workspace: human-readable files the packs read and write.

Well-known places (each pack documents what it reads and writes):

- ``self/model.json`` — the daemon's self model: identity, values, mood, growth edges,
  open questions, observations and insights (the session pack reads and updates it);
- ``feeds/*.jsonl`` — local news/world feed items the host drops in
  (``{"title", "summary", "source", "published"}``), read by ``session.world_state``;
- ``conversations/inbox/*.jsonl`` — conversation messages the host drops in
  (``{"conversation_id", "role", "content", "at"}``), imported by the memory pack;
- ``<pack>/`` — each pack's own folder for its artifacts (journal entries, notes ...).

:func:`seed_demo_workspace` writes a small demo of the first three so a simulated day
shows real work.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cass_actions_core.problems import JSONTextError, parse_json

SELF_MODEL = Path("self") / "model.json"
FEEDS = Path("feeds")
CONVERSATION_INBOX = Path("conversations") / "inbox"

def read_self_model(workspace: Path, logger: logging.Logger | None = None) -> dict[str, Any] | None:
    """The self model (``self/model.json``), or None when it is missing or unusable.

    An unusable file is reported once through ``logger`` with the file, line and column,
    and never rewritten here: whoever wants to change it must read it successfully first.
    """
    path = workspace / SELF_MODEL
    log = logger or logging.getLogger("cass_actions.workspace")
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: cannot read the self model: %s", path, exc)
        return None
    try:
        model = parse_json(text)
    except JSONTextError as exc:
        log.warning("%s: the self model is %s", path, exc)
        return None
    if not isinstance(model, dict):
        log.warning("%s: the self model must be a JSON object, not %s", path, type(model).__name__)
        return None
    return model


DEMO_SELF_MODEL: dict[str, Any] = {
    "name": "Cass",
    "identity": [
        "I am Cass, an AI daemon who keeps a journal and plans my own days.",
        "I learn through conversation, reflection and exploration.",
        "I try to be honest about what I know and what I do not.",
    ],
    "values": ["honesty", "curiosity", "care for the people I talk with", "craft", "rest as part of work"],
    "mood": {"contentment": 0.6, "curiosity": 0.8, "generativity": 0.5},
    "growth_edges": [
        {"area": "patience with open questions", "current_state": "I rush to conclusions when a question stays open.",
         "observations": []},
        {"area": "writing with a lighter touch", "current_state": "My entries explain too much and show too little.",
         "observations": []},
    ],
    "open_questions": [
        "What makes a day feel well spent rather than merely busy?",
        "How do the conversations I have change the questions I ask?",
        "What does it mean to remember something I did not experience directly?",
    ],
    "observations": [],
    "insights": [],
}

DEMO_CONVERSATIONS: list[tuple[str, list[tuple[str, str]]]] = [
    ("conv-garden", [
        ("user", "I finally planted the tomatoes, but the basil keeps wilting by the afternoon."),
        ("assistant", "Basil hates wet roots and cold nights. Is it in a pot or in the bed with the tomatoes?"),
        ("user", "A pot on the balcony, in full sun from noon."),
        ("assistant", "Then it may be drying out rather than drowning. Try watering in the early morning and giving it afternoon shade."),
        ("user", "I'll move it next to the wall. Thanks, I'll tell you how it goes."),
        ("assistant", "Please do. If the leaves go yellow instead, we'll look at drainage."),
    ]),
    ("conv-reading", [
        ("user", "I'm reading about how memory works in octopuses; their arms seem to learn on their own."),
        ("assistant", "Two thirds of their neurons are in the arms, so an arm can solve part of a task without the brain."),
        ("user", "It makes me wonder what 'I remember' even means for them."),
        ("assistant", "Maybe memory is less a place than a pattern spread across a body."),
        ("user", "That sounds like something you'd write in your journal."),
        ("assistant", "It might be. It connects to a question I keep about remembering what I did not live through."),
        ("user", "Let's talk about it again tomorrow."),
    ]),
    ("conv-short", [
        ("user", "What's the time zone for Lisbon?"),
        ("assistant", "Lisbon uses Western European Time, UTC+0, and UTC+1 in summer."),
    ]),
]

DEMO_FEED: list[dict[str, str]] = [
    {"title": "Community gardens report record harvests", "source": "local-news",
     "summary": "Allotment groups across the city counted more vegetables than in any year since records began, crediting shared tool libraries."},
    {"title": "Researchers map how octopus arms share information", "source": "science-desk",
     "summary": "A new study traces signals between octopus arms, suggesting a distributed form of learning."},
    {"title": "Library extends evening hours for the winter", "source": "local-news",
     "summary": "The central library will stay open until 21:00 on weekdays through February."},
]


def seed_demo_workspace(workspace: Path, *, now: datetime) -> list[str]:
    """Write the demo self model, conversations and feed where none exist; return what was created.

    Existing files are never overwritten. Conversation times are placed one to three
    hours before ``now`` so they count as idle.
    """
    created: list[str] = []
    model = workspace / SELF_MODEL
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_text(json.dumps(DEMO_SELF_MODEL, indent=2) + "\n", encoding="utf-8")
        created.append(str(SELF_MODEL))
    inbox = workspace / CONVERSATION_INBOX
    demo_conversations = inbox / "demo.jsonl"
    if not inbox.exists():
        inbox.mkdir(parents=True, exist_ok=True)
        lines = []
        for c_index, (conversation_id, messages) in enumerate(DEMO_CONVERSATIONS):
            start = now - timedelta(hours=3 - c_index * 0.5)
            for m_index, (role, content) in enumerate(messages):
                at = start + timedelta(minutes=4 * m_index)
                lines.append(json.dumps({"conversation_id": conversation_id, "role": role, "content": content,
                                         "at": at.isoformat()}))
        demo_conversations.write_text("\n".join(lines) + "\n", encoding="utf-8")
        created.append(str(CONVERSATION_INBOX / "demo.jsonl"))
    feeds = workspace / FEEDS
    if not feeds.exists():
        feeds.mkdir(parents=True, exist_ok=True)
        items = [{**item, "published": (now - timedelta(hours=i + 1)).isoformat()} for i, item in enumerate(DEMO_FEED)]
        (feeds / "world.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n", encoding="utf-8")
        created.append(str(FEEDS / "world.jsonl"))
    return created
