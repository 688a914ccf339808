"""Provider registration (the ``register_llm_providers`` hook) and per-action settings.

Registration
    Each plugin's ``register_llm_providers(register)`` receives a
    :class:`ProviderRegistrar`; ``register(name, factory)`` adds a provider where
    ``factory(settings: LLMSettings)`` returns an
    :class:`~cass_actions_core.llm.base.LLMProvider`. A name can be registered once:
    reusing one (``anthropic`` and ``offline`` belong to the core) raises
    :class:`ProviderConflictError` naming both plugins. :func:`collect_providers`
    runs the hook plugin by plugin and drops everything a failing plugin registered.

Settings for an action (:func:`resolve_settings`)
    Field by field (``provider``, ``model``, ``max_tokens``, ``effort``), later layers
    win over earlier ones:

    1. ``config.llm`` -- the user's defaults for every call;
    2. the action definition's ``llm`` -- the pack author's default for that action;
    3. ``config.llm.actions["<action id>"]`` -- the user's override for that action.

    So a user's per-action override always beats the pack, and the pack's choice
    beats the user's global defaults (a pack may know its action needs a bigger
    model). One exception: when ``config.llm.provider`` is ``"offline"``, a pack
    cannot switch its action to another provider -- offline is the user's "no
    network, no spend" switch, and only the user's own per-action override can lift
    it for an action.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cass_actions_core.config import LLMSettings
from cass_actions_core.llm.base import EffectiveLLMSettings, LLMProvider, SpendGate, TranscriptSink
from cass_actions_core.llm.errors import LLMError

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from cass_actions_core.llm.metered import MeteredLLM
    from cass_actions_core.models import ActionDefinition

#: ``factory(settings) -> provider``; called once per distinct provider configuration.
ProviderFactory = Callable[[LLMSettings], LLMProvider]

#: The plugin name the core registers its own providers under.
CORE_OWNER = "core"
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_FIELDS = ("provider", "model", "max_tokens", "effort")


class ProviderConflictError(ValueError):
    """A provider name was registered twice, or is not a valid name."""


@dataclass(frozen=True)
class ProviderRegistration:
    """One registered provider: its name, factory and the plugin that registered it."""

    name: str
    factory: ProviderFactory
    owner: str


class ProviderRegistry:
    """Registered providers by name, plus a cache of provider instances."""

    def __init__(self) -> None:
        self._registrations: dict[str, ProviderRegistration] = {}
        self._instances: dict[tuple[Any, ...], LLMProvider] = {}

    def add(self, name: str, factory: ProviderFactory, owner: str) -> None:
        """Register ``factory`` under ``name`` for plugin ``owner``."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProviderConflictError(
                f"plugin {owner!r}: LLM provider name {name!r} is not valid "
                "(use lower-case letters, digits, '.', '_' or '-', starting with a letter)."
            )
        if not callable(factory):
            raise ProviderConflictError(f"plugin {owner!r}: the factory for LLM provider {name!r} is not callable.")
        existing = self._registrations.get(name)
        if existing is not None:
            raise ProviderConflictError(
                f"plugin {owner!r} cannot register LLM provider {name!r}: plugin {existing.owner!r} already "
                "registered that name; choose another name."
            )
        self._registrations[name] = ProviderRegistration(name, factory, owner)

    def remove(self, name: str) -> None:
        """Forget provider ``name`` (and cached instances of it)."""
        self._registrations.pop(name, None)
        self._instances = {k: v for k, v in self._instances.items() if k[0] != name}

    def registrar(self, owner: str) -> ProviderRegistrar:
        """The object handed to plugin ``owner``'s ``register_llm_providers`` hook."""
        return ProviderRegistrar(self, owner)

    @property
    def names(self) -> list[str]:
        """Registered provider names, sorted."""
        return sorted(self._registrations)

    def __contains__(self, name: object) -> bool:
        return name in self._registrations

    def registration(self, name: str) -> ProviderRegistration:
        """The registration of ``name``; ``LLMError(kind="unknown_provider")`` if none."""
        try:
            return self._registrations[name]
        except KeyError:
            known = ", ".join(self.names) or "none"
            raise LLMError(
                f"LLM provider {name!r} is not registered (known providers: {known}); check llm.provider in the config.",
                kind="unknown_provider",
                provider=name,
            ) from None

    def create(self, settings: EffectiveLLMSettings) -> LLMProvider:
        """A new provider instance for ``settings`` (no caching)."""
        return self.registration(settings.provider).factory(settings.provider_settings())

    def provider_for(self, settings: EffectiveLLMSettings) -> LLMProvider:
        """The shared provider instance for ``settings``.

        Instances are cached per provider and transport settings (not per model:
        the model travels with each request), so the Anthropic provider keeps one
        SDK client, and its connection pool, for all actions.
        """
        key = (
            settings.provider,
            settings.base_url,
            settings.max_retries,
            settings.timeout_seconds,
            tuple(sorted(settings.prices.items())),
        )
        provider = self._instances.get(key)
        if provider is None:
            provider = self._instances[key] = self.create(settings)
        return provider

    async def aclose(self) -> None:
        """Close cached providers that hold connections (those with an ``aclose()``).

        The cache is emptied, so a later call (in another event loop) builds fresh
        providers: an SDK client must not outlive the loop it was used in.
        """
        instances = list(self._instances.values())
        self._instances.clear()
        for provider in instances:
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    def metered(
        self,
        config_llm: LLMSettings,
        definition: ActionDefinition,
        *,
        gate: SpendGate | None = None,
        transcripts: TranscriptSink | None = None,
        run_key: str | None = None,
        model: str | None = None,
    ) -> MeteredLLM:
        """A :class:`~cass_actions_core.llm.metered.MeteredLLM` for one run of ``definition``.

        ``model`` replaces the resolved model (the planner's or executor's cheaper-model choice).
        """
        from dataclasses import replace

        from cass_actions_core.llm.metered import MeteredLLM

        settings = resolve_settings(config_llm, definition)
        if model:
            settings = replace(settings, model=model, sources={**settings.sources, "model": "budget: cheaper model"})
        return MeteredLLM.for_action(self.provider_for(settings), settings, definition,
                                     gate=gate, transcripts=transcripts, run_key=run_key)


