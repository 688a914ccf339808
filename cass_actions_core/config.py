"""Configuration: a TOML file plus environment overrides, with defaults that need no file.

Order of precedence (last wins): built-in defaults, the TOML file, environment
variables. The merged document is validated against ``schemas/config.schema.json``
before it becomes a :class:`Config`, so a typo in the file is reported with its key
path instead of being ignored.

The sections are frozen dataclasses, not pydantic models: the JSON Schema is the one
source of truth for what a value may be, and every command (``list`` included) loads the
configuration, so it must cost next to nothing to import. :meth:`Config.from_dict` checks
a document against the schema and the cross-field rules before building; ``Config(...)``
builds without checking, and :class:`~cass_actions_core.runtime.Runtime` checks what it is
given (:meth:`Config.check`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from cass_actions_core import schema_files
from cass_actions_core.problems import UserError, read_user_file

if TYPE_CHECKING:  # annotations only: the config loads without the catalogue's models
    from cass_actions_core.models import Effort

CONFIG_ENV = "CASS_ACTIONS_CONFIG"
DATA_DIR_ENV = "CASS_ACTIONS_DATA_DIR"
LOAD_PLUGINS_ENV = "CASS_ACTIONS_LOAD_PLUGINS"
DISABLE_PLUGINS_ENV = "CASS_ACTIONS_DISABLE_PLUGINS"

#: Default share of the daily budget per category; covers every category the bundled
#: packs use (the earlier system left creative, journal, memory and wonderland out: F1).
DEFAULT_ALLOCATIONS: dict[str, float] = {
    "system": 0.04,
    "journal": 0.06,
    "memory": 0.08,
    "reflection": 0.18,
    "growth": 0.10,
    "curiosity": 0.10,
    "research": 0.18,
    "creative": 0.10,
    "wonderland": 0.04,
    "planning": 0.02,
}

#: The most ``budget.daily_usd`` (and any limit set at run time) may be, as config.schema.json says.
MAX_DAILY_USD = 10_000.0

#: Scalar environment overrides: variable -> (dotted config key, type).
ENV_OVERRIDES: dict[str, tuple[str, type]] = {
    "CASS_ACTIONS_DAEMON_ID": ("daemon_id", str),
    "CASS_ACTIONS_TIMEZONE": ("timezone", str),
    "CASS_ACTIONS_DAILY_BUDGET_USD": ("budget.daily_usd", float),
    "CASS_ACTIONS_LLM_PROVIDER": ("llm.provider", str),
    "CASS_ACTIONS_LLM_MODEL": ("llm.model", str),
    "CASS_ACTIONS_STORE_URL": ("store.url", str),
}


def zero_budget_reason(config: Config, category: str) -> str:
    """Why ``category`` gets no money a day under ``config``, naming the key to change."""
    where = f" in {config.source}" if config.source else " (the defaults)"
    if config.budget.daily_usd <= 0:
        return f"category {category!r} has no budget: budget.daily_usd is 0{where}"
    if category not in config.budget.allocations:
        return f"category {category!r} has no budget: budget.allocations has no {category!r}{where}"
    return f"category {category!r} has no budget: budget.allocations.{category} is 0{where}"


class _Section:
    """Builds a section from a (schema-valid) mapping: nested sections and mappings of sections too."""

    #: Fields holding a section, and fields holding a mapping of name -> section.
    _sections: ClassVar[dict[str, type]] = {}
    _mappings: ClassVar[dict[str, type]] = {}

    @classmethod
    def _build(cls, doc: dict[str, Any]) -> Any:
        values = dict(doc)
        for name, kind in cls._sections.items():
            if name in values and values[name] is not None:
                values[name] = kind._build(values[name])
        for name, kind in cls._mappings.items():
            if name in values:
                values[name] = {key: kind._build(item) for key, item in values[name].items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The section as a config document (unset optional values, ``None``, left out)."""
        return _without_none(asdict(self))  # type: ignore[call-overload]


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


@dataclass(frozen=True)
class PluginSettings(_Section):
    """Which packs load, and the user's own template files."""

    load: list[str] | None = None
    disable: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BudgetSettings(_Section):
    """Daily USD budget, its split by category and the reserve."""

    daily_usd: float = 5.0
    reserve_fraction: float = 0.1
    allocations: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ALLOCATIONS))

    def category_limit(self, category: str) -> float:
        """USD a category may spend in one local day (0 for an unknown category)."""
        return round(self.daily_usd * self.allocations.get(category, 0.0), 6)

    @property
    def reserve_usd(self) -> float:
        """USD held back from ordinary work each day."""
        return round(self.daily_usd * self.reserve_fraction, 6)


@dataclass(frozen=True)
class PhaseSettings(_Section):
    """Local start hour of each day phase."""

    morning: int = 6
    afternoon: int = 12
    evening: int = 18
    night: int = 22


