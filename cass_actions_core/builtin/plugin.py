"""Hook implementations the core provides itself, registered like any pack."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
