"""The JSON Schemas shipped in the package, and validation that reports JSON paths.

Two validators, one verdict: a document is first checked by a compiled validator
(`jsonschema-rs`, Draft 2020-12 with formats), which answers "valid" in microseconds;
only a document it finds invalid goes through `jsonschema`, whose messages and JSON paths
are what users read. So a large catalogue is checked quickly and every problem is still
reported in the same words. Schemas themselves (an action's ``params``, a pack's settings) are
checked against the draft 2020-12 metaschema the same way: the compiled check vouches for a
schema only when jsonschema is sure to agree (see :func:`_plainly_valid_schema`); anything else
goes to jsonschema, which decides and says why.

Pack files found valid are remembered in a small cache file (``$CASS_ACTIONS_CACHE_DIR``
or the platform's user cache folder), keyed by a hash of the schema and of the file's
bytes (or of the document, for metadata registered inline): ``cass-actions list`` then
skips re-validating unchanged pack metadata and imports neither validator. Only
catalogue checks fill it (the scheduler's run-time checks use ``cache=False``), so
running work never pushes pack files out of it. Invalid documents are never cached, so
every problem is reported every time; a changed file has another hash and is checked
again. (``cass-actions validate`` also saves its whole result beside it: see
:mod:`cass_actions_core.validate_cache`.)
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

CACHE_ENV = "CASS_ACTIONS_CACHE_DIR"

#: Most entries the validation cache file keeps (pack files and params schemas: a few per pack).
CACHE_LIMIT = 5000

#: Schema names shipped in ``cass_actions_core/schemas`` (``schemas/`` in the repository).
ACTION_PACK = "action-pack"
TEMPLATE_FILE = "template-file"
CONFIG = "config"
PLAN = "plan"
SUMMARY = "work-summary"


@cache
def _schema_source(name: str) -> str:
    """The text of ``schemas/<name>.schema.json`` in the installed package."""
    try:  # a package installed as files (the usual case: no importlib.resources to import)
        with open(os.path.join(os.path.dirname(__file__), "schemas", f"{name}.schema.json"), encoding="utf-8") as handle:
            return handle.read()
    except OSError:  # a package imported from a zip file, say
        from importlib.resources import files

        return (files("cass_actions_core") / "schemas" / f"{name}.schema.json").read_text("utf-8")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema ``schemas/<name>.schema.json`` from the installed package."""
    return json.loads(_schema_source(name))


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


def cache_root() -> Path:
    """The folder of the validation caches: ``$CASS_ACTIONS_CACHE_DIR``, else the platform's user cache folder."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("cass-actions", appauthor=False)
    return Path(root)


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
        from cass_actions_core import __version__

        return cache_root() / f"valid-documents-{__version__}.json"

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
            known = self._read()
            entries = [e for e in known if e not in fresh] + recent
            if entries == known:
                self._used.clear()
                return  # the file already says so: nothing new, and these are its most recent entries
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


def _schema_text(name: str) -> str:
    return _schema_source(name)  # the file's own text: a key part, not parsed just to be keyed


def digest(text: str) -> str:
    """The cache key part for a file's contents (what :func:`validate` takes as ``source_digest``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_key(name: str, source_digest: str) -> str:
    # "formats", "depth": files cached as valid before formats (or their nesting) were checked are not trusted.
    return _key("validate", "formats", "depth", _schema_text(name), f"file:{source_digest}")


def known_valid(name: str, source_digest: str) -> bool:
    """Whether a file with this :func:`digest` was found valid against schema ``name`` before (so it
    parses, and is nested no deeper than files may be)."""
    return _file_key(name, source_digest) in _valid


