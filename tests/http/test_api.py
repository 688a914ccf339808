"""Every endpoint of the HTTP API against a real uvicorn server, with auth and malformed input."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from cass_http_live import DAY, TOKEN, Live, need

httpx = need("httpx")


def units(live: Live, c: Any, **params: Any) -> list[dict[str, Any]]:
    r = c.get("/api/units", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def one_unit(live: Live, c: Any, status: str, phase: str | None = None) -> dict[str, Any]:
    found = [u for u in units(live, c, date=DAY, status=status) if phase in (None, u["phase"])]
    assert found, f"no {status} unit in the simulated day"
    return found[0]


# --------------------------------------------------------------------------- queries


def test_status_plan_units_history_budget_and_approvals(live: Live):
    with live.client() as c:
        status = c.get("/api/status").json()
        assert status["phase"] == "afternoon" and status["phase_day"] == DAY and status["daemon_paused"] is None
        assert status["pending_approvals"] >= 2 and status["lease"] is None  # the API never takes the lease

        plan = c.get("/api/plan").json()
        assert plan["date"] == DAY and plan["source"] == "llm" and plan["intention"]
        assert {u["template_id"] for u in plan["units"]} >= {"morning_notes", "evening_notes"}
        assert c.get("/api/plan", params={"date": "2026-11-30"}).json() == {
            "date": "2026-11-30", "source": None, "reason": None, "intention": None, "plan": None, "units": []}

        every = units(live, c)
        assert {"id", "date", "phase", "template_id", "status", "reason", "steps", "focus", "motivation"} <= set(every[0])
        completed = units(live, c, status="completed")
        assert completed and all(u["status"] == "completed" for u in completed)
        both = c.get("/api/units", params=[("status", "completed"), ("status", "awaiting_approval")]).json()
        assert {u["status"] for u in both} == {"completed", "awaiting_approval"}
        evening = units(live, c, date=DAY, phase="evening")
        assert evening and all(u["phase"] == "evening" for u in evening)
        assert units(live, c, date="2026-11-25") == []

        history = c.get("/api/history", params={"date": DAY}).json()
        assert history and {"unit_id", "slug", "narrative", "actions", "cost_usd"} <= set(history[0])
        assert len(c.get("/api/history", params={"limit": 1}).json()) == 1
        notes = c.get("/api/history", params={"template": "morning_notes", "category": "reflection"}).json()
        assert notes and all(h["template_id"] == "morning_notes" for h in notes)
        assert c.get("/api/history", params={"text": "no such text anywhere"}).json() == []

        budget = c.get("/api/budget").json()
        assert budget["budget_day"] == DAY and "system" in budget["categories"] and "reserve" in budget
        assert c.get("/api/budget", params={"date": "2026-11-27"}).json()["budget_day"] == "2026-11-27"

        pending = c.get("/api/approvals").json()
        assert set(live.facts["parked"]) <= {a["unit_id"] for a in pending} and {a["status"] for a in pending} == {"pending"}
        assert {"id", "unit_id", "action_id", "step", "status", "reason", "requested_at", "expires_at"} <= set(pending[0])
        assert len(c.get("/api/approvals", params={"status": "all"}).json()) == len(pending)
        assert c.get("/api/approvals", params={"status": "approved"}).json() == []


def test_unit_detail_has_steps_runs_transitions_and_summary(live: Live):
    with live.client() as c:
        done = one_unit(live, c, "completed", "morning")
        detail = c.get(f"/api/units/{done['id']}").json()
        assert detail["id"] == done["id"] and detail["steps"] == done["steps"]
        assert [s["action"] for s in detail["step_details"]] == detail["steps"]
        assert [r["status"] for r in detail["action_runs"]] == ["completed"] * len(detail["steps"])
        assert [t["to"] for t in detail["transitions"]][-2:] == ["running", "completed"]
        assert detail["summary"]["unit_id"] == done["id"]
        parked = c.get(f"/api/units/{live.facts['parked'][0]}").json()
        assert parked["status"] == "awaiting_approval" and parked["approvals"][0]["status"] == "pending"
        assert c.get(f"/api/units/{done['id'][:8]}").json()["id"] == done["id"]  # a unique prefix
        missing = c.get("/api/units/ffffffffffffffff")
        assert missing.status_code == 404 and "ffffffffffffffff" in missing.json()["error"]


def test_events_paging_filters_and_last_id(live: Live):
    with live.client() as c:
        last = c.get("/api/events", params={"limit": 5}).json()
        assert len(last["events"]) == 5 and last["last_id"] == last["events"][-1]["id"]
        ids = [e["id"] for e in last["events"]]
        assert ids == sorted(ids)
        first = c.get("/api/events", params={"since_id": 0, "limit": 3}).json()
        assert [e["id"] for e in first["events"]] == [1, 2, 3] and first["last_id"] == 3
        more = c.get("/api/events", params={"since_id": 3, "limit": 3}).json()
        assert more["events"][0]["id"] == 4
        wu = c.get("/api/events", params={"type": "work_unit.*", "limit": 1000}).json()["events"]
        assert wu and all(e["type"].startswith("work_unit.") for e in wu)
        exact = c.get("/api/events", params=[("type", "day.planned,approval.requested"), ("limit", "100")]).json()
        assert {e["type"] for e in exact["events"]} == {"day.planned", "approval.requested"}
        unit = live.facts["parked"][0]
        mine = c.get("/api/events", params={"unit": unit, "limit": 100}).json()["events"]
        assert mine and all(e["unit_id"] == unit for e in mine)
        bad = c.get("/api/events", params={"type": "wo*rk"})
        assert bad.status_code == 422 and "trailing" in bad.json()["error"]


def test_event_stream_sends_new_events_and_honours_last_event_id(live: Live):
    with live.client() as c:
        newest = c.get("/api/events", params={"limit": 1}).json()["last_id"]
    got: list[str] = []

    def read(headers: dict[str, str], params: dict[str, str], want: int) -> None:
        with httpx.Client(base_url=live.url, timeout=10) as s, \
                s.stream("GET", "/api/events/stream", headers=headers, params=params) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                got.append(line)
                if line == "" and sum(1 for g in got if g.startswith("id: ")) >= want:
                    return  # the blank line that ends the last wanted event

    # Last-Event-ID: the two events before the newest one come at once, then new ones.
    read({**live.auth(), "Last-Event-ID": str(newest - 2)}, {}, 2)
    assert [g for g in got if g.startswith("id: ")] == [f"id: {newest - 1}", f"id: {newest}"]
    assert any(g.startswith("event: ") for g in got) and any(g.startswith("data: {") for g in got)

    # ?token= works on the stream (EventSource cannot send headers); new events arrive within a poll.
    got.clear()
    reader = threading.Thread(target=read, args=({}, {"token": TOKEN, "type": "daemon.*"}, 1))
    reader.start()
    time.sleep(0.3)
    with live.client() as c:
        assert c.post("/api/pause", json={"reason": "stream test"}).status_code == 200
    reader.join(10)
    assert not reader.is_alive()
    data = [json.loads(g[6:]) for g in got if g.startswith("data: ")]
    assert data and data[0]["type"] == "daemon.paused" and data[0]["data"]["reason"] == "stream test"
    assert "event: daemon.paused" in got

    # A wrong ?token= is refused; ?token= is not accepted on other endpoints.
    with httpx.Client(base_url=live.url, timeout=10) as c:
        assert c.get("/api/events/stream", params={"token": "nope"}).status_code == 401
        assert c.get("/api/status", params={"token": TOKEN}).status_code == 401


# --------------------------------------------------------------------------- controls


def test_approve_and_reject(live: Live):
    first, second = live.facts["parked"]
    with live.client() as c:
        pending = {a["unit_id"]: a["id"] for a in c.get("/api/approvals").json()}
        yes = c.post(f"/api/approvals/{pending[first]}/approve", json={"note": "go ahead", "by": "tester"})
        assert yes.status_code == 200 and yes.json()["status"] == "approved" and yes.json()["resolved_by"] == "tester"
        no = c.post(f"/api/approvals/{pending[second]}/reject")  # no body: by "api"
        assert no.status_code == 200 and no.json()["status"] == "rejected" and no.json()["resolved_by"] == "api"
        assert c.get(f"/api/units/{second}").json()["status"] == "failed"
        assert c.get(f"/api/units/{first}").json()["status"] == "queued"
        again = c.post(f"/api/approvals/{pending[first]}/approve")
        assert again.status_code == 409 and "already approved" in again.json()["error"]
        assert c.post("/api/approvals/nope/approve").status_code == 404
    assert live.query("SELECT status, resolved_by, note FROM approvals WHERE unit_id IN (?, ?) ORDER BY status",
                      (first, second)) == [("approved", "tester", "go ahead"), ("rejected", "api", None)]


def test_cancel(live: Live):
    with live.client() as c:
        evening = one_unit(live, c, "planned", "evening")
        r = c.post(f"/api/units/{evening['id']}/cancel", json={"reason": "not tonight"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled" and "not tonight" in r.json()["reason"]
        again = c.post(f"/api/units/{evening['id']}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["error"]
        assert c.post("/api/units/ffffffffffff/cancel").status_code == 404
        assert c.post("/api/units/ab/cancel").status_code == 400  # too short to be a prefix
    assert live.query("SELECT status FROM units WHERE id = ?", (evening["id"],)) == [("cancelled",)]


def test_pause_and_resume_daemon_and_categories(live: Live):
    with live.client() as c:
        r = c.post("/api/pause", json={"reason": "lunch"})
        assert r.status_code == 200 and r.json()["daemon_paused"]["by"] == "api" and r.json()["daemon_paused"]["reason"] == "lunch"
        assert c.get("/api/status").json()["daemon_paused"]["reason"] == "lunch"
        assert c.post("/api/resume", json={"reason": "back from lunch"}).json()["daemon_paused"] is None
        r = c.post("/api/categories/system/pause", json={"reason": "noisy"})
        assert r.status_code == 200 and r.json()["paused_categories"] == ["system"]
        assert c.get("/api/status").json()["paused_categories"] == ["system"]
        assert c.post("/api/categories/system/resume", json={"reason": "quiet now"}).json()["paused_categories"] == []
        unknown = c.post("/api/categories/systen/pause")
        assert unknown.status_code == 404 and "did you mean 'system'" in unknown.json()["error"]
        assert c.post("/api/categories/nope/resume").status_code == 404
    rows = live.query("SELECT type, json_extract(data, '$.reason') FROM events WHERE type LIKE 'daemon.%'"
                      " OR type LIKE 'category.%' ORDER BY id")
    assert rows == [("daemon.paused", "lunch"), ("daemon.resumed", "back from lunch"),
                    ("category.paused", "noisy"), ("category.resumed", "quiet now")]


def test_budget_set_and_clear(live: Live):
    with live.client() as c:
        r = c.put("/api/budget/daily", json={"amount_usd": 2.5})
        assert r.status_code == 200 and r.json()["limit"] == 2.5 and r.json()["budget"]["daily_usd"] == 2.5
        assert c.get("/api/budget").json()["daily_usd"] == 2.5
        assert c.delete("/api/budget/daily").status_code == 200
        assert c.get("/api/budget").json()["daily_usd"] == 5.0
        again = c.delete("/api/budget/daily")
        assert again.status_code == 409 and "no standing override" in again.json()["error"]
        r = c.put("/api/budget/categories/system", json={"amount_usd": 0.25, "date": "2026-11-27"})
        assert r.status_code == 200 and r.json()["limit"] == 0.25
        assert c.get("/api/budget", params={"date": "2026-11-27"}).json()["categories"]["system"]["limit"] == 0.25
        assert c.delete("/api/budget/categories/system", params={"date": "2026-11-27"}).status_code == 200
        assert c.put("/api/budget/categories/system", json={"amount_usd": 0.3}).status_code == 200
        assert c.delete("/api/budget/categories/system").status_code == 200
        past = c.put("/api/budget/categories/system", json={"amount_usd": 1, "date": "2026-11-20"})
        assert past.status_code == 400 and "is over" in past.json()["error"]
        assert c.put("/api/budget/categories/nope", json={"amount_usd": 1}).status_code == 404
    assert [by for (by,) in live.query("SELECT DISTINCT set_by FROM budget_overrides")] == ["api"] \
        if live.query("SELECT name FROM sqlite_master WHERE name = 'budget_overrides'") else True


def test_plan_items_add_move_remove(live: Live):
    with live.client() as c:
        added = c.post("/api/plan/items", json={"template": "evening_notes", "phase": "evening", "focus": "the API",
                                                "motivation": "a test", "position": 0})
        assert added.status_code == 201, added.text
        unit = added.json()
        assert unit["status"] == "planned" and unit["phase"] == "evening" and unit["focus"] == "the API"
        assert unit["position"] == 0 and unit["date"] == DAY
        moved = c.post(f"/api/plan/items/{unit['id']}/move", json={"phase": "night"})
        assert moved.status_code == 200 and moved.json()["phase"] == "night"
        assert c.post(f"/api/plan/items/{unit['id']}/move", json={"position": 0}).json()["position"] == 0
        removed = c.delete(f"/api/plan/items/{unit['id']}")
        assert removed.status_code == 200 and removed.json()["status"] == "cancelled"
        assert c.delete(f"/api/plan/items/{unit['id']}").status_code == 409
        over = c.post("/api/plan/items", json={"template": "evening_notes", "phase": "morning"})
        assert over.status_code == 409 and "is over" in over.json()["error"]
        unknown = c.post("/api/plan/items", json={"template": "evening_note", "phase": "evening"})
        assert unknown.status_code == 404 and "evening_notes" in unknown.json()["error"]
        done = one_unit(live, c, "completed")
        assert c.post(f"/api/plan/items/{done['id']}/move", json={"phase": "night"}).status_code == 409
        tomorrow = c.post("/api/plan/items", json={"template": "morning_notes", "phase": "morning", "date": "2026-11-27"})
        assert tomorrow.status_code == 201 and tomorrow.json()["date"] == "2026-11-27"
    rows = live.query("SELECT status, reason FROM units WHERE id = ?", (unit["id"],))
    assert rows[0][0] == "cancelled" and "api" in rows[0][1]


def test_units_take_comma_separated_statuses_and_events_a_unit_prefix_as_the_cli_does(live: Live):
    with live.client() as c:
        both = c.get("/api/units", params={"status": "completed,failed"})
        assert both.status_code == 200, both.text
        repeated = c.get("/api/units", params=[("status", "completed"), ("status", "failed")]).json()
        assert both.json() == repeated and {u["status"] for u in repeated} <= {"completed", "failed"} and repeated
        bad = c.get("/api/units", params={"status": "completed,faild"})
        assert bad.status_code == 422 and "faild" in bad.json()["error"]
        unit = repeated[0]["id"]
        by_prefix = c.get("/api/events", params={"unit": unit[:6]}).json()["events"]
        assert by_prefix and by_prefix == c.get("/api/events", params={"unit": unit}).json()["events"]
        assert c.get("/api/events", params={"unit": "zzzzzzzz"}).status_code == 404


def test_plan_item_params_keys_must_be_plain_step_indexes_and_amounts_plain_numbers(live: Live):
    before = live.snapshot()
    with live.client() as c:
        for key in ("01", "00", "\u00b2", "\u0660", "x", "-1"):
            bad = c.post("/api/plan/items", json={"template": "evening_notes", "phase": "evening", "params": {key: {}}})
            assert bad.status_code == 400 and "step index" in bad.json()["error"], (key, bad.text)
        blank = c.post("/api/approvals/0123456789abcdef0123456789abcdef/reject", json={"by": "   "})
        assert blank.status_code == 422 and "blank" in blank.text
        for amount in (True, "3", None):
            refused = c.put("/api/budget/daily", json={"amount_usd": amount})
            assert refused.status_code == 422, (amount, refused.text)
    assert live.snapshot() == before
    with live.client() as c:
        assert c.put("/api/budget/daily", json={"amount_usd": 3}).status_code == 200


# --------------------------------------------------------------------------- auth and refusals

MUTATIONS: list[tuple[str, str, Any]] = [
    ("POST", "/api/pause", {}), ("POST", "/api/resume", {}), ("POST", "/api/categories/system/pause", {}),
    ("PUT", "/api/budget/daily", {"amount_usd": 1}), ("DELETE", "/api/budget/daily", None),
    ("PUT", "/api/budget/categories/system", {"amount_usd": 1}), ("DELETE", "/api/budget/categories/system", None),
    ("POST", "/api/plan/items", {"template": "evening_notes", "phase": "evening"}),
]


def _unit_mutations(live: Live, c: Any) -> list[tuple[str, str, Any]]:
    planned = one_unit(live, c, "planned", "evening")["id"]
    approval = c.get("/api/approvals").json()[0]["id"]
    return [("POST", f"/api/units/{planned}/cancel", {}), ("DELETE", f"/api/plan/items/{planned}", None),
            ("POST", f"/api/plan/items/{planned}/move", {"phase": "night"}),
            ("POST", f"/api/approvals/{approval}/approve", {}), ("POST", f"/api/approvals/{approval}/reject", {})]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}],
                         ids=["none", "wrong", "basic", "longer", "empty"])
def test_no_or_wrong_token_is_401_and_changes_nothing(live: Live, headers: dict[str, str]):
    with live.client() as c:
        unit_ones = _unit_mutations(live, c)
    before = live.snapshot()
    with httpx.Client(base_url=live.url, headers=headers, timeout=10) as c:
        for method, path, body in [*MUTATIONS, *unit_ones, ("GET", "/api/status", None), ("GET", "/api/openapi.json", None),
                                   ("GET", "/api/events/stream", None), ("GET", "/api/nowhere", None)]:
            r = c.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert set(r.json()) == {"error", "detail"} and "token" in r.json()["error"]
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert live.snapshot() == before


def test_malformed_requests_are_4xx_with_a_message_and_change_nothing(live: Live):
    with live.client() as c:
        planned = one_unit(live, c, "planned", "evening")["id"]
        before = live.snapshot()
        cases: list[tuple[str, str, dict[str, Any], int]] = [
            ("PUT", "/api/budget/daily", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
            ("PUT", "/api/budget/daily", {"json": {}}, 422),
            ("PUT", "/api/budget/daily", {"json": {"amount_usd": "lots"}}, 422),
            ("PUT", "/api/budget/daily", {"json": {"amount_usd": -1}}, 422),
            ("PUT", "/api/budget/daily", {"json": {"amount_usd": 1, "extra": True}}, 422),
            ("PUT", "/api/budget/daily", {"content": b'{"amount_usd": NaN}', "headers": {"content-type": "application/json"}}, 422),
            ("PUT", "/api/budget/daily", {"content": b'{"amount_usd": Infinity}', "headers": {"content-type": "application/json"}}, 422),
            ("PUT", "/api/budget/daily", {"json": [1, 2]}, 422),
            ("PUT", "/api/budget/categories/system", {"json": {"amount_usd": 1, "date": "tomorrow"}}, 422),
            ("PUT", "/api/budget/categories/system", {"json": {"amount_usd": 1, "date": "0001-01-01"}}, 422),
            ("POST", "/api/plan/items", {"json": {"template": "evening_notes"}}, 422),
            ("POST", "/api/plan/items", {"json": {"template": "evening_notes", "phase": "dusk"}}, 422),
            ("POST", "/api/plan/items", {"json": {"template": "evening_notes", "phase": "evening", "position": -1}}, 422),
            ("POST", "/api/plan/items", {"json": {"template": "evening_notes", "phase": "evening", "position": 10**30}}, 422),
            ("POST", "/api/plan/items", {"json": {"template": "evening_notes", "phase": "evening", "params": {"x": 1}}}, 400),
            ("POST", "/api/plan/items", {"json": {"template": "evening_notes", "phase": "evening",
                                                  "params": {"0": {"nope": 1}}}}, 400),
            ("POST", "/api/plan/items", {"content": b'{"template": "evening_notes", "phase": "evening", "focus": "\\ud800"}',
                                         "headers": {"content-type": "application/json"}}, 422),
            ("POST", "/api/plan/items", {"json": {"template": "", "phase": "evening"}}, 422),
            ("POST", f"/api/plan/items/{planned}/move", {"json": {}}, 422),
            ("POST", f"/api/plan/items/{planned}/move", {"json": {"phase": "noon"}}, 422),
            ("POST", f"/api/units/{planned}/cancel", {"json": {"reason": 5}}, 422),
            ("POST", f"/api/units/{planned}/cancel", {"json": {"why": "x"}}, 422),
            ("POST", "/api/pause", {"json": {"reason": "x" * 5000}}, 422),
            ("POST", "/api/approvals/x/approve", {"json": {"by": ""}}, 422),
            ("GET", "/api/units", {"params": {"status": "done"}}, 422),
            ("GET", "/api/units", {"params": {"date": "2026-13-01"}}, 422),
            ("GET", "/api/units", {"params": {"phase": "noon"}}, 422),
            ("GET", "/api/budget", {"params": {"date": "9999-12-31"}}, 422),
            ("GET", "/api/history", {"params": {"limit": 0}}, 422),
            ("GET", "/api/events", {"params": {"since_id": -1}}, 422),
            ("GET", "/api/events", {"params": {"limit": "many"}}, 422),
            ("GET", "/api/approvals", {"params": {"status": "maybe"}}, 422),
            ("GET", "/api/nowhere", {}, 404),
            ("DELETE", "/api/status", {}, 405),
        ]
        for method, path, kwargs, status in cases:
            r = c.request(method, path, **kwargs)
            assert r.status_code == status, (method, path, kwargs, r.status_code, r.text)
            body = r.json()
            assert set(body) == {"error", "detail"} and isinstance(body["error"], str) and body["error"], body
    assert live.snapshot() == before


def test_without_a_token_the_api_is_open_on_loopback_only(open_live: Live):
    with open_live.client() as c:
        assert c.get("/api/status").status_code == 200
        assert c.post("/api/pause").status_code == 200
        # A page elsewhere cannot drive it, nor a rebound host name.
        cross = c.post("/api/resume", headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]
        rebound = c.get("/api/status", headers={"Host": "evil.example:80"})
        assert rebound.status_code == 403
        # A sandboxed iframe or a data: URL sends "Origin: null": a page of unknown origin, refused too.
        sandboxed = c.post("/api/resume", headers={"Origin": "null"})
        assert sandboxed.status_code == 403 and "cross-origin" in sandboxed.json()["error"]
        assert c.get("/api/status").json()["daemon_paused"] is not None
        same = c.post("/api/resume", headers={"Origin": open_live.url})
        assert same.status_code == 200 and same.json()["daemon_paused"] is None
        assert c.get("/favicon.ico").status_code == 204  # asked by every browser, guarded by nothing


def test_openapi_and_dashboard(live: Live):
    with live.client() as c:
        spec = c.get("/api/openapi.json").json()
        paths = spec["paths"]
        for path in ["/api/status", "/api/plan", "/api/units", "/api/units/{unit_id}", "/api/history", "/api/budget",
                     "/api/events", "/api/events/stream", "/api/approvals", "/api/approvals/{approval_id}/approve",
                     "/api/approvals/{approval_id}/reject", "/api/units/{unit_id}/cancel", "/api/pause", "/api/resume",
                     "/api/categories/{category}/pause", "/api/categories/{category}/resume", "/api/budget/daily",
                     "/api/budget/categories/{category}", "/api/plan/items", "/api/plan/items/{unit_id}",
                     "/api/plan/items/{unit_id}/move"]:
            assert path in paths, path
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        body = spec["components"]["schemas"]["PlanItemBody"]
        assert body["additionalProperties"] is False and set(body["required"]) == {"template", "phase"}
    with httpx.Client(base_url=live.url, timeout=10) as anonymous:  # the page and its files need no token
        page = anonymous.get("/", params={"token": "prefill"})
        assert page.headers["content-type"].startswith("text/html")
        from cass_actions_core.http.app import STATIC_DIR

        if (STATIC_DIR / "index.html").is_file():
            assert page.status_code == 200
            assert page.text == (STATIC_DIR / "index.html").read_text("utf-8")
            others = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file() and p.name != "index.html")
            for path in others[:5]:
                rel = path.relative_to(STATIC_DIR).as_posix()
                assert anonymous.get(f"/static/{rel}").status_code == 200, rel
        else:
            assert page.status_code == 404 and "/api/" in page.text
        assert anonymous.get("/static/no-such-file.js").status_code == 404
