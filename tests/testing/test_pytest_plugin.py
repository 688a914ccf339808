"""The pytest fixtures shipped for pack authors, used the way a pack author would."""

from __future__ import annotations

from cass_actions_core.llm.base import Usage
from support import HandPack, action_def


async def ask(ctx):
    reply = await ctx.llm.complete("hello?")
    return {"summary": reply.text}


def test_run_action_with_the_offline_provider(cass_runtime, run_action):
    runtime = cass_runtime(plugins=[("t", HandPack([action_def("t.ask")], handlers={"t.ask": ask}))])
    outcome = run_action(runtime, "t.ask")
    assert outcome.ok and outcome.result["summary"].startswith("[offline]")
    assert outcome.summary["actions"][0]["action_id"] == "t.ask"


def test_scripted_llm_reports_usage_and_cost(cass_runtime, run_action, scripted_llm):
    llm = scripted_llm(["scripted answer"], usage=Usage(input_tokens=1000, output_tokens=500))
    runtime = cass_runtime(plugins=[("t", HandPack([action_def("t.ask")], handlers={"t.ask": ask})), ("llm", llm)],
                           provider="scripted", config={"llm": {"model": "claude-haiku-5-5"}})
    outcome = run_action(runtime, "t.ask")
    assert outcome.result["summary"] == "scripted answer"
    # Haiku 5.5: $0.10 per million input tokens, $0.50 per million output tokens
    assert round(outcome.cost_usd, 8) == round(1000 * 0.10 / 1e6 + 500 * 0.50 / 1e6, 8)
    assert outcome.result["llm"]["usage"]["input_tokens"] == 1000


def test_fake_anthropic_through_the_real_sdk(cass_runtime, run_action, fake_anthropic):
    from cass_actions_core.testing.fake_anthropic import usage

    fake_anthropic.reply_text("from the fake API", usage=usage(100, 20))
    runtime = cass_runtime(plugins=[("t", HandPack([action_def("t.ask")], handlers={"t.ask": ask}))], anthropic=fake_anthropic)
    outcome = run_action(runtime, "t.ask")
    assert outcome.ok, outcome.error
    assert outcome.result["summary"] == "from the fake API"
    assert fake_anthropic.message_requests[0].body["messages"][0]["content"] == "hello?"
    transcript = runtime.store.get_transcript(outcome.result["llm"]["transcript_ids"][0])
    assert transcript is not None


async def count(ctx):
    """Counts its runs in the pack's key-value area, so a test can see whether the handler ran."""
    ctx.kv.set("runs", ctx.kv.get("runs", 0) + 1)
    return {"summary": "counted"}


def test_an_action_needing_approval_parks_and_run_action_reports_it(cass_runtime, run_action):
    pack = HandPack([action_def("t.count", requires_approval=True, uses_llm=False, estimated_cost_usd=0)],
                    handlers={"t.count": count})
    runtime = cass_runtime(plugins=[("t", pack)])
    outcome = run_action(runtime, "t.count")
    assert (outcome.status, outcome.parked, outcome.awaiting_approval, outcome.ok) == ("awaiting_approval", True, True, False)
    assert outcome.run is None and outcome.result == {} and outcome.cost_usd == 0.0 and outcome.error is None
    # The real approval row the executor requested, and the reason the unit carries.
    (pending,) = runtime.store.list_approvals(status="pending")
    assert outcome.approval.id == pending.id and outcome.approval.action_id == "t.count"
    assert outcome.reason == f"step 1 (t.count) needs approval {pending.id}"
    assert outcome.summary["status"] == "awaiting_approval"
    assert "approval.requested" in [e.type for e in outcome.events]
    assert runtime.store.kv_get("t", "runs") is None  # the handler did not run

    approved = run_action.approve(runtime, outcome, note="fine")
    assert approved.ok and approved.status == "completed", approved.reason
    assert approved.approval.status == "approved" and approved.result["summary"] == "counted"
    assert runtime.store.kv_get("t", "runs") == 1


def test_a_rejected_approval_fails_the_unit_without_running_it(cass_runtime, run_action):
    pack = HandPack([action_def("t.count", requires_approval=True, uses_llm=False, estimated_cost_usd=0)],
                    handlers={"t.count": count})
    runtime = cass_runtime(plugins=[("t", pack)])
    rejected = run_action.reject(runtime, run_action(runtime, "t.count"), note="not today")
    assert rejected.status == "failed" and not rejected.parked
    assert rejected.error is not None and "was rejected by test: not today" in rejected.error
    assert runtime.store.kv_get("t", "runs") is None


def test_an_approval_set_in_the_config_parks_too(cass_runtime, run_action):
    pack = HandPack([action_def("t.ask")], handlers={"t.ask": ask})
    runtime = cass_runtime(plugins=[("t", pack)], config={"approvals": {"actions": ["t.ask"]}})
    assert run_action(runtime, "t.ask").awaiting_approval


def test_an_action_whose_category_has_no_money_left_parks_for_budget(cass_runtime, run_action):
    pack = HandPack([action_def("t.ask", estimated_cost_usd=0.02)], handlers={"t.ask": ask})
    # reflection gets 18% of the day: $0.009 of $0.05, less than the step's $0.02 estimate
    runtime = cass_runtime(plugins=[("t", pack)], config={"budget": {"daily_usd": 0.05}})
    outcome = run_action(runtime, "t.ask")
    assert (outcome.status, outcome.parked, outcome.budget_blocked, outcome.ok) == ("budget_blocked", True, True, False)
    assert outcome.run is None and outcome.approval is None
    block = outcome.budget_block
    assert block is not None and (block.category, block.action_id) == ("reflection", "t.ask")
    assert block.needed_usd == 0.02 and block.available_usd == 0.009
    assert outcome.reason == f"step 1 (t.ask) blocked by budget: {block.reason}"
    assert outcome.summary["status"] == "budget_blocked"
    assert runtime.store.get_unit(outcome.unit.id).status == "budget_blocked"


def test_approving_an_outcome_that_is_not_waiting_fails_the_test_in_one_line(pytester):
    pytester.makepyfile("""
        from cass_actions_core import hookimpl

        async def ok(ctx):
            return {"summary": "ok"}

        class Pack:
            @hookimpl
            def register_actions(self, register):
                register.load({"actions": [{
                    "id": "t.ok", "name": "Ok", "description": "Ok.", "tier": 1, "category": "system",
                    "uses_llm": False, "estimated_cost_usd": 0, "max_cost_usd": 0, "default_duration_minutes": 1,
                    "timeout_seconds": 10, "priority": "normal", "requires_idle": False, "requires_approval": False,
                    "idempotent": True, "params": {"type": "object"}}]})
                register.handler("t.ok", ok)

        def test_it(cass_runtime, run_action):
            runtime = cass_runtime(plugins=[("t", Pack())])
            run_action.approve(runtime, run_action(runtime, "t.ok"))

        def test_bare_plugin(cass_runtime):
            cass_runtime(plugins=[Pack()])
    """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*run_action.approve: unit * is not awaiting approval (status 'completed'*",
        "*cass_runtime(plugins=...): entry 0 is Pack, not a (name, plugin) pair*",
    ])
    # pytrace=False: the failure is the message alone, no traceback into the test kit.
    assert "pytest_plugin.py" not in result.stdout.str()
