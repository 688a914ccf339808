"""Hook implementations the core provides itself, registered like any pack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cass_actions_core import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from cass_actions_core.config import LLMSettings
    from cass_actions_core.llm.base import LLMProvider
    from cass_actions_core.llm.registry import ProviderRegistrar


def _anthropic(settings: LLMSettings) -> LLMProvider:
    # Imported here, not at module level: this module loads on every CLI start
    # (`cass-actions list`), which must not pay for the provider code. The provider
    # itself imports the anthropic SDK only on its first call.
    from cass_actions_core.llm.anthropic_provider import AnthropicProvider

    return AnthropicProvider(settings)


def _offline(settings: LLMSettings) -> LLMProvider:
    from cass_actions_core.llm.offline import OfflineProvider

    return OfflineProvider(settings)


@hookimpl
def register_llm_providers(register: ProviderRegistrar) -> None:
    """Register the core's ``anthropic`` and ``offline`` LLM providers."""
    register("anthropic", _anthropic)
    register("offline", _offline)


@hookimpl
def register_actions(register: Any) -> None:
    """Register the core's system tier (``system.*``): housekeeping with no LLM."""
    from importlib.resources import files

    from cass_actions_core.builtin.system import prune_history

    register.load(files(__package__) / "actions.json")
    register.handler("core.prune_history", prune_history)


@hookimpl
def register_templates(register: Any) -> None:
    """Register the core's housekeeping templates."""
    from importlib.resources import files

    register.load(files(__package__) / "templates.json")
