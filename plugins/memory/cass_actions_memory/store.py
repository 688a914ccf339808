"""The conversations store: a small SQLite file in the memory pack's data folder.

``<workspace>/memory/conversations.sqlite`` (stdlib :mod:`sqlite3`, WAL, so the CLI can
import while the daemon runs an action). Tables:

- ``conversations``: id, title (set by ``memory.generate_conversation_title``);
- ``messages``: conversation id, role (``user``/``assistant``), content, ``at`` (the
  aware ISO 8601 timestamp as given) and ``at_utc`` (fixed-width UTC, for ordering), the
  file and line it came from, and ``summary_id``: the summary pass that covered it
  (``NULL`` = not summarised yet). ``key`` is the SHA-256 of conversation id, UTC time,
  role and content and is UNIQUE, which is what makes every import idempotent;
- ``summaries``: one row per summary pass (text, key points, open questions, the span
  of messages it covered, and the date a consolidation used it);
- ``inbox_files``: the SHA-256 of each inbox file already imported (an unchanged file is
  not read again) and the problems found in it (JSON ``{"file", "line", "field",
  "message"}`` objects; older versions kept the text only, which is still read).

Every stored time is timezone-aware. The schema version is ``PRAGMA user_version``; a
file written by a newer version of the pack is refused with a clear message.

The one import path is :meth:`ConversationStore.import_file`: the inbox import
(:meth:`ConversationStore.import_inbox`) and ``cass-actions memory import FILE`` both
use it. A malformed line is reported with its file and line number and skipped; the
other lines are imported.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any

#: The store's file name inside the pack's data folder.
DB_NAME = "conversations.sqlite"
#: Where the host drops conversation messages, relative to the workspace.
INBOX = Path("conversations") / "inbox"
#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1
#: Message roles accepted on import.
ROLES = ("user", "assistant")
#: Longest conversation id accepted on import.
MAX_ID_LENGTH = 200

_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

_SCHEMA = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    title TEXT,
    titled_at TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    at TEXT NOT NULL,
    at_utc TEXT NOT NULL,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    summary_id INTEGER REFERENCES summaries(id)
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, at_utc);
CREATE INDEX messages_unsummarised ON messages(conversation_id) WHERE summary_id IS NULL;
CREATE TABLE summaries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    created_at TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    text TEXT NOT NULL,
    key_points TEXT NOT NULL,
    open_questions TEXT NOT NULL,
    message_count INTEGER NOT NULL,
    first_message_utc TEXT NOT NULL,
    last_message_utc TEXT NOT NULL,
    path TEXT NOT NULL,
    consolidated_on TEXT
);
CREATE INDEX summaries_by_conversation ON summaries(conversation_id, id);
CREATE TABLE inbox_files (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    lines INTEGER NOT NULL,
    new_messages INTEGER NOT NULL,
    problems TEXT NOT NULL
);
"""


class StoreError(Exception):
    """The store file cannot be used (unreadable, corrupt, or from a newer version)."""


