"""What every command shares: the global options and the lazily built config and catalogue."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cass_actions_core.config import CONFIG_ENV, DATA_DIR_ENV, Config, load_config

if TYPE_CHECKING:
    from cass_actions_core.catalogue import Catalogue


#: The store's file name inside the data directory.
STORE_NAME = "cass-actions.sqlite"


def default_data_dir() -> Path:
    """The platform's per-user data folder for cass-actions."""
    import platformdirs

    return Path(platformdirs.user_data_dir("cass-actions", appauthor=False))


@dataclass
class CLIState:
    """Global options and cached objects for one CLI invocation (``ctx.obj``)."""

    config_path: str | None = None
    data_dir_option: str | None = None
    daemon_option: str | None = None
    _config: Config | None = None
    _catalogues: dict[tuple[tuple[str, ...], bool], Catalogue] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        """``--data-dir``, else ``$CASS_ACTIONS_DATA_DIR``, else the platform's user data folder."""
        chosen = self.data_dir_option or os.environ.get(DATA_DIR_ENV)
        return Path(chosen).expanduser().resolve() if chosen else default_data_dir()

    def require_store(self) -> Path | str:
        """Where the daemon's store is (``store.url``, else the file in the data directory); a one-paragraph
        error (exit 1) if that file does not exist.

        Commands that read or steer an existing daemon check this before opening the store,
        because opening creates a missing one: a mistyped --data-dir must not leave an empty
        store (and folder) behind. (A database named by ``store.url`` is the server's to keep.)
        """
        from cass_actions_core.store.base import store_location

        data_dir = self.data_dir
        url = self.config().store.url
        path = store_location(url, data_dir)
        if isinstance(path, str):
            return path
        if not path.exists() and url:
            raise click.ClickException(
                f"{path} does not exist: store.url ({url}) names no store yet, so there is nothing to read or change. "
                "Check store.url (or $CASS_ACTIONS_STORE_URL); the store is created when the daemon first runs "
                "(`cass-actions run` or `init`). Nothing was created.")
        if not path.exists():
            where = "does not exist" if not data_dir.exists() else f"has no store ({STORE_NAME})"
            raise click.ClickException(
                f"{data_dir} {where}: no daemon has run with this data directory yet, so there is nothing to read "
                "or change. Check --data-dir (or $CASS_ACTIONS_DATA_DIR); the store is created when the daemon first "
                "runs (`cass-actions run`, `simulate` or `init`). Nothing was created.")
        return path

    def child_args(self, command: str) -> list[str]:
        """``command`` with this invocation's global options (absolute paths), for a supervised child process
        that must see the same data folder, config file and daemon as its supervisor."""
        args = [command, "--data-dir", str(self.data_dir)]
        if self.config_path:
            args += ["--config", str(Path(self.config_path).expanduser().resolve())]
        if self.daemon_option:
            args += ["--daemon", self.daemon_option]
        return args

    def config(self) -> Config:
        """The configuration: ``--config``, ``$CASS_ACTIONS_CONFIG``, or ``<data-dir>/config.toml`` if present."""
        if self._config is None:
            path: str | Path | None = self.config_path or os.environ.get(CONFIG_ENV)
            if path is None and (self.data_dir / "config.toml").is_file():
                path = self.data_dir / "config.toml"
            config = load_config(path)
            if self.daemon_option:
                config = _for_daemon(config, self.daemon_option)
            self._config = config
        return self._config

    def catalogue(self, template_files: tuple[str, ...] = (), *, full: bool = True) -> Catalogue:
        """The catalogue built from the installed packs (plus extra template files); ``full=False``:
        the action definitions only (see :func:`~cass_actions_core.catalogue.build_catalogue`)."""
        key = (template_files, full)
        if key not in self._catalogues:
            from cass_actions_core.catalogue import build_catalogue

            self._catalogues[key] = build_catalogue(self.config(), template_files=template_files, full=full)
        return self._catalogues[key]


def _for_daemon(config: Config, daemon_id: str) -> Config:
    """The configuration of daemon ``daemon_id`` (``--daemon``): in a fleet database, its registered config
    (time zone, budget, packs … as the workers run it); otherwise this config under that id (an SQLite
    file then refuses an id that is not its own, in one paragraph)."""
    from dataclasses import replace

    from cass_actions_core.problems import UserError
    from cass_actions_core.store import is_postgres_url

    try:
        named = Config.from_dict({**config.to_dict(), "daemon_id": daemon_id}, source=config.source)
    except UserError:
        raise UserError(f"--daemon {daemon_id!r} is not a daemon id: letters, digits, '_', '.' and '-', starting "
                        "with a letter or a digit.") from None
    url = config.store.url
    if is_postgres_url(url):
        from cass_actions_core.fleet import daemon_config
        from cass_actions_core.store.fleet import FleetRegistry

        assert url is not None
        with FleetRegistry.open(url) as registry:
            entry = next((e for e in registry.daemons() if e.daemon_id == daemon_id), None)
        if entry is None:
            raise UserError(f"--daemon {daemon_id!r}: no such daemon in the database {registry.path} (see "
                            "`cass-actions daemons list`). Nothing was read or changed.")
        if entry.registered:
            return daemon_config(entry, url)
    return replace(named, daemon_id=daemon_id)


def _store(name: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            state = ctx.ensure_object(CLIState)
            setattr(state, name, value)
            # A pack's command may have been looked up (building the config and the
            # catalogue) before its own --config/--data-dir were parsed: start afresh.
            state._config = None
            state._catalogues.clear()
        return value

    return callback


def _global_option_list() -> list[click.Option]:
    return [
        click.Option(
            ["--config"], type=click.Path(dir_okay=False), expose_value=False, is_eager=True,
            callback=_store("config_path"),
            help=f"TOML config file [env {CONFIG_ENV}; default: <data-dir>/config.toml if present].",
        ),
        click.Option(
            ["--data-dir"], type=click.Path(file_okay=False), expose_value=False, is_eager=True,
            callback=_store("data_dir_option"),
            help=f"Data folder for the store and workspace [env {DATA_DIR_ENV}; default: the user data folder].",
        ),
        click.Option(
            ["--daemon"], metavar="ID", expose_value=False, is_eager=True, callback=_store("daemon_option"),
            help="The daemon to read or steer in a shared (PostgreSQL) store; with an SQLite store, its own id.",
        ),
    ]


def global_options(func: Any) -> Any:
    """Add ``--config`` and ``--data-dir`` to a command (they work before or after its name)."""
    # click.option appends to the function's __click_params__, read in reverse: add the last first.
    for option in reversed(_global_option_list()):
        func.__click_params__ = [*getattr(func, "__click_params__", []), option]
    return func


def add_global_options(command: click.Command) -> click.Command:
    """Give a pack's command (and, for a group, each of its subcommands) ``--config`` and ``--data-dir``,
    so they work after its name as they do for every built-in command."""
    names = {name for param in command.params for name in getattr(param, "opts", [])}
    command.params.extend(o for o in _global_option_list() if not set(o.opts) & names)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_global_options(sub)
    return command


def json_option(func: Any) -> Any:
    """Add ``--json`` (machine-readable output)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)
