"""The ``offline`` provider: deterministic replies built from the prompt, no network, no key.

It lets the whole system run -- scheduler, planner, actions, budgets -- on a machine
without an API key, in CI, or while developing a pack. It never opens a socket and
never imports a provider SDK.

- **Text** (:meth:`OfflineProvider.complete`): a short digest of the prompt -- the
  first sentence of the last user message, the first sentence of the system prompt,
  up to three key lines (headings, bullets, ``key: value`` lines) and a content hash
  -- always starting with ``"[offline]"`` so it can never pass for a model's words.
- **Structured output** (:meth:`OfflineProvider.structured`): the caller's
  ``offline=`` builder when given; otherwise a value built generically from the
  pydantic model's JSON schema (see :func:`build_from_schema`): strings taken from the
  prompt's sentences and labelled ``"[offline] ..."`` where their length allows,
  lists with one item (or ``minItems``), numbers at their minimum, booleans false,
  enums and ``Literal`` at their first value, optional fields filled in.
- **Usage and cost**: tokens are estimated as ceil(characters / 4) of the prompt
  (plus the schema, for structured calls) and of the output, and priced at the
  *configured model's* price. So offline runs move budgets and caps the way real
  runs would (roughly), which is what makes budget behaviour testable offline. The
  same input always gives the same text, usage and cost.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from cass_actions_core.text import OFFLINE_LABEL
from cass_actions_core.config import LLMSettings
from cass_actions_core.llm.base import (
    output_schema,
    LLMRequest,
    LLMResponse,
    StructuredResult,
    T,
    Usage,
    content_text,
    estimate_tokens,
)
from cass_actions_core.llm.errors import LLMError, describe_failure
from cass_actions_core.llm.prices import PriceTable, price_table

PROVIDER_NAME = "offline"
LABEL = OFFLINE_LABEL

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_KEY_LINE = re.compile(r"^\s*(#{1,6}\s+\S|[-*\u2022]\s+\S|\d+[.)]\s+\S|[A-Za-z][\w .'-]{0,40}:\s+\S)")
_PIECE_CHARS = 160  # each part of a digest; keeps offline text short like a summary


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "\u2026"


def first_sentence(text: str) -> str:
    """The first non-empty sentence (or line) of ``text``, whitespace collapsed."""
    for line in text.splitlines():
        if line.strip():
            return _clip(_SENTENCE_END.split(line.strip(), maxsplit=1)[0], _PIECE_CHARS)
    return ""


def key_lines(text: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` distinct headings, bullets or ``key: value`` lines of ``text``."""
    found: list[str] = []
    for line in text.splitlines():
        if _KEY_LINE.match(line):
            cleaned = _clip(line.strip().lstrip("#-*\u2022 ").strip(), 80)
            if cleaned and cleaned not in found:
                found.append(cleaned)
                if len(found) == limit:
                    break
    return found


def sentences(text: str) -> list[str]:
    """Every sentence of ``text`` in order (lines split further at ``.``, ``!``, ``?``)."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(_clip(s, _PIECE_CHARS) for s in _SENTENCE_END.split(line.strip()) if s.strip())
    return out


def digest_id(text: str) -> str:
    """A short, stable hash of ``text`` (names the digest and the offline request id)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def offline_text(request: LLMRequest) -> str:
    """The offline reply to ``request``: a labelled digest of its system and user text.

    At most ``max_tokens * 4`` characters (so its estimated output tokens never
    exceed ``max_tokens``), but never shorter than the label.
    """
    user_texts = [content_text(m.get("content")) for m in request.messages if m.get("role") == "user"]
    ask = first_sentence(user_texts[-1]) if user_texts else ""
    context = first_sentence(content_text(request.system)) if request.system else ""
    points = key_lines(request.prompt_text())
    parts = [LABEL]
    if ask:
        parts.append(f"Re: {ask}")
    if context:
        parts.append(f"Context: {context}")
    if points:
        parts.append("Key points: " + "; ".join(points) + ".")
    parts.append(f"(offline digest {digest_id(request.prompt_text())})")
    text = " ".join(parts)
    limit = max(len(LABEL), request.max_tokens * 4)
    return text if len(text) <= limit else text[:limit]