def validate(name: str, document: Any, *, cache: bool = True, source_digest: str | None = None) -> list[tuple[str, str]]:
    """Validate ``document`` against schema ``name``; return ``(json_path, message)`` pairs.

    Errors are sorted by path so reports are stable; an empty list means valid.
    ``format`` keywords are checked (``"date"`` must be a real calendar date).
    ``source_digest`` (:func:`digest` of the file the document was parsed from) keys the
    cache cheaply for large files; ``cache=False`` for documents that will not be seen
    again (nothing is remembered).
    """
    key = None
    if cache:
        key = (_file_key(name, source_digest) if source_digest else
               _key("validate", "formats", _schema_text(name), f"doc:{_canonical(document)}"))
        if key in _valid:
            return []
    errors = [] if _fast(name).is_valid(document) else _errors(_validator(name), document)
    if not errors and key is not None:
        _valid.add(key)
    return errors


def validate_instance(schema: dict[str, Any], instance: Any) -> list[tuple[str, str]]:
    """Validate ``instance`` against an arbitrary (already checked) JSON Schema, such as an action's
    ``params``. Not cached: the compiled validator answers in microseconds."""
    if _fast_instance(schema).is_valid(instance):
        return []
    return _errors(_instance_validator(_canonical(schema)), instance)


def instance_check(schema: dict[str, Any]) -> Any:
    """The compiled validator's ``is_valid`` for ``schema`` (an already checked JSON Schema): a function
    saying whether an instance is valid, for checking many; :func:`validate_instance` says why not."""
    return _fast_instance(schema).is_valid


def schema_problems(schema: Any) -> list[tuple[str, str]]:
    """Why ``schema`` cannot serve as a draft 2020-12 JSON Schema: ``(path inside the schema, message)``
    pairs, sorted by path (``$.properties.folder.type``); empty when it can.

    It must be valid against the metaschema (every error is reported, not only the first), and
    every ``$ref`` in it must resolve within the schema itself: a params schema is the pack's
    own, and nothing is fetched from the network to check or use it.
    """
    text = _canonical(schema)
    if isinstance(schema, dict):
        _text_by_id[id(schema)] = (schema, text)  # for _fast_instance: one validator per distinct schema
    key = _key("metaschema", "refs resolved", text)
    if key in _valid:
        return []
    problems = list(_schema_text_problems(text))
    if not problems:
        _valid.add(key)
    return problems


@cache
def _schema_text_problems(text: str) -> tuple[tuple[str, str], ...]:
    schema = json.loads(text)
    if not _plainly_valid_schema(schema):
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match

        meta = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
        # Each error at its own place, said as jsonschema's check_schema would say it (its best match).
        found = [best_match([error]) for error in meta.iter_errors(schema)]
        if found:
            found.sort(key=lambda e: list(map(str, e.absolute_path)))
            return tuple((json_path(e.absolute_path), _short(e)) for e in found)
    try:
        if text not in _fast_by_text:
            _fast_by_text[text] = _compile(schema)
    except Exception as exc:  # jsonschema_rs.ValidationError: a $ref that does not resolve, a bad $id
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ((_reference_path(schema, message), f"it does not compile: {message}"),)
    return ()


def _no_retrieval(uri: str) -> Any:
    raise ValueError(f"{uri} is not part of the schema, and schemas are never fetched from the network")


def _compile(schema: Any) -> Any:
    import jsonschema_rs

    # No formats, like the jsonschema validator below: params schemas are the pack's own.
    return jsonschema_rs.validator_for(schema, retriever=_no_retrieval)


