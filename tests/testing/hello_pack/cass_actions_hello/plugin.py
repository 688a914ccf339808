"""Hooks of the hello pack, as in the README walk-through, with one more action that needs approval."""

from importlib.resources import files

from cass_actions_core import hookimpl
from cass_actions_core.actions import ActionFailed, ActionResult


async def greet(ctx):
    """Write a greeting; the LLM call goes through the metered client."""
    reply = await ctx.llm.complete(f"Write one warm sentence greeting {ctx.params['name']}.")
    path = ctx.write_text(f"greetings/{ctx.local_date}.md", reply.text + "\n")
    ctx.add_artifact("markdown", "Greeting", path)
    return ActionResult(summary=f"Greeted {ctx.params['name']}.")


async def publish(ctx):
    """Copy today's greeting to the public folder (only after a human said yes)."""
    greeting = ctx.data_dir / f"greetings/{ctx.local_date}.md"
    if not greeting.exists():
        raise ActionFailed(f"no greeting for {ctx.local_date} to publish")
    text = greeting.read_text()
    path = ctx.write_text(f"public/{ctx.local_date}.md", text)
    ctx.add_artifact("markdown", "Published greeting", path)
    return ActionResult(summary="Published today's greeting.")


@hookimpl
def register_actions(register):
    register.load(files(__package__) / "actions.json")
    register.handler("hello.greet", greet)
    register.handler("hello.publish", publish)


@hookimpl
def register_templates(register):
    register.load(files(__package__) / "templates.json")
