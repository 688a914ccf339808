"""The ``cass-actions`` entry point: the command group, plugin commands and error handling.

Exit codes: 0 success; 1 the thing checked is bad (problems found, an action failed,
bad input files); 2 usage error.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from cass_actions_core import __version__
from cass_actions_core.cli.state import CLIState, add_global_options, global_options
from cass_actions_core.problems import CatalogueError, UserError

# Built-in commands, imported on demand so `cass-actions list` loads only what it uses.
_BUILTIN: dict[str, tuple[str, str]] = {
    "list": ("cass_actions_core.cli.catalogue_cmds", "list_command"),
    "plugins": ("cass_actions_core.cli.catalogue_cmds", "plugins_command"),
    "validate": ("cass_actions_core.cli.catalogue_cmds", "validate_command"),
    "events": ("cass_actions_core.cli.events_cmds", "events_command"),
    "activity": ("cass_actions_core.cli.events_cmds", "activity_command"),
    "serve": ("cass_actions_core.cli.serve_cmd", "serve_command"),
    "daemons": ("cass_actions_core.cli.fleet_cmds", "daemons_command"),
    "worker": ("cass_actions_core.cli.fleet_cmds", "worker_command"),
    **{name: ("cass_actions_core.cli.runtime_cmds", f"{name.replace('-', '_')}_command") for name in (
        "run", "simulate", "status", "queue", "history", "budget", "pause", "resume", "trigger", "plan", "cancel",
        "approvals", "approve", "reject", "run-action", "init")},
}


class CassGroup(click.Group):
    """A group whose built-in commands load lazily and whose packs may add commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Names of the built-in commands and of the commands packs add, sorted."""
        return sorted(set(_BUILTIN) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``: a built-in one (imported on first use) or a pack's; ``None`` if unknown."""
        if cmd_name in _BUILTIN:
            module_name, attr = _BUILTIN[cmd_name]
            import importlib

            return getattr(importlib.import_module(module_name), attr)
        return self._plugin_commands(ctx).get(cmd_name)

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        state = ctx.ensure_object(CLIState)
        cached = ctx.meta.get("cass_actions.plugin_commands")
        if cached is not None:
            return cached
        commands: dict[str, click.Command] = {}
        try:
            catalogue = state.catalogue()
        except UserError:
            catalogue = None  # the command itself will report the config error
        if catalogue is not None:
            from cass_actions_core.plugins import call_per_plugin

            groups: dict[str, click.Group] = {}
            for name, kwargs, exc in call_per_plugin(
                catalogue.plugin_manager, "register_commands", lambda n: {"cli": groups.setdefault(n, click.Group(n))}
            ):
                if exc is not None:
                    click.echo(f"warning: pack {name!r} failed in register_commands: {exc}", err=True)
                    continue
                for cmd_name, cmd in kwargs["cli"].commands.items():
                    if cmd_name in _BUILTIN or cmd_name in commands:
                        click.echo(f"warning: pack {name!r} command {cmd_name!r} clashes with an existing command; ignored", err=True)
                        continue
                    commands[cmd_name] = add_global_options(cmd)
        ctx.meta["cass_actions.plugin_commands"] = commands
        return commands


@click.group(cls=CassGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, prog_name="cass-actions")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """cass-actions: plan and carry out an autonomous agent's day with installable action packs.

    Global options (--config, --data-dir) work before or after the command name.
    """
    ctx.ensure_object(CLIState)


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; user errors print one paragraph and exit non-zero, never a traceback."""
    try:
        code = cli.main(args=argv, prog_name="cass-actions", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (UserError, CatalogueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        from cass_actions_core.store import StoreError

        if not isinstance(exc, StoreError):
            raise
        # A corrupt, newer or foreign store file, or a held lease: the message says what to do.
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    # Without standalone mode click returns ctx.exit()'s code instead of exiting.
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