class _Snippets:
    """Deterministic source of strings for schema-built values: the prompt's sentences in turn."""

    def __init__(self, text: str) -> None:
        self._items = sentences(text) or ["offline"]
        self._next = 0

    def take(self) -> str:
        item = self._items[self._next % len(self._items)]
        self._next += 1
        return item


_FORMATS: dict[str, str] = {
    "date-time": "2000-01-01T00:00:00Z",
    "date": "2000-01-01",
    "time": "00:00:00",
    "duration": "PT0S",
    "email": "offline@example.invalid",
    "hostname": "offline.invalid",
    "uri": "https://offline.invalid/",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def _string(schema: dict[str, Any], snippets: _Snippets) -> str:
    fmt = schema.get("format")
    if fmt == "uuid":
        # Stable but distinct per field: derive from the next snippet.
        h = hashlib.sha256(snippets.take().encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
    if fmt in _FORMATS:
        return _FORMATS[fmt]
    snippet = snippets.take()
    max_len = schema.get("maxLength")
    min_len = int(schema.get("minLength", 0))
    labelled = f"{LABEL} {snippet}"
    text = labelled if max_len is None or len(labelled) <= max_len else snippet
    if max_len is not None:
        text = text[:max_len]
    if len(text) < min_len:
        filler = (text or "offline") + " "
        text = (filler * (min_len // len(filler) + 1))[:min_len]
    return text


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    minimum = schema.get("minimum")
    exclusive_min = schema.get("exclusiveMinimum")
    maximum = schema.get("maximum")
    exclusive_max = schema.get("exclusiveMaximum")
    step = schema.get("multipleOf")
    if minimum is not None:
        value: float = minimum
    elif exclusive_min is not None:
        # Just above the bound: the next integer, or a small step for floats.
        value = math.floor(exclusive_min) + 1 if integer else exclusive_min + (step or 1)
        upper = maximum if maximum is not None else exclusive_max
        if not integer and upper is not None and value >= upper:
            value = (exclusive_min + upper) / 2
    elif maximum is not None and maximum < 0:
        value = maximum
    elif exclusive_max is not None and exclusive_max <= 0:
        value = math.ceil(exclusive_max) - 1 if integer else exclusive_max - (step or 1)
    else:
        value = 0
    if step:
        value = math.ceil(value / step) * step
    return int(value) if integer else float(value)


def _resolve(schema: dict[str, Any], root: dict[str, Any], stack: frozenset[str]) -> tuple[dict[str, Any], frozenset[str]]:
    """Follow ``$ref`` chains; return the schema and the refs entered so far."""
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"cannot resolve schema reference {ref!r}")
        if ref in stack and len(stack) > 64:
            raise ValueError(f"schema reference {ref!r} recurses without an end")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        # Keywords next to $ref (e.g. a description) stay; the target fills in the rest.
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        stack = stack | {ref}
    return schema, stack


def _recursive(schema: Any, stack: frozenset[str]) -> bool:
    """Whether ``schema`` refers back to a model already being built (a self-reference)."""
    return isinstance(schema, dict) and schema.get("$ref") in stack


def _value(schema: Any, root: dict[str, Any], snippets: _Snippets, stack: frozenset[str], depth: int = 0) -> Any:
    if depth > 64:
        raise ValueError("schema nests too deeply to build a value generically")
    if schema is True or schema is None or schema == {}:
        return snippets.take()
    if schema is False:
        return None
    schema, stack = _resolve(dict(schema), root, stack)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            nullable = any(isinstance(o, dict) and o.get("type") == "null" for o in schema[key])
            options = [o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")]
            # Optional self-references end in null, so recursive models stay finite.
            if not options or (nullable and _recursive(options[0], stack)):
                return None
            return _value(options[0], root, snippets, stack, depth + 1)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(dict(part), root, stack)[0])
        return _value(merged, root, snippets, stack, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if non_null else "null"
    if kind == "object" or (kind is None and "properties" in schema):
        result = {name: _value(sub, root, snippets, stack, depth + 1) for name, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties")
        wanted = int(schema.get("minProperties", 0)) - len(result)
        for i in range(max(0, wanted)):
            result[f"key{i + 1}"] = _value(extra if isinstance(extra, dict) else {}, root, snippets, stack, depth + 1)
        return result
    if kind == "array":
        if "prefixItems" in schema:
            return [_value(s, root, snippets, stack, depth + 1) for s in schema["prefixItems"]]
        items = schema.get("items", {})
        minimum = int(schema.get("minItems", 0))
        # One item by default (a list with content reads better), none for a
        # self-referencing list that may be empty (children of a tree node).
        count = minimum if _recursive(items, stack) else max(1, minimum)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [_value(items, root, snippets, stack, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, snippets)
    if kind == "integer":
        return _number(schema, integer=True)
    if kind == "number":
        return _number(schema, integer=False)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return snippets.take()


def build_from_schema(output_model: type[T], text: str) -> T:
    """A valid ``output_model`` instance built from its JSON schema and the prompt ``text``.

    Raises :class:`LLMError` (``invalid_output``) when the schema's constraints cannot be
    met generically (a ``pattern``, a custom validator...): pass ``offline=`` then.
    """
    schema = output_schema(output_model)
    try:
        candidate = _value(schema, schema, _Snippets(text), frozenset())
        return output_model.model_validate(candidate)
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) and exc.errors() else str(exc)
        raise LLMError(
            describe_failure(
                "invalid_output", provider=PROVIDER_NAME, model=None,
                detail=f"cannot build a valid {output_model.__name__} from its JSON schema ({detail}); "
                       "pass an offline= builder for this call",
            ),
            kind="invalid_output",
            provider=PROVIDER_NAME,
        ) from None


def _snippet_source(request: LLMRequest) -> str:
    """The text schema-built strings are taken from: the ask first, the system prompt last."""
    texts = [content_text(m.get("content")) for m in reversed(request.messages)]
    if request.system:
        texts.append(content_text(request.system))
    return "\n".join(t for t in texts if t)


class OfflineProvider:
    """The ``offline`` provider (see the module docstring).

    Args:
        settings: used only for ``settings.prices`` (config price overrides).
        prices: the price table (default: the shipped table plus ``settings.prices``).
    """

    name = PROVIDER_NAME
    #: Its spend is simulated: the hold before a call need not survive a power cut.
    bills_real_money = False

    def __init__(self, settings: LLMSettings | None = None, *, prices: PriceTable | None = None) -> None:
        self.settings = settings or LLMSettings(provider=PROVIDER_NAME)
        self.prices = prices or price_table(self.settings.prices)

    def _response(self, request: LLMRequest, text: str, extra_input: str = "") -> LLMResponse:
        prompt = request.prompt_text() + extra_input
        usage = Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text))
        return LLMResponse(
            text=text,
            stop_reason="end_turn",
            usage=usage,
            cost_usd=self.prices.cost(request.model, usage),
            model=request.model,
            provider=PROVIDER_NAME,
            request_id=f"offline-{digest_id(prompt)}",
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """A labelled digest of the prompt (see :func:`offline_text`)."""
        return self._response(request, offline_text(request))

    async def structured(
        self,
        request: LLMRequest,
        output_model: type[T],
        *,
        offline: Callable[[], T] | None = None,
    ) -> StructuredResult[T]:
        """``offline()`` when given (validated into ``output_model``), else a schema-built value."""
        if offline is not None:
            built: Any = offline()
            value = built if isinstance(built, output_model) else output_model.model_validate(built)
        else:
            value = build_from_schema(output_model, _snippet_source(request))
        schema_text = json.dumps(output_schema(output_model), sort_keys=True)
        return StructuredResult(value, self._response(request, value.model_dump_json(), schema_text))


def create_offline_provider(settings: LLMSettings) -> OfflineProvider:
    """The factory registered under ``"offline"``."""
    return OfflineProvider(settings)
