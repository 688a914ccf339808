"""The JSON Schemas shipped in the package, and validation that reports JSON paths."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any

#: Schema names shipped in ``cass_actions_core/schemas`` (``schemas/`` in the repository).
ACTION_PACK = "action-pack"
TEMPLATE_FILE = "template-file"
CONFIG = "config"
PLAN = "plan"
SUMMARY = "work-summary"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema ``schemas/<name>.schema.json`` from the installed package."""
    text = (files("cass_actions_core") / "schemas" / f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


def json_path(parts: Iterable[Any]) -> str:
    """Render a jsonschema ``absolute_path`` as ``$.templates[0].steps[1]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(name: str, document: Any) -> list[tuple[str, str]]:
    """Validate ``document`` against schema ``name``; return ``(json_path, message)`` pairs.

    Errors are sorted by path so reports are stable; an empty list means valid.
    """
    errors = sorted(_validator(name).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [(json_path(e.absolute_path), _short(e)) for e in errors]


def validate_instance(schema: dict[str, Any], instance: Any) -> list[tuple[str, str]]:
    """Validate ``instance`` against an arbitrary (already checked) JSON Schema."""
    validator = _instance_validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [(json_path(e.absolute_path), _short(e)) for e in errors]


def check_schema(schema: Any) -> str | None:
    """Return why ``schema`` is not a valid draft 2020-12 JSON Schema, or ``None``."""
    # Checked once per distinct schema: a catalogue re-checks the same params schemas
    # every time a runtime is built.
    return _check_schema_text(json.dumps(schema, sort_keys=True))


@cache
def _check_schema_text(text: str) -> str | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(json.loads(text))
    except SchemaError as exc:
        return exc.message
    return None


@cache
def _instance_validator(text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(text))


def _short(error: Any) -> str:
    # jsonschema repeats the whole offending instance in messages about big objects;
    # keep the report to one readable line.
    message = str(error.message)
    return message if len(message) <= 200 else message[:197] + "..."
