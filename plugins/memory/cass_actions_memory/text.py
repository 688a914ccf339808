"""Small text helpers: front matter, slugs, sentences, keywords and settings.

Front matter is the block between two ``---`` lines at the top of a markdown file. Each
line is ``key: value`` where the value is JSON (a quoted string, a number, a list), which
is also valid YAML flow syntax, so other tools can read it; :func:`parse_front_matter`
falls back to the raw text for values that are not JSON (a file edited by hand).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cass_actions_core.actions import ActionFailed

#: Prefix the pack puts on text it builds itself when the offline provider is in use.
OFFLINE_LABEL = "[offline]"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Letters only: "what's" gives "what" (a stopword), "octopus-arms" gives two words.
_WORD = re.compile(r"[A-Za-z]+")
_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each even few for from further had has have having he her here
hers him his how i if in into is it its itself just let like make makes me might more most much my no nor not now
of off on once only or other our ours out over own really same say says she should so some such than that the their
them then there these they this those through to too under until up upon very was we were what when where which while
who whom why will with would yes yet you your yours thing things maybe still tell well going want think feel offline
""".split())


def clip(text: str, limit: int) -> str:
    """``text`` with whitespace collapsed, cut to ``limit`` characters (with an ellipsis)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "\u2026"


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order (split at line ends and ``.``, ``!``, ``?``)."""
    out: list[str] = []
    for line in str(text).splitlines():
        out.extend(s.strip() for s in _SENTENCE_END.split(line.strip()) if s.strip())
    return out


def first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of ``text``, clipped to ``limit`` characters ('' if none)."""
    found = sentences(text)
    return clip(found[0], limit) if found else ""


def keywords(text: str) -> set[str]:
    """Significant lowercase words of ``text`` (four letters or more, no stopwords)."""
    return {w.lower() for w in _WORD.findall(str(text)) if len(w) >= 4 and w.lower() not in _STOPWORDS}


def slugify(text: str, limit: int = 60) -> str:
    """Lowercase words joined by dashes (ASCII letters and digits only), at most ``limit`` characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return slug[:limit].rstrip("-")


def safe_file_stem(identifier: str) -> str:
    """A file name stem for an arbitrary id: the id itself when it is already safe, else a slug plus a hash.

    The hash keeps two ids that slugify alike (``a/b`` and ``a b``) from sharing a file.
    """
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", identifier) and ".." not in identifier:
        return identifier
    digest = hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:8]
    return f"{slugify(identifier, 50) or 'item'}-{digest}"


def bullets(items: Iterable[str]) -> str:
    """Markdown bullet lines for ``items`` ('' for none)."""
    return "\n".join(f"- {clip(i, 400)}" for i in items if str(i).strip())


def render_front_matter(fields: Mapping[str, Any]) -> str:
    """The ``---`` block for ``fields`` (values written as JSON), ending with a newline."""
    lines = ["---"]
    for key, value in fields.items():
        lines.append(f"{key}: {json.dumps(value, ensure_ascii=False, default=str)}")
    lines.append("---")
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
            fields[key.strip()] = raw
    body = text[end + 4:]
    return fields, body.lstrip("\n")


def setting_int(settings: Mapping[str, Any], key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``settings[key]`` as an integer in range (``default`` when absent); :class:`ActionFailed` naming the key otherwise."""
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ActionFailed(f"setting [packs.memory] {key} must be a whole number, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ActionFailed(f"setting [packs.memory] {key} must be {bound}, got {value}")
    return value