@dataclass(frozen=True)
class SchedulerSettings(_Section):
    """Loop behaviour: concurrency, catch-up after downtime, idle threshold."""

    max_concurrent_units: int = 1
    max_units_per_phase: int = 8
    catch_up: Literal["run_late", "expire"] = "run_late"
    catch_up_window_minutes: int = 120
    idle_after_minutes: float = 30
    tick_seconds: float = 30
    stall_limit_seconds: float = 30
    lease_ttl_seconds: float = 90


@dataclass(frozen=True)
class PlannerWeights(_Section):
    """Weight of each score component of a candidate (see ``docs/planner.md``)."""

    window: float = 3.0
    growth: float = 1.5
    curiosity: float = 1.0
    mood: float = 0.5
    variety: float = 2.0
    priority: float = 0.5


@dataclass(frozen=True)
class PlannerSettings(_Section):
    """The day planner: scores, the planning call and the money-aware choices."""

    enabled: bool = True
    top_k: int = 24
    max_units_per_day: int = 12
    category: str = "planning"
    model: str | None = None
    max_tokens: int = 1500
    max_cost_usd: float = 0.05
    variety_days: int = 7
    learned_cost_runs: int = 20
    cheap_model: str | None = None
    cheap_below_fraction: float = 0.25
    weights: PlannerWeights = field(default_factory=PlannerWeights)

    _sections: ClassVar[dict[str, type]] = {"weights": PlannerWeights}


@dataclass(frozen=True)
class ApprovalSettings(_Section):
    """Which work needs a human yes, and what happens when nobody answers."""

    expire_after_hours: float = 24
    on_expiry: Literal["reject", "approve"] = "reject"
    categories: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelPrice(_Section):
    """USD per million tokens for one model."""

    input: float
    output: float
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None
    cache_read: float | None = None


@dataclass(frozen=True)
class ActionLLMSettings(_Section):
    """A per-action override of the LLM settings."""

    provider: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    effort: Effort | None = None


@dataclass(frozen=True)
class LLMSettings(_Section):
    """Default provider and model settings for every LLM call."""

    provider: str = "anthropic"
    model: str = "claude-haiku-5-5"
    max_tokens: int = 2048
    effort: Effort = "low"
    max_retries: int = 2
    timeout_seconds: float = 120
    base_url: str | None = None
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    actions: dict[str, ActionLLMSettings] = field(default_factory=dict)

    _mappings: ClassVar[dict[str, type]] = {"prices": ModelPrice, "actions": ActionLLMSettings}


@dataclass(frozen=True)
class RetentionSettings(_Section):
    """How long events and LLM transcripts are kept."""

    events_days: int = 30
    transcripts_days: int = 30


@dataclass(frozen=True)
class StoreSettings(_Section):
    """Where the durable store lives: ``url`` a PostgreSQL (or ``sqlite:///``) URL, None for the data directory's file."""

    url: str | None = None