def utc_key(dt: datetime) -> str:
    """A fixed-width UTC rendering of the aware ``dt`` (sorts like the instants)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} (every stored time is timezone-aware)")
    return dt.astimezone(UTC).strftime(_UTC_FORMAT)


def from_utc_key(text: str) -> datetime:
    """The aware UTC datetime of a :func:`utc_key` string."""
    return datetime.strptime(text, _UTC_FORMAT).replace(tzinfo=UTC)


class MessageLineError(ValueError):
    """An inbox line that cannot be imported; ``field`` names the offending field(s), if one is to blame."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LineProblem:
    """A line (or a whole file, ``line == 0``) that could not be imported, and why (``field``: the field at fault)."""

    file: str
    line: int
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (the form kept in ``inbox_files.problems``)."""
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}

    @classmethod
    def from_stored(cls, value: Any, file: str) -> LineProblem:
        """A problem as stored for inbox file ``file``: a mapping, or the text older versions kept."""
        if isinstance(value, dict):
            return cls(str(value.get("file") or file), int(value.get("line") or 0), str(value.get("message") or ""),
                       value.get("field") if isinstance(value.get("field"), str) else None)
        text = str(value)
        match = re.match(r"(?P<file>.*?) line (?P<line>\d+): (?P<message>.*)\Z", text, re.S)
        if match:
            file, line, message = match["file"], int(match["line"]), match["message"]
        else:
            line, message = 0, text.removeprefix(f"{file}: ")
        fields = re.findall(r"field(?:\(s\))? '([^']+)'", message)
        if message.startswith("missing field(s)"):
            fields = re.findall(r"'([^']+)'", message)
        return cls(file, line, message, ", ".join(fields) or None)


@dataclass(frozen=True)
class InboxFileRecord:
    """What the last import of one inbox file found (``inbox_files`` row)."""

    path: str
    imported_at: datetime
    lines: int
    new_messages: int
    problems: list[LineProblem]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"file": self.path, "imported_at": self.imported_at.isoformat(), "lines": self.lines,
                "new_messages": self.new_messages, "problems": [p.to_dict() for p in self.problems]}


@dataclass
class ImportReport:
    """What an import read, added and skipped."""

    files: list[str] = field(default_factory=list)
    unchanged_files: list[str] = field(default_factory=list)
    lines: int = 0
    imported: int = 0
    duplicates: int = 0
    problems: list[LineProblem] = field(default_factory=list)

    def merge(self, other: ImportReport) -> None:
        """Add ``other``'s counts and lists to this report."""
        self.files += other.files
        self.unchanged_files += other.unchanged_files
        self.lines += other.lines
        self.imported += other.imported
        self.duplicates += other.duplicates
        self.problems += other.problems

    def describe(self) -> str:
        """One sentence: new messages, already-known ones, skipped lines."""
        text = f"imported {self.imported} new message(s)"
        if self.duplicates:
            text += f" ({self.duplicates} already known)"
        if self.problems:
            text += f"; skipped {len(self.problems)} malformed line(s)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"files": self.files, "unchanged_files": self.unchanged_files, "lines": self.lines,
                "imported": self.imported, "duplicates": self.duplicates, "problems": [str(p) for p in self.problems]}


