"""The core's system-tier action handlers (no LLM)."""

from __future__ import annotations

from datetime import timedelta

from cass_actions_core.clock import to_utc
from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult


async def prune_history(ctx: ActionContext) -> ActionResult:
    """Delete events and transcripts older than the retention settings; report the counts."""
    if ctx.core is None:
        raise ActionFailed("core.prune_history needs the core services, which only the core's own actions receive")
    retention = ctx.core.config.retention
    events_days = int(ctx.params.get("events_days", retention.events_days))
    transcripts_days = int(ctx.params.get("transcripts_days", retention.transcripts_days))
    now = to_utc(ctx.now())  # elapsed days, not wall-clock days, across a DST change
    removed = ctx.core.store.prune(now - timedelta(days=events_days), now - timedelta(days=transcripts_days))
    return ActionResult(
        summary=(f"Pruned {removed['events']} event(s) older than {events_days} day(s) and "
                 f"{removed['transcripts']} transcript(s) older than {transcripts_days} day(s)."),
        data={"removed": removed, "events_days": events_days, "transcripts_days": transcripts_days},
    )