@dataclass(frozen=True)
class Config(_Section):
    """The whole validated configuration."""

    daemon_id: str = "cass"
    timezone: str = "UTC"
    workspace: str | None = None
    plugins: PluginSettings = field(default_factory=PluginSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    phases: PhaseSettings = field(default_factory=PhaseSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    planner: PlannerSettings = field(default_factory=PlannerSettings)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    packs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The file this came from (None: defaults and environment only); relative paths
    #: inside the file resolve against its folder.
    source: Path | None = None

    _sections: ClassVar[dict[str, type]] = {
        "plugins": PluginSettings, "budget": BudgetSettings, "phases": PhaseSettings, "scheduler": SchedulerSettings,
        "planner": PlannerSettings, "approvals": ApprovalSettings, "llm": LLMSettings, "retention": RetentionSettings,
        "store": StoreSettings,
    }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, source: Path | None = None,
                  from_env: dict[str, str] | None = None, cache: bool = True) -> Config:
        """Check a config document (what the TOML file holds) and build the configuration.

        Raises :class:`UserError` naming the file (``source``) and the key path for a value
        the schema refuses, a non-finite number (``from_env``: key path -> the environment
        variable it came from, named in the error) and inconsistent values (phases out of
        order, shares past 1.0, an unknown time zone). ``cache=False``: the document is not
        remembered as valid (see :mod:`~cass_actions_core.schema_files`).
        """
        budget = doc.get("budget")
        if isinstance(budget, dict) and isinstance(budget.get("allocations"), dict):
            # A document's [budget.allocations] adjusts the default table category by category:
            # a category it does not name keeps its default share (0 gives a category nothing).
            doc = {**doc, "budget": {**budget, "allocations": {**DEFAULT_ALLOCATIONS, **budget["allocations"]}}}
        return cls._checked(doc, source, from_env or {}, cache)

    @classmethod
    def _checked(cls, doc: dict[str, Any], source: Path | None, from_env: dict[str, str], cache: bool) -> Config:
        label = str(source) if source else "configuration"
        _check_finite(doc, label, from_env)
        errors = schema_files.validate(schema_files.CONFIG, doc, cache=cache)
        if errors:
            lines = "; ".join(f"{p}: {m}" + _env_origin(p, from_env) for p, m in errors)
            raise UserError(f"{label}: invalid configuration: {lines}.")
        config: Config = cls._build({**doc, "source": source})
        _check_consistency(config, label, from_env)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a config document (without ``source``, which is not a setting)."""
        doc = super().to_dict()
        doc.pop("source", None)
        return doc

    def check(self) -> None:
        """Raise :class:`UserError` if this configuration (built directly, say) breaks the schema or the
        cross-field rules that :meth:`from_dict` checks (a runtime does, whatever built it: a
        fraction of a millisecond, and nothing is added to the validation cache)."""
        Config._checked(self.to_dict(), self.source, {}, cache=False)  # the table as built: no defaults merged in

    def with_provider(self, provider: str) -> Config:
        """This configuration with every LLM call going to ``provider`` (``--provider``): the global
        provider is replaced and per-action provider overrides are dropped."""
        return replace(self, llm=replace(self.llm, provider=provider, actions={
            k: replace(v, provider=None) for k, v in self.llm.actions.items()}))

    def pack_settings(self, pack: str) -> dict[str, Any]:
        """The ``[packs.<pack>]`` table, or an empty mapping."""
        return dict(self.packs.get(pack, {}))

    def user_template_files(self) -> list[Path]:
        """The template files named in ``plugins.templates``, resolved against the config file."""
        base = self.source.parent if self.source else Path.cwd()
        return [(base / p).resolve() for p in self.plugins.templates]


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    doc[leaf] = value


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the configuration from ``path`` (or ``$CASS_ACTIONS_CONFIG``) and the environment.

    With no path and no variable, the defaults apply. Raises :class:`UserError` naming
    the file and the key for unreadable TOML, schema violations and inconsistent values.
    """
    env = dict(os.environ if env is None else env)
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    doc: dict[str, Any] = {}
    source: Path | None = None
    if path is not None:
        source = Path(path).expanduser().resolve()
        text = read_user_file(source, "config file")
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{source}: not valid TOML: {exc}.") from None

    for var, (dotted, kind) in ENV_OVERRIDES.items():
        if var in env:
            try:
                _set_dotted(doc, dotted, kind(env[var]))
            except ValueError:
                raise UserError(f"environment variable {var}={env[var]!r}: expected a {kind.__name__}.") from None
    if LOAD_PLUGINS_ENV in env:
        _set_dotted(doc, "plugins.load", _split_list(env[LOAD_PLUGINS_ENV]))
    if DISABLE_PLUGINS_ENV in env:
        existing = doc.get("plugins", {}).get("disable", [])
        _set_dotted(doc, "plugins.disable", list(existing) + _split_list(env[DISABLE_PLUGINS_ENV]))

    return Config.from_dict(doc, source=source,
                            from_env={dotted: var for var, (dotted, _kind) in ENV_OVERRIDES.items() if var in env})


def _non_finite(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], float]]:
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(path, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _non_finite(item, (*path, key))]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _non_finite(item, (*path, i))]
    return []


def _check_finite(doc: dict[str, Any], label: str, from_env: dict[str, str]) -> None:
    """Reject NaN and infinities (TOML allows ``nan`` and ``inf``; so does ``float()``)."""
    problems = []
    for path, value in _non_finite(doc):
        where = schema_files.json_path(path)
        var = from_env.get(".".join(map(str, path)))
        origin = f" (from environment variable {var})" if var else ""
        problems.append(f"{where}: {value!r} is not a finite number{origin}")
    if problems:
        raise UserError(f"{label}: invalid configuration: " + "; ".join(problems) + ".")


def _env_origin(where: str, from_env: dict[str, str]) -> str:
    """`` (from environment variable X)`` when the value at JSON path ``where`` came from one."""
    for key, var in from_env.items():
        if where == "$." + key or where.startswith("$." + key + "."):
            return f" (from environment variable {var})"
    return ""


def _check_consistency(config: Config, label: str, from_env: dict[str, str]) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"{label}: $.timezone: unknown time zone {config.timezone!r}"
                        f"{_env_origin('$.timezone', from_env)} (use an IANA name such as 'Europe/London').") from None
    budget = config.budget
    total = sum(budget.allocations.values()) + budget.reserve_fraction
    if total > 1.0 + 1e-9 and not math.isclose(total, 1.0):
        shares = ", ".join(
            f"{category} {share:g}" + (" (default)" if DEFAULT_ALLOCATIONS.get(category) == share else "")
            for category, share in sorted(budget.allocations.items()) if share
        )
        raise UserError(
            f"{label}: $.budget.allocations: category shares plus reserve_fraction ({budget.reserve_fraction:g}) add up to "
            f"{total:.2f}, more than 1.0. Shares: {shares}. A category not named in [budget.allocations] keeps its default "
            "share: lower some shares, or set a category you do not use to 0."
        )
    p = config.phases
    starts = [p.morning, p.afternoon, p.evening, p.night]
    # Phases must follow each other around the clock in this order, each non-empty.
    spans = [(starts[(i + 1) % 4] - starts[i]) % 24 for i in range(4)]
    if 0 in spans or sum(spans) != 24:
        raise UserError(
            f"{label}: $.phases: start hours must run morning < afternoon < evening < night around the clock "
            f"(got {starts})."
        )
