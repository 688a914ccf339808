"""The JSON Schemas shipped in the package, and validation that reports JSON paths.

Validation results for documents found valid are remembered in a small cache file
(``$CASS_ACTIONS_CACHE_DIR`` or the platform's user cache folder), keyed by a hash of
the schema and the document: ``cass-actions list`` then skips re-validating unchanged
pack metadata, and does not even import jsonschema. Invalid documents are never cached,
so every problem is reported every time.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

CACHE_ENV = "CASS_ACTIONS_CACHE_DIR"

#: Most entries the validation cache file keeps.
CACHE_LIMIT = 5000

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

    # ``format`` is only an annotation unless a checker is given; the default checker
    # covers "date" (datetime.date.fromisoformat) without extra packages.
    return Draft202012Validator(load_schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def json_path(parts: Iterable[Any]) -> str:
    """Render a jsonschema ``absolute_path`` as ``$.templates[0].steps[1]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class _ValidCache:
    """Digests of (schema, document) pairs already found valid, kept across processes.

    The file keeps the most recently used entries last and is capped at
    :data:`CACHE_LIMIT` entries, dropping the least recently used first.
    """

    def __init__(self) -> None:
        self._known: set[str] | None = None
        self._used: list[str] = []  # hits and new entries of this process, in order

    @property
    def path(self) -> Path:
        root = os.environ.get(CACHE_ENV)
        if not root:
            import platformdirs

            root = platformdirs.user_cache_dir("cass-actions", appauthor=False)
        from cass_actions_core import __version__

        return Path(root) / f"valid-documents-{__version__}.json"

    def _read(self) -> list[str]:
        try:
            entries = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError, TypeError):
            return []  # no cache, or an unreadable one: validate everything
        return [e for e in entries if isinstance(e, str)] if isinstance(entries, list) else []

    def _load(self) -> set[str]:
        if self._known is None:
            self._known = set(self._read())
        return self._known

    def __contains__(self, key: str) -> bool:
        if key in self._load():
            self._touch(key)
            return True
        return False

    def add(self, key: str) -> None:
        self._load().add(key)
        self._touch(key)

    def _touch(self, key: str) -> None:
        if not self._used:
            atexit.register(self.save)
        self._used.append(key)

    def save(self) -> None:
        """Write the cache (best effort: a read-only or full disk only costs speed)."""
        if not self._used:
            return
        try:
            path = self.path
            path.parent.mkdir(parents=True, exist_ok=True)
            recent = list(dict.fromkeys(self._used))
            fresh = set(recent)
            entries = [e for e in self._read() if e not in fresh] + recent
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries[-CACHE_LIMIT:]), "utf-8")
            tmp.replace(path)
        except OSError:
            pass
        self._used.clear()


_valid = _ValidCache()


def _key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@cache
def _schema_text(name: str) -> str:
    return _canonical(load_schema(name))


def validate(name: str, document: Any) -> list[tuple[str, str]]:
    """Validate ``document`` against schema ``name``; return ``(json_path, message)`` pairs.

    Errors are sorted by path so reports are stable; an empty list means valid.
    ``format`` keywords are checked (``"date"`` must be a real calendar date).
    """
    # "formats": documents cached as valid before formats were checked are not trusted.
    key = _key("validate", "formats", _schema_text(name), _canonical(document))
    if key in _valid:
        return []
    errors = sorted(_validator(name).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        _valid.add(key)
    return [(json_path(e.absolute_path), _short(e)) for e in errors]


def validate_instance(schema: dict[str, Any], instance: Any) -> list[tuple[str, str]]:
    """Validate ``instance`` against an arbitrary (already checked) JSON Schema."""
    schema_text = _canonical(schema)
    key = _key("instance", schema_text, _canonical(instance))
    if key in _valid:
        return []
    validator = _instance_validator(schema_text)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        _valid.add(key)
    return [(json_path(e.absolute_path), _short(e)) for e in errors]


def check_schema(schema: Any) -> str | None:
    """Return why ``schema`` is not a valid draft 2020-12 JSON Schema, or ``None``."""
    text = _canonical(schema)
    key = _key("metaschema", text)
    if key in _valid:
        return None
    why = _check_schema_text(text)
    if why is None:
        _valid.add(key)
    return why


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