class ProviderRegistrar:
    """What ``register_llm_providers`` receives: call ``register(name, factory)``."""

    def __init__(self, registry: ProviderRegistry, owner: str) -> None:
        self.registry = registry
        self.owner = owner
        #: Names this registrar added (rolled back if the plugin's hook fails).
        self.added: list[str] = []

    def __call__(self, name: str, factory: ProviderFactory) -> None:
        """Register ``factory(settings) -> provider`` under ``name``."""
        self.registry.add(name, factory, self.owner)
        self.added.append(name)

    def register(self, name: str, factory: ProviderFactory) -> None:
        """Same as calling the registrar."""
        self(name, factory)

    def rollback(self) -> None:
        """Remove everything this registrar added."""
        for name in self.added:
            self.registry.remove(name)
        self.added.clear()


def builtin_registry() -> ProviderRegistry:
    """A registry holding only the core's ``anthropic`` and ``offline`` providers."""
    from cass_actions_core.builtin import plugin

    registry = ProviderRegistry()
    plugin.register_llm_providers(registry.registrar(CORE_OWNER))
    return registry


def collect_providers(pm: pluggy.PluginManager) -> tuple[ProviderRegistry, list[tuple[str, BaseException]]]:
    """Run ``register_llm_providers`` plugin by plugin (registration order).

    Returns the registry and ``(plugin, exception)`` for each plugin whose hook
    failed; such a plugin's registrations are removed, the others are kept.
    """
    from cass_actions_core.plugins import call_per_plugin

    registry = ProviderRegistry()
    registrars: dict[str, ProviderRegistrar] = {}

    def make_arg(plugin_name: str) -> dict[str, Any]:
        registrars[plugin_name] = registry.registrar(plugin_name)
        return {"register": registrars[plugin_name]}

    failures: list[tuple[str, BaseException]] = []
    for name, _kwargs, exc in call_per_plugin(pm, "register_llm_providers", make_arg):
        if exc is not None:
            registrars[name].rollback()
            failures.append((name, exc))
    return registry, failures


def resolve_settings(config_llm: LLMSettings, action: ActionDefinition | None) -> EffectiveLLMSettings:
    """The effective LLM settings for ``action`` (``None``: the global settings).

    Precedence, field by field, later wins: ``config.llm`` < the action
    definition's ``llm`` (pack default) < ``config.llm.actions[action.id]`` (user
    override); a pack cannot move an action off ``offline`` (see the module docstring).
    """
    base = EffectiveLLMSettings.from_llm_settings(config_llm)
    if action is None:
        return base
    values: dict[str, Any] = {f: getattr(base, f) for f in _FIELDS}
    sources = dict(base.sources)
    layers: list[tuple[str, Any, bool]] = []
    if action.llm is not None:
        layers.append((f"action:{action.id}", action.llm, True))
    if action.id in config_llm.actions:
        layers.append((f"config.llm.actions.{action.id}", config_llm.actions[action.id], False))
    for label, override, from_pack in layers:
        for field in _FIELDS:
            value = getattr(override, field)
            if value is None:
                continue
            if field == "provider" and from_pack and config_llm.provider == "offline" and value != "offline":
                continue
            values[field] = value
            sources[field] = label
    return EffectiveLLMSettings(
        provider=values["provider"],
        model=values["model"],
        max_tokens=values["max_tokens"],
        effort=values["effort"],
        max_retries=base.max_retries,
        timeout_seconds=base.timeout_seconds,
        base_url=base.base_url,
        prices=base.prices,
        sources=sources,
    )


def providers_not_ready(registry: ProviderRegistry, config_llm: LLMSettings, actions: Iterable[ActionDefinition],
                        planner: bool) -> list[str]:
    """One sentence for each registered provider this configuration would call that cannot make any call
    (the Anthropic provider without an API key, say): what the daemon and ``simulate`` check before
    they start. ``actions``: the definitions that may run; ``planner``: whether the planning call is made."""
    settings = [resolve_settings(config_llm, None)] if planner else []
    settings += [resolve_settings(config_llm, a) for a in actions if a.uses_llm]
    verdicts: dict[str, str | None] = {}
    for s in settings:
        if s.provider in verdicts or s.provider not in registry:
            continue
        check = getattr(registry.provider_for(s), "not_ready", None)
        verdicts[s.provider] = check() if callable(check) else None
    return [why for why in verdicts.values() if why]
