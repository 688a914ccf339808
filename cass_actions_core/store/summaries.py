"""Work summaries (one per unit, found by unit, slug or query) and LLM transcripts, kept out of line and
referenced by id."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.errors import StoreError
from cass_actions_core.store.rows import SummaryRow, TranscriptRow, _summary, _transcript
from cass_actions_core.store.values import _check_phase, _day, _day_phase_filter, _dt, _json, _new_id, _ts
from cass_actions_core.store.vocabulary import _PHASE_ORDER_SQL


class SummariesMixin(StoreBase):
    """Saving and finding work summaries and transcripts."""

    # ---------------------------------------------------------------- summaries

    def save_summary(
        self,
        *,
        unit_id: str,
        slug: str,
        local_date: date,
        phase: str,
        category: str,
        template_id: str,
        status: str,
        text: str,
        data: dict[str, Any],
        now: datetime,
    ) -> SummaryRow:
        """Insert or replace the summary of ``unit_id``.

        A slug already used by another unit raises :class:`StoreError` instead of
        replacing that unit's summary.
        """
        _check_phase(phase)
        values = (
            unit_id,
            slug,
            _day(local_date, "local_date"),
            phase,
            category,
            template_id,
            status,
            text,
            _json(data),
            _ts(now, "now"),
        )
        with self.transaction(immediate=True):
            # ON CONFLICT(unit_id) rather than INSERT OR REPLACE: the latter would also
            # silently delete another unit's summary that happens to share the slug. The clash is
            # checked first rather than caught: a failed statement would abort a PostgreSQL transaction.
            if self._one("SELECT 1 FROM summaries WHERE daemon_id = ? AND slug = ? AND unit_id <> ?",
                         (self.daemon_id, slug, unit_id)) is not None:
                raise StoreError(f"summary slug {slug!r} is already used by another unit's summary.")
            self._x(
                "INSERT INTO summaries (daemon_id, unit_id, slug, local_date, phase, category, template_id, status,"
                " text, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(unit_id) DO UPDATE SET slug = excluded.slug, local_date = excluded.local_date,"
                " phase = excluded.phase, category = excluded.category, template_id = excluded.template_id,"
                " status = excluded.status, text = excluded.text, data = excluded.data,"
                " created_at = excluded.created_at",
                (self.daemon_id, *values),
            )
        return SummaryRow(unit_id=unit_id, slug=slug, local_date=local_date, phase=phase, category=category,
                          template_id=template_id, status=status, text=text, data=data, created_at=_dt(values[-1]))

    def get_summary(self, unit_id: str) -> SummaryRow | None:
        """The summary of ``unit_id``, or None."""
        row = self._one("SELECT * FROM summaries WHERE daemon_id = ? AND unit_id = ?", (self.daemon_id, unit_id))
        return None if row is None else self._map(_summary, row)

    def get_summary_by_slug(self, slug: str) -> SummaryRow | None:
        """The summary with this slug, or None."""
        row = self._one("SELECT * FROM summaries WHERE daemon_id = ? AND slug = ?", (self.daemon_id, slug))
        return None if row is None else self._map(_summary, row)

    def query_summaries(
        self,
        local_date: date | None = None,
        phase: str | None = None,
        category: str | None = None,
        template_id: str | None = None,
        text: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> list[SummaryRow]:
        """Summaries matching every given filter, newest first.

        ``text`` is a case-insensitive (ASCII) substring match over the summary text and
        its data document; ``%`` and ``_`` in it match literally.
        """
        where, params = _day_phase_filter(self.daemon_id, local_date, phase)
        where[0] = self._d.own_rows  # newest first, LIMIT n: read through the date index, not every row
        for column, value in (("category", category), ("template_id", template_id), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            like = self._d.like
            where.append(f"(text {like} ? ESCAPE '\\' OR data {like} ? ESCAPE '\\')")
            params.extend([pattern, pattern])
        sql = "SELECT * FROM summaries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY local_date DESC, {_PHASE_ORDER_SQL} DESC, {self._d.ts('created_at')} DESC, {self._d.tiebreak} DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._map(_summary, row) for row in self._all(sql, params)]

    # ---------------------------------------------------------------- transcripts

    def save_transcript(self, record: dict[str, Any], run_key: str | None, now: datetime) -> str:
        """Keep an LLM transcript out of line; returns the id to reference it by.

        A value JSON cannot hold (an SDK object in a message's content) is stored as its ``str()``.
        """
        transcript_id = _new_id()
        with self.transaction(immediate=True):
            self._x(
                "INSERT INTO transcripts (id, daemon_id, run_key, created_at, data) VALUES (?, ?, ?, ?, ?)",
                (transcript_id, self.daemon_id, run_key, _ts(now, "now"), _json(record, default=str)),
            )
        return transcript_id

    def get_transcript(self, transcript_id: str) -> TranscriptRow | None:
        """The transcript with this id, or None (it may have been pruned)."""
        row = self._one("SELECT * FROM transcripts WHERE daemon_id = ? AND id = ?", (self.daemon_id, transcript_id))
        if row is None:
            return None
        return self._map(_transcript, row)
