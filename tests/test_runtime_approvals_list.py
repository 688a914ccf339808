"""``Runtime.approvals()``: the approvals waiting for a human, without reaching into the store."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.runtime import Runtime
from cass_actions_core.store import ApprovalRow
from support import HandPack, action_def

UTC_ZONE = ZoneInfo("UTC")
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC_ZONE)


def gated_runtime(tmp_path: Path) -> Runtime:
    pack = HandPack([action_def("t.gated", category="system", uses_llm=False, tier=1, estimated_cost_usd=0,
                                max_cost_usd=0, requires_approval=True)])
    cfg = Config.from_dict({"timezone": "UTC", "approvals": {"expire_after_hours": 2}})
    return Runtime(cfg, data_dir=tmp_path / "data", clock=VirtualClock(UTC_ZONE, START), plugins=[("t", pack)],
                   entry_points=False, provider="offline")


def test_approvals_lists_the_pending_ones_and_follows_their_answers(tmp_path: Path):
    runtime = gated_runtime(tmp_path)
    assert runtime.approvals() == []
    first = asyncio.run(runtime.run_action("t.gated"))
    second = asyncio.run(runtime.run_action("t.gated"))
    assert first.status == second.status == "awaiting_approval"

    pending = runtime.approvals()
    assert [a.unit_id for a in pending] == [first.id, second.id]  # oldest request first
    assert all(isinstance(a, ApprovalRow) and a.status == "pending" and a.action_id == "t.gated" for a in pending)
    assert pending[0].expires_at == datetime(2026, 11, 26, 11, 0, tzinfo=UTC_ZONE)

    runtime.approve(pending[0].id, by="tester")
    runtime.reject(pending[1].id, by="tester", note="not today")
    assert runtime.approvals() == []
    assert [a.unit_id for a in runtime.approvals("approved")] == [first.id]
    (rejected,) = runtime.approvals(status="rejected")
    assert rejected.unit_id == second.id and rejected.resolved_by == "tester" and rejected.note == "not today"
    assert {a.status for a in runtime.approvals(None)} == {"approved", "rejected"}
    runtime.close()


def test_approvals_refuses_an_unknown_status(tmp_path: Path):
    runtime = gated_runtime(tmp_path)
    with pytest.raises(ValueError, match="not one of"):
        runtime.approvals("waiting")
    runtime.close()