@dataclass(frozen=True)
class ParsedMessage:
    """One valid inbox line."""

    conversation_id: str
    role: str
    content: str
    at: datetime

    @property
    def key(self) -> str:
        """The idempotency key: SHA-256 of conversation id, UTC time, role and content."""
        payload = json.dumps([self.conversation_id, utc_key(self.at), self.role, self.content], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_message_line(text: str) -> ParsedMessage:
    """Parse one JSONL line ``{"conversation_id", "role", "content", "at"}``; :class:`MessageLineError` says what is wrong.

    Extra fields are ignored (a host may add its own ids). ``at`` must be ISO 8601 with a
    UTC offset (``Z`` or ``+01:00``): a time without one is ambiguous and is refused
    rather than guessed.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageLineError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise MessageLineError(f"expected a JSON object, got {type(doc).__name__}")
    missing = [k for k in ("conversation_id", "role", "content", "at") if k not in doc]
    if missing:
        raise MessageLineError("missing field(s) " + ", ".join(repr(m) for m in missing), ", ".join(missing))
    cid = doc["conversation_id"]
    if not isinstance(cid, str) or not cid.strip():
        raise MessageLineError("field 'conversation_id' must be a non-empty string", "conversation_id")
    if len(cid) > MAX_ID_LENGTH:
        raise MessageLineError(f"field 'conversation_id' is longer than {MAX_ID_LENGTH} characters", "conversation_id")
    role = doc["role"]
    if role not in ROLES:
        raise MessageLineError(f"field 'role' must be 'user' or 'assistant', got {role!r}", "role")
    content = doc["content"]
    if not isinstance(content, str) or not content.strip():
        raise MessageLineError("field 'content' must be a non-empty string", "content")
    raw_at = doc["at"]
    if not isinstance(raw_at, str):
        raise MessageLineError(f"field 'at' must be an ISO 8601 string, got {type(raw_at).__name__}", "at")
    try:
        at = datetime.fromisoformat(raw_at)
    except ValueError:
        raise MessageLineError(f"field 'at' is not an ISO 8601 date and time: {raw_at!r}", "at") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise MessageLineError(f"field 'at' has no UTC offset: {raw_at!r} (write e.g. {raw_at}Z or {raw_at}+01:00)", "at")
    return ParsedMessage(cid.strip(), role, content, at)


@dataclass(frozen=True)
class Message:
    """A stored message."""

    id: int
    conversation_id: str
    role: str
    content: str
    at: datetime
    source: str
    summary_id: int | None


@dataclass(frozen=True)
class ConversationInfo:
    """A conversation with its message counts and summary state."""

    id: str
    title: str | None
    messages: int
    summarised: int
    first_at: datetime
    last_at: datetime
    summaries: int
    last_summary_at: datetime | None
    summary_path: str | None

    @property
    def unsummarised(self) -> int:
        """Messages no summary pass has covered yet."""
        return self.messages - self.summarised

    def label(self) -> str:
        """The title, or the id when untitled."""
        return self.title or self.id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"id": self.id, "title": self.title, "messages": self.messages, "summarised": self.summarised,
                "unsummarised": self.unsummarised, "first_at": self.first_at.isoformat(),
                "last_at": self.last_at.isoformat(), "summaries": self.summaries,
                "last_summary_at": self.last_summary_at.isoformat() if self.last_summary_at else None,
                "summary_path": self.summary_path}


@dataclass(frozen=True)
class SummaryPass:
    """One summary pass over some of a conversation's messages."""

    id: int
    conversation_id: str
    created_at: datetime
    text: str
    key_points: list[str]
    open_questions: list[str]
    message_count: int
    first_message_at: datetime
    last_message_at: datetime
    path: str
    consolidated_on: date | None


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {version}, written by a newer cass-actions-memory "
                         f"(this one knows version {SCHEMA_VERSION}); upgrade the pack")


def last_user_message_at(path: Path) -> datetime | None:
    """When the user last wrote, over every conversation in the store file ``path`` (UTC), or ``None``.

    Opens the file read-only and never creates or migrates it: the scheduler asks on every
    tick, and a full :class:`ConversationStore` open (pragmas, schema check, migration) cost
    three times as much. Raises :class:`StoreError` for a file that is not a readable store.
    """
    path = Path(path)
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the conversations store: {exc}") from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        _check_version(path, version)
        if version == 0:
            return None  # created by another process a moment ago, its tables not yet
        row = db.execute("SELECT MAX(at_utc) FROM messages WHERE role = 'user'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot read the conversations store: {exc}") from None
    finally:
        db.close()
    return from_utc_key(row[0]) if row and row[0] else None


