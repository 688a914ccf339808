"""Provider registration through the hook, and per-action settings precedence."""

from __future__ import annotations

from typing import Any

import pytest

from cass_actions_core import hookimpl
from cass_actions_core.config import ActionLLMSettings, LLMSettings
from cass_actions_core.llm.anthropic_provider import AnthropicProvider
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.llm.metered import MeteredLLM
from cass_actions_core.llm.offline import OfflineProvider
from cass_actions_core.llm.registry import (
    ProviderConflictError,
    ProviderRegistry,
    builtin_registry,
    collect_providers,
    resolve_settings,
)
from cass_actions_core.llm.scripted import ScriptedProvider
from cass_actions_core.models import ActionDefinition, LLMOverride
from cass_actions_core.plugins import hooks_of, load_plugins, new_plugin_manager


def action(action_id: str = "journal.daily", llm: LLMOverride | None = None, **kwargs: Any) -> ActionDefinition:
    values: dict[str, Any] = {
        "id": action_id, "name": "Daily entry", "description": "Writes the journal.", "tier": 2,
        "category": "journal", "uses_llm": True, "estimated_cost_usd": 0.01, "max_cost_usd": 0.05,
        "max_llm_calls": 4, "default_duration_minutes": 2, "timeout_seconds": 120, "priority": "normal",
        "requires_idle": False, "requires_approval": False, "idempotent": True, "params": {}, "llm": llm,
    }
    values.update(kwargs)
    return ActionDefinition(**values)


# -- resolve_settings ----------------------------------------------------------------


def test_without_overrides_the_config_applies() -> None:
    config = LLMSettings(provider="anthropic", model="claude-haiku-5-5", max_tokens=2048, effort="low")
    eff = resolve_settings(config, action())
    assert (eff.provider, eff.model, eff.max_tokens, eff.effort) == ("anthropic", "claude-haiku-5-5", 2048, "low")
    assert set(eff.sources.values()) == {"config.llm"}
    assert resolve_settings(config, None) == eff


def test_pack_default_beats_global_config_and_user_override_beats_pack() -> None:
    pack = LLMOverride(model="claude-sonnet-5-5", max_tokens=4000, effort="medium")
    config = LLMSettings(
        model="claude-haiku-5-5",
        actions={"journal.daily": ActionLLMSettings(model="claude-opus-5-5")},
        base_url="http://127.0.0.1:9", max_retries=1,
    )

    eff = resolve_settings(config, action(llm=pack))

    assert eff.model == "claude-opus-5-5"  # the user's per-action override wins
    assert eff.max_tokens == 4000  # the pack's default beats the global 2048
    assert eff.effort == "medium"
    assert eff.provider == "anthropic"
    assert eff.sources == {
        "provider": "config.llm",
        "model": "config.llm.actions.journal.daily",
        "max_tokens": "action:journal.daily",
        "effort": "action:journal.daily",
    }
    # Transport settings always come from the config.
    assert (eff.base_url, eff.max_retries) == ("http://127.0.0.1:9", 1)


def test_override_for_another_action_does_not_apply() -> None:
    config = LLMSettings(actions={"memory.consolidate": ActionLLMSettings(model="claude-opus-5-5")})
    assert resolve_settings(config, action()).model == "claude-haiku-5-5"


def test_a_pack_cannot_switch_an_offline_config_back_online() -> None:
    pack = LLMOverride(provider="anthropic", model="claude-sonnet-5-5")
    config = LLMSettings(provider="offline")

    eff = resolve_settings(config, action(llm=pack))

    assert eff.provider == "offline"
    assert eff.model == "claude-sonnet-5-5"  # still priced like the pack's model


def test_the_user_can_put_one_action_online() -> None:
    config = LLMSettings(provider="offline", actions={"journal.daily": ActionLLMSettings(provider="anthropic")})
    assert resolve_settings(config, action()).provider == "anthropic"


# -- registration --------------------------------------------------------------------


def test_builtin_plugin_registers_anthropic_and_offline_lazily() -> None:
    registry = builtin_registry()
    assert registry.names == ["anthropic", "offline"]
    assert registry.registration("anthropic").owner == "core"
    eff = resolve_settings(LLMSettings(), None)
    assert isinstance(registry.provider_for(eff), AnthropicProvider)
    assert isinstance(registry.provider_for(resolve_settings(LLMSettings(provider="offline"), None)), OfflineProvider)


def test_reusing_a_name_is_rejected_naming_both_plugins() -> None:
    registry = builtin_registry()
    with pytest.raises(ProviderConflictError) as caught:
        registry.registrar("my-pack")("anthropic", lambda settings: ScriptedProvider([]))
    assert str(caught.value) == (
        "plugin 'my-pack' cannot register LLM provider 'anthropic': plugin 'core' already registered that name; "
        "choose another name."
    )


@pytest.mark.parametrize("name", ["", "Bad Name", "9lives", "x" * 80])
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(ProviderConflictError, match="is not valid"):
        ProviderRegistry().registrar("p")(name, lambda settings: ScriptedProvider([]))


def test_non_callable_factory_is_rejected() -> None:
    with pytest.raises(ProviderConflictError, match="not callable"):
        ProviderRegistry().registrar("p")("echo", "not a factory")  # type: ignore[arg-type]


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(LLMError) as caught:
        builtin_registry().provider_for(resolve_settings(LLMSettings(provider="openai"), None))
    assert caught.value.kind == "unknown_provider"
    assert "known providers: anthropic, offline" in caught.value.message


class EchoPack:
    """A pack adding an ``echo`` provider."""

    @hookimpl
    def register_llm_providers(self, register: Any) -> None:
        register("echo", ScriptedProvider.factory(lambda request: request.prompt_text(), name="echo"))


class GreedyPack:
    """A pack that registers one fine name, then one taken by the core."""

    @hookimpl
    def register_llm_providers(self, register: Any) -> None:
        register("greedy-ok", ScriptedProvider.factory([]))
        register("offline", ScriptedProvider.factory([]))


def test_collect_providers_through_the_hook(run: Any) -> None:
    pm = new_plugin_manager()
    load_plugins(pm, entry_points=False, extra=[("echo-pack", EchoPack()), ("greedy", GreedyPack())])
    assert "register_llm_providers" in hooks_of(pm, "core")

    registry, failures = collect_providers(pm)

    assert registry.names == ["anthropic", "echo", "offline"]  # greedy-ok was rolled back
    assert registry.registration("echo").owner == "echo-pack"
    assert [(name, type(exc).__name__) for name, exc in failures] == [("greedy", "ProviderConflictError")]
    assert "plugin 'core' already registered" in str(failures[0][1])

    config = LLMSettings(provider="echo")
    meter = registry.metered(config, action(), run_key="r1")
    reply = run(meter.complete("ping"))
    assert reply.text == "ping"
    assert reply.provider == "echo"


def test_metered_for_an_action_uses_its_caps_and_a_shared_provider() -> None:
    registry = builtin_registry()
    config = LLMSettings(provider="offline", actions={"memory.x": ActionLLMSettings(model="claude-opus-5-5")})

    a = registry.metered(config, action())
    b = registry.metered(config, action("memory.x", max_cost_usd=0.2, max_llm_calls=9))

    assert isinstance(a, MeteredLLM)
    assert (a.action_id, a.max_cost_usd, a.max_calls) == ("journal.daily", 0.05, 4)
    assert (b.action_id, b.max_cost_usd, b.max_calls) == ("memory.x", 0.2, 9)
    assert b.settings.model == "claude-opus-5-5"
    assert a.provider is b.provider  # one instance per provider configuration, not per model
