"""The LLM layer: every call an action or the day planner makes goes through it.

- :mod:`~cass_actions_core.llm.base` -- requests, responses, usage, the provider
  protocol, and the :class:`SpendGate` / :class:`TranscriptSink` seams.
- :mod:`~cass_actions_core.llm.errors` -- :class:`LLMError` and its kinds.
- :mod:`~cass_actions_core.llm.prices` -- the dated price table (``prices.json``).
- :mod:`~cass_actions_core.llm.registry` -- providers registered through the
  ``register_llm_providers`` hook, and per-action settings (``resolve_settings``).
- :mod:`~cass_actions_core.llm.metered` -- :class:`MeteredLLM`, the capped, budgeted,
  recorded client an action uses.
- :mod:`~cass_actions_core.llm.anthropic_provider` -- the ``anthropic`` provider (the
  only module that imports the SDK, lazily).
- :mod:`~cass_actions_core.llm.offline` -- the deterministic ``offline`` provider.
- :mod:`~cass_actions_core.llm.scripted` -- a scripted provider and in-memory seams
  for tests.

This package module imports nothing itself, so ``import cass_actions_core.llm`` never
loads the Anthropic SDK (the CLI's ``list``/``validate`` must stay fast). See
``docs/llm.md``.
"""