class ConversationStore:
    """The SQLite conversations store (see the module docstring). Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the conversations store: {exc}") from None

    @classmethod
    def in_folder(cls, data_dir: Path) -> ConversationStore:
        """The store in the memory pack's data folder ``data_dir`` (created if missing)."""
        return cls(Path(data_dir) / DB_NAME)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        _check_version(self.path, version)
        if version == 0:
            # Statement by statement inside one transaction (executescript would commit early).
            with self.transaction() as db:
                # Read again under the write lock: another process may have created it meanwhile.
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed at the end, rolled back on error."""
        if self._db.in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- import ----------------------------------------------------------------------

    def import_file(self, path: Path, *, now: datetime, label: str | None = None) -> ImportReport:
        """Import every valid line of the JSONL file ``path`` (the one import path).

        Blank lines are ignored; a malformed line becomes a :class:`LineProblem` naming
        ``label`` (default: the path) and its line number, and the rest still imports.
        A message already stored (same conversation, time, role and content) is counted
        as a duplicate, never stored twice.
        """
        name = label or str(path)
        report = ImportReport(files=[name])
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            report.problems.append(LineProblem(name, 0, f"cannot read the file: {exc.strerror or exc}"))
            return report
        self._import_bytes(raw, name, now, report)
        return report

    def _import_bytes(self, raw: bytes, name: str, now: datetime, report: ImportReport) -> None:
        imported_at = now.isoformat()
        with self.transaction() as db:
            for number, line in enumerate(raw.split(b"\n"), start=1):
                if not line.strip():
                    continue
                report.lines += 1
                try:
                    message = parse_message_line(line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    report.problems.append(LineProblem(name, number, f"not valid UTF-8 (byte {exc.start + 1})"))
                    continue
                except MessageLineError as exc:
                    report.problems.append(LineProblem(name, number, str(exc), exc.field))
                    continue
                db.execute("INSERT OR IGNORE INTO conversations (id, created_at) VALUES (?, ?)",
                           (message.conversation_id, imported_at))
                cursor = db.execute(
                    "INSERT OR IGNORE INTO messages (key, conversation_id, role, content, at, at_utc, source, imported_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (message.key, message.conversation_id, message.role, message.content, message.at.isoformat(),
                     utc_key(message.at), f"{name}:{number}", imported_at),
                )
                if cursor.rowcount:
                    report.imported += 1
                else:
                    report.duplicates += 1

    def import_inbox(self, workspace: Path, *, now: datetime) -> ImportReport:
        """Import ``<workspace>/conversations/inbox/*.jsonl`` (files unchanged since their last import are skipped).

        Problems are named relative to the workspace (``conversations/inbox/x.jsonl line 3``)
        and are kept with the file's record, so a skipped line is reported once per
        version of the file rather than on every run.
        """
        report = ImportReport()
        inbox = Path(workspace) / INBOX
        if not inbox.is_dir():
            return report
        for path in sorted(inbox.glob("*.jsonl")):
            name = str(INBOX / path.name)
            try:
                raw = path.read_bytes()
            except OSError as exc:
                report.files.append(name)
                report.problems.append(LineProblem(name, 0, f"cannot read the file: {exc.strerror or exc}"))
                continue
            digest = hashlib.sha256(raw).hexdigest()
            known = self._db.execute("SELECT sha256 FROM inbox_files WHERE path = ?", (name,)).fetchone()
            if known is not None and known["sha256"] == digest:
                report.unchanged_files.append(name)
                continue
            one = ImportReport(files=[name])
            with self.transaction() as db:
                self._import_bytes(raw, name, now, one)
                db.execute(
                    "INSERT INTO inbox_files (path, sha256, imported_at, lines, new_messages, problems) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256, imported_at = excluded.imported_at, "
                    "lines = excluded.lines, new_messages = excluded.new_messages, problems = excluded.problems",
                    (name, digest, now.isoformat(), one.lines, one.imported,
                     json.dumps([p.to_dict() for p in one.problems], ensure_ascii=False)),
                )
            report.merge(one)
        return report

    # -- queries ---------------------------------------------------------------------

    def inbox_files(self) -> list[InboxFileRecord]:
        """Every inbox file imported so far (by path) with what its last import found, problems included.

        Skipped lines are reported by the action that imported them and then kept here
        (``cass-actions memory problems``) until the file changes and is imported again.
        """
        records = []
        for row in self._db.execute("SELECT * FROM inbox_files ORDER BY path"):
            try:
                stored = json.loads(row["problems"])
            except ValueError:
                stored = [row["problems"]]
            problems = [LineProblem.from_stored(p, row["path"]) for p in (stored if isinstance(stored, list) else [stored])]
            records.append(InboxFileRecord(row["path"], datetime.fromisoformat(row["imported_at"]), row["lines"],
                                           row["new_messages"], problems))
        return records

    def conversations(self) -> list[ConversationInfo]:
        """Every conversation with at least one message, most recently active first."""
        return [self._info(row) for row in self._db.execute(self._INFO_SQL + " GROUP BY c.id ORDER BY MAX(m.at_utc) DESC, c.id")]

    def conversation(self, conversation_id: str) -> ConversationInfo | None:
        """The conversation ``conversation_id``, or ``None``."""
        row = self._db.execute(self._INFO_SQL + " WHERE c.id = ? GROUP BY c.id", (conversation_id,)).fetchone()
        return self._info(row) if row is not None else None

    _INFO_SQL = (
        "SELECT c.id, c.title, COUNT(m.id) AS messages, COUNT(m.summary_id) AS summarised, "
        "MIN(m.at_utc) AS first_utc, MAX(m.at_utc) AS last_utc, "
        "(SELECT COUNT(*) FROM summaries s WHERE s.conversation_id = c.id) AS passes, "
        "(SELECT MAX(s.created_utc) FROM summaries s WHERE s.conversation_id = c.id) AS last_summary_utc, "
        "(SELECT s.path FROM summaries s WHERE s.conversation_id = c.id ORDER BY s.id DESC LIMIT 1) AS summary_path "
        "FROM conversations c JOIN messages m ON m.conversation_id = c.id"
    )

    @staticmethod
    def _info(row: sqlite3.Row) -> ConversationInfo:
        return ConversationInfo(
            id=row["id"], title=row["title"], messages=row["messages"], summarised=row["summarised"],
            first_at=from_utc_key(row["first_utc"]), last_at=from_utc_key(row["last_utc"]), summaries=row["passes"],
            last_summary_at=from_utc_key(row["last_summary_utc"]) if row["last_summary_utc"] else None,
            summary_path=row["summary_path"],
        )

    def messages(self, conversation_id: str, *, unsummarised: bool = False) -> list[Message]:
        """The conversation's messages in time order (only those not summarised yet, if asked)."""
        sql = "SELECT * FROM messages WHERE conversation_id = ?" + (" AND summary_id IS NULL" if unsummarised else "")
        rows = self._db.execute(sql + " ORDER BY at_utc, id", (conversation_id,))
        return [Message(r["id"], r["conversation_id"], r["role"], r["content"], datetime.fromisoformat(r["at"]),
                        r["source"], r["summary_id"]) for r in rows]

    def summaries(self, *, conversation_id: str | None = None, unconsolidated: bool = False,
                  since: datetime | None = None, limit: int | None = None) -> list[SummaryPass]:
        """Summary passes, newest first, filtered as asked."""
        where, args = [], []
        if conversation_id is not None:
            where.append("conversation_id = ?")
            args.append(conversation_id)
        if unconsolidated:
            where.append("consolidated_on IS NULL")
        if since is not None:
            where.append("created_utc >= ?")
            args.append(utc_key(since))
        sql = "SELECT * FROM summaries" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._pass(r) for r in self._db.execute(sql, args)]

    def latest_summary(self, conversation_id: str) -> SummaryPass | None:
        """The conversation's most recent summary pass, or ``None``."""
        found = self.summaries(conversation_id=conversation_id, limit=1)
        return found[0] if found else None

    @staticmethod
    def _pass(row: sqlite3.Row) -> SummaryPass:
        return SummaryPass(
            id=row["id"], conversation_id=row["conversation_id"], created_at=datetime.fromisoformat(row["created_at"]),
            text=row["text"], key_points=json.loads(row["key_points"]), open_questions=json.loads(row["open_questions"]),
            message_count=row["message_count"], first_message_at=from_utc_key(row["first_message_utc"]),
            last_message_at=from_utc_key(row["last_message_utc"]), path=row["path"],
            consolidated_on=date.fromisoformat(row["consolidated_on"]) if row["consolidated_on"] else None,
        )

    def active_dates(self, conversation_id: str, tz: tzinfo) -> list[str]:
        """Local dates (in ``tz``, ISO) on which the conversation's summarised messages were sent."""
        rows = self._db.execute("SELECT at_utc FROM messages WHERE conversation_id = ? AND summary_id IS NOT NULL "
                                "ORDER BY at_utc", (conversation_id,))
        return sorted({from_utc_key(r["at_utc"]).astimezone(tz).date().isoformat() for r in rows})

    def summarised_span(self, conversation_id: str) -> tuple[int, datetime | None, datetime | None]:
        """How many messages are summarised, and the first and last of them (UTC)."""
        row = self._db.execute("SELECT COUNT(*) AS n, MIN(at_utc) AS a, MAX(at_utc) AS b FROM messages "
                               "WHERE conversation_id = ? AND summary_id IS NOT NULL", (conversation_id,)).fetchone()
        return row["n"], from_utc_key(row["a"]) if row["a"] else None, from_utc_key(row["b"]) if row["b"] else None

    # -- writes ----------------------------------------------------------------------

    def record_summary(self, conversation_id: str, messages: list[Message], *, text: str, key_points: list[str],
                       open_questions: list[str], path: str, now: datetime,
                       publish: Callable[[SummaryPass], None] | None = None) -> SummaryPass:
        """Store a summary pass covering ``messages`` and mark them summarised, atomically.

        ``publish`` (writing the summary file) runs inside the transaction, after the
        rows are written and before the commit: it sees the new state, and if it fails
        nothing is recorded. If another process summarised one of the messages in the
        meantime the transaction is rolled back with :class:`StoreError`, so a message
        is never covered by two passes.
        """
        if not messages:
            raise ValueError("a summary pass needs at least one message")
        ordered = sorted(messages, key=lambda m: (utc_key(m.at), m.id))
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO summaries (conversation_id, created_at, created_utc, text, key_points, open_questions, "
                "message_count, first_message_utc, last_message_utc, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, now.isoformat(), utc_key(now), text, json.dumps(key_points, ensure_ascii=False),
                 json.dumps(open_questions, ensure_ascii=False), len(ordered), utc_key(ordered[0].at),
                 utc_key(ordered[-1].at), path),
            )
            summary_id = int(cursor.lastrowid or 0)
            marks = ",".join("?" * len(ordered))
            updated = db.execute(f"UPDATE messages SET summary_id = ? WHERE summary_id IS NULL AND id IN ({marks})",
                                 (summary_id, *[m.id for m in ordered])).rowcount
            if updated != len(ordered):
                raise StoreError(f"conversation {conversation_id!r}: {len(ordered) - updated} of the messages were "
                                 "summarised by another run meanwhile; nothing recorded")
            row = db.execute("SELECT * FROM summaries WHERE id = ?", (summary_id,)).fetchone()
            recorded = self._pass(row)
            if publish is not None:
                publish(recorded)
        return recorded

    def set_title(self, conversation_id: str, title: str, *, now: datetime,
                  publish: Callable[[], None] | None = None) -> None:
        """Store the conversation's title (``publish`` runs before the commit, as in :meth:`record_summary`)."""
        with self.transaction() as db:
            db.execute("UPDATE conversations SET title = ?, titled_at = ? WHERE id = ?", (title, now.isoformat(), conversation_id))
            if publish is not None:
                publish()

    def mark_consolidated(self, summary_ids: Iterable[int], day: date) -> None:
        """Record that a consolidation on ``day`` used these summary passes."""
        ids = list(summary_ids)
        if not ids:
            return
        with self.transaction() as db:
            db.execute(f"UPDATE summaries SET consolidated_on = ? WHERE id IN ({','.join('?' * len(ids))})",
                       (day.isoformat(), *ids))
