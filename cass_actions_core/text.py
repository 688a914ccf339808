"""Small text helpers every pack needs: sentences, clipping, slugs, front matter, the offline label.

One copy here, so packs agree (a file's front matter written by one pack is read the
same way by another, and offline text is labelled the same way everywhere).

Front matter is the block between two ``---`` lines at the top of a markdown file, one
``key: value`` per line with JSON values (also valid YAML flow syntax); values that are
not JSON (a file edited by hand) are kept as text without surrounding quotes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: The label on every text the offline provider (or a pack's offline builder) produces.
OFFLINE_LABEL = "[offline]"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z]+")
_STOPWORDS = frozenset("""
about above after again against also because been before being below between both could does doing down during each
even from further have having here hers into itself just like make makes might more most much only other ours over
really same says should some such than that their them then there these they this those through under until upon very
were what when where which while whom will with would your yours thing things maybe still tell well going want think
feel offline journal entry completed step steps spent done failed morning afternoon evening night unit units today
""".split())


def label_offline(text: str) -> str:
    """``text`` with the offline label in front (once)."""
    text = str(text).strip()
    return text if text.startswith(OFFLINE_LABEL) else f"{OFFLINE_LABEL} {text}"


def is_offline(text: str) -> bool:
    """Whether ``text`` was produced offline (carries the label)."""
    return str(text).lstrip().startswith(OFFLINE_LABEL)


def clip(text: str, limit: int) -> str:
    """``text`` with whitespace collapsed, cut to ``limit`` characters (with an ellipsis), at a word's end
    when one falls in the second half of the limit (no "in the quiet of th…")."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space >= limit // 2 and not text[limit - 1].isspace():
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "\u2026"


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order (split at line ends and ``.``, ``!``, ``?``)."""
    out: list[str] = []
    for line in str(text).splitlines():
        out.extend(s.strip() for s in _SENTENCE_END.split(line.strip()) if s.strip())
    return out


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of ``text``, clipped ('' if none)."""
    found = sentences(text)
    return clip(found[0], limit) if found else ""


def keywords(text: str, min_length: int = 5) -> set[str]:
    """Significant lowercase words of ``text`` (``min_length`` letters or more, no stopwords)."""
    return {w.lower() for w in _WORD.findall(str(text)) if len(w) >= min_length and w.lower() not in _STOPWORDS}


def bullets(items: Iterable[str]) -> str:
    """Markdown bullet lines for ``items`` ('' for none)."""
    return "\n".join(f"- {clip(i, 400)}" for i in items if str(i).strip())


def unique(items: Iterable[str], limit: int) -> list[str]:
    """The first ``limit`` distinct non-empty items, clipped, in order."""
    out: list[str] = []
    for item in items:
        text = clip(str(item).lstrip("-*\u2022 ").strip(), 300)
        if text and text not in out:
            out.append(text)
            if len(out) == limit:
                break
    return out


def slugify(text: str, limit: int = 60) -> str:
    """Lowercase ASCII words joined by dashes, at most ``limit`` characters ('' if none)."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return slug[:limit].rstrip("-")


def render_front_matter(fields: Mapping[str, Any]) -> str:
    """The ``---`` block for ``fields`` (values written as JSON), ending with a newline."""
    lines = ["---", *(f"{k}: {json.dumps(v, ensure_ascii=False, default=str)}" for k, v in fields.items()), "---"]
    return "\n".join(lines) + "\n"


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """``(fields, body)`` of a markdown text; ``({}, text)`` when it has no front matter."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    if end == -1:
        return {}, text
    fields: dict[str, Any] = {}
    for line in text[4:end].splitlines():
        key, sep, raw = line.partition(":")
        if not sep or not key.strip():
            continue
        raw = raw.strip()
        try:
            fields[key.strip()] = json.loads(raw)
        except ValueError:
            fields[key.strip()] = raw.strip("\"'")
    return fields, text[end + 4:].lstrip("\n")


def section_items(body: str, heading: str) -> list[str]:
    """The bullet items under ``## heading`` in a markdown body."""
    items: list[str] = []
    inside = False
    for line in body.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip().lower() == heading.lower()
            continue
        if inside and line.lstrip().startswith(("- ", "* ")):
            items.append(line.lstrip()[2:].strip())
    return items


def body_text(body: str) -> str:
    """A markdown body without its ``# title`` line and its ``## `` sections (the prose only)."""
    lines = body.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("# ")):
        lines.pop(0)
    prose: list[str] = []
    for line in lines:
        if line.startswith("## "):
            break
        prose.append(line)
    return "\n".join(prose).strip()
