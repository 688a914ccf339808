"""The few SQL differences between the store's two backends, as one small :class:`Dialect` per database.

Every store statement is written once, in the subset SQLite and PostgreSQL share (``?`` placeholders,
``INSERT … ON CONFLICT``, ``RETURNING``, ``BIGINT`` casts); what cannot be shared goes through a helper
here: comparing ISO datetimes as instants (:meth:`Dialect.ts`), minutes between two of them, reading a key
of a JSON text column, a case-insensitive LIKE, and the column that breaks ties in insertion order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells what the store's portable SQL cannot say once for both."""

    #: ``sqlite`` or ``postgres``.
    name: str
    #: The case-insensitive (ASCII) LIKE operator.
    like: str
    #: A column that grows in insertion order, to break ties in ORDER BY.
    tiebreak: str

    @property
    def own_rows(self) -> str:
        """The WHERE term selecting the daemon's own rows, for a listing that sorts and limits.

        A SQLite file holds one daemon, so there ``daemon_id = ?`` matches every row; written as
        ``+daemon_id`` it cannot steer the planner to an index that leads with it (a UNIQUE key's),
        which would read and sort every row of the table, instead of an index that gives the order.
        PostgreSQL keeps statistics and needs no such hint."""
        return "+daemon_id = ?" if self.name == "sqlite" else "daemon_id = ?"

    def sql(self, text: str) -> str:
        """``text`` (written with ``?`` placeholders) in this database's parameter style."""
        return text if self.name == "sqlite" else _pyformat(text)

    def ts(self, expr: str) -> str:
        """An SQL expression comparing and sorting the ISO-8601 text ``expr`` as an instant (offsets honoured)."""
        return f"julianday({expr})" if self.name == "sqlite" else f"({expr})::timestamptz"

    def minutes_between(self, start: str, finish: str) -> str:
        """An SQL expression for the minutes from ``start`` to ``finish`` (ISO-8601 texts)."""
        if self.name == "sqlite":
            return f"(julianday({finish}) - julianday({start})) * 1440.0"
        return f"EXTRACT(EPOCH FROM (({finish})::timestamptz - ({start})::timestamptz)) / 60.0"

    def json_text(self, column: str, key: str) -> str:
        """An SQL expression for the top-level ``key`` of the JSON text in ``column`` as text (NULL if missing)."""
        if self.name == "sqlite":
            return f"json_extract({column}, '$.{key}')"
        return f"(({column})::jsonb ->> '{key}')"


def _pyformat(text: str) -> str:
    """``?`` placeholders as ``%s`` and a literal ``%`` as ``%%``, leaving quoted SQL literals alone."""
    return _pyformat_cached(text)


@lru_cache(maxsize=2048)
def _pyformat_cached(text: str) -> str:
    out: list[str] = []
    quote: str | None = None
    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
            out.append("%%" if char == "%" else char)
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


#: SQLite: julianday() for instants, LIKE (ASCII case-insensitive already), rowid as the tie-breaker.
SQLITE = Dialect(name="sqlite", like="LIKE", tiebreak="rowid")
#: PostgreSQL: timestamptz casts, ILIKE, and an identity column ``seq`` as the tie-breaker.
POSTGRES = Dialect(name="postgres", like="ILIKE", tiebreak="seq")
