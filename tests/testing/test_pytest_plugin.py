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