def _reference_path(schema: Any, message: str) -> str:
    """The path of the first ``$ref``, ``$dynamicRef`` or ``$id`` whose value (or fragment) the compiler's
    ``message`` quotes, else ``$``."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop(0)
        if isinstance(node, dict):
            for keyword in ("$ref", "$dynamicRef", "$id"):
                value = node.get(keyword)
                if isinstance(value, str) and value:
                    fragment = value.partition("#")[2]
                    if f"'{value}'" in message or (fragment and f"'{fragment}'" in message):
                        return json_path((*path, keyword))
            stack.extend((value, (*path, key)) for key, value in node.items() if isinstance(value, (dict, list)))
        elif isinstance(node, list):
            stack.extend((value, (*path, i)) for i, value in enumerate(node) if isinstance(value, (dict, list)))
    return "$"


#: The only ``$schema`` a schema may name and still be vouched for by the compiled check: the draft
#: jsonschema checks every schema against (the compiled check would pick another draft's metaschema).
_DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: A URI reference made of unreserved characters, "/", "$" and one "#" only (an optional http(s)
#: scheme and host first): valid by RFC 3986 under any checker, so the ``uri-reference`` format
#: that jsonschema checks on ``$id``, ``$ref`` and ``$dynamicRef`` (when an RFC 3986 package is
#: installed) cannot refuse it. Anything else is left to jsonschema.
_PLAIN_URI_REFERENCE = re.compile(r"(?:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?)?[A-Za-z0-9._~/$-]*(?:#[A-Za-z0-9._~/$-]*)?")


def _plainly_valid_schema(schema: Any) -> bool:
    """True when ``schema`` is certainly a valid draft 2020-12 schema by jsonschema's own check, found
    without importing it: the compiled metaschema check passes and every value the metaschema checks
    with a ``format`` jsonschema may check (``regex``; ``uri``/``uri-reference``) is plainly fine.
    False means "not sure": jsonschema decides, and says why."""
    stack, depth = [(schema, 0)], 0
    while stack:  # first the parts the compiled check does not judge like jsonschema does
        node, depth = stack.pop()
        if depth > 64:
            return False  # deeper than any file we parse: let jsonschema recurse (and fail) as before
        if isinstance(node, list):
            stack.extend((item, depth + 1) for item in node if isinstance(item, (dict, list)))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key == "$schema" and value != _DRAFT:
                return False
            if key in ("$id", "$ref", "$dynamicRef") and not (isinstance(value, str) and _PLAIN_URI_REFERENCE.fullmatch(value)):
                return False
            if key == "$vocabulary":
                return False
            # "regex" format: jsonschema compiles with Python's re (the compiled check's engine differs).
            if key == "pattern" and isinstance(value, str) and not _compiles(value):
                return False
            if key == "patternProperties" and isinstance(value, dict) and not all(_compiles(k) for k in value):
                return False
            if isinstance(value, (dict, list)):
                stack.append((value, depth + 1))
    try:
        import jsonschema_rs

        return bool(jsonschema_rs.meta.is_valid(schema))
    except Exception:  # an unexpected refusal of the compiled checker: jsonschema decides
        return False


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except Exception:  # re.error, and RecursionError/OverflowError for pathological patterns
        return False
    return True


@cache
def _fast(name: str) -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(load_schema(name), validate_formats=True)


#: Compiled validators of params schemas, by the schema object's identity (the schema is kept
#: alive beside its validator, so an id is never reused while the entry exists).
_fast_by_id: dict[int, tuple[Any, Any]] = {}

#: Canonical texts :func:`schema_problems` computed, by the schema object's identity (taken by
#: :func:`_fast_instance`), and the validators compiled for them: equal schemas (a pack's actions
#: often share one params schema) are compiled once.
_text_by_id: dict[int, tuple[Any, str]] = {}
_fast_by_text: dict[str, Any] = {}


def _fast_instance(schema: dict[str, Any]) -> Any:
    entry = _fast_by_id.get(id(schema))
    if entry is None or entry[0] is not schema:
        known = _text_by_id.pop(id(schema), None)
        text = known[1] if known is not None and known[0] is schema else None
        validator = _fast_by_text.get(text) if text is not None else None
        if validator is None:
            validator = _compile(schema)
            if text is not None:
                _fast_by_text[text] = validator
        entry = _fast_by_id[id(schema)] = (schema, validator)
    return entry[1]


@cache
def _instance_validator(text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(text))


def _errors(validator: Any, document: Any) -> list[tuple[str, str]]:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [(json_path(e.absolute_path), _short(e)) for e in errors]


def _short(error: Any) -> str:
    # jsonschema repeats the whole offending instance in messages about big objects;
    # keep the report to one readable line.
    message = str(error.message)
    return message if len(message) <= 200 else message[:197] + "..."
