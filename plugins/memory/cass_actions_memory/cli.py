"""``cass-actions memory ...``: import a conversation file, list the stored conversations.

The commands find the store the way the runtime does: the workspace is the config's
``workspace`` (relative to the config file) or ``<data dir>/workspace``, and the pack's
data folder is ``<workspace>/memory``. ``import`` uses the same import code path as the
inbox import of the actions (:meth:`ConversationStore.import_file`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from cass_actions_core.cli.output import print_json, print_table
from cass_actions_core.cli.state import CLIState, global_options, json_option
from cass_actions_core.config import Config

from cass_actions_memory.store import DB_NAME, ConversationStore, StoreError

#: The pack's folder name inside the workspace (its entry-point name).
PACK_FOLDER = "memory"
#: Problems listed in full in an error message (the rest are counted).
SHOWN_PROBLEMS = 10


def resolve(state: CLIState) -> tuple[Config, Path]:
    """The configuration and the memory pack's data folder for these global options.

    A fresh :class:`CLIState` is used because the group may have read the config before
    ``--data-dir``/``--config`` given after the command name were parsed.
    """
    fresh = CLIState(config_path=state.config_path, data_dir_option=state.data_dir_option)
    config = fresh.config()
    if config.workspace:
        workspace = Path(config.workspace).expanduser()
        if not workspace.is_absolute() and config.source is not None:
            workspace = config.source.parent / workspace
    else:
        workspace = fresh.data_dir / "workspace"
    return config, workspace / PACK_FOLDER


def register(cli: click.Group) -> None:
    """Add the ``memory`` command group to ``cli``."""

    @cli.group("memory")
    @global_options
    def memory_group() -> None:
        """Conversations kept by the memory pack: import files, list conversations."""

    @memory_group.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @global_options
    @click.pass_context
    def import_command(ctx: click.Context, file: Path) -> None:
        """Import conversation messages from a JSONL FILE (one {"conversation_id", "role", "content", "at"} per line).

        Messages already stored are not stored again. Malformed lines are skipped and
        reported with their line number (exit code 1); the other lines are imported.
        """
        config, folder = resolve(ctx.ensure_object(CLIState))
        now = datetime.now(ZoneInfo(config.timezone))
        try:
            with ConversationStore.in_folder(folder) as store:
                report = store.import_file(file, now=now, label=str(file))
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        if report.problems:
            shown = "; ".join(str(p) for p in report.problems[:SHOWN_PROBLEMS])
            more = len(report.problems) - SHOWN_PROBLEMS
            raise click.ClickException(
                f"{file}: {report.describe()} into {folder / DB_NAME}. The malformed lines were skipped: {shown}"
                + (f"; and {more} more" if more > 0 else "")
                + ". Fix them and import the file again (lines already imported are not duplicated)."
            )
        click.echo(f"{file}: {report.describe()} into {folder / DB_NAME}.")

    @memory_group.command("list")
    @json_option
    @global_options
    @click.pass_context
    def list_command(ctx: click.Context, as_json: bool) -> None:
        """List conversations with their message counts and summary state."""
        config, folder = resolve(ctx.ensure_object(CLIState))
        tz = ZoneInfo(config.timezone)
        if not (folder / DB_NAME).exists():
            # Listing must not create a store as a side effect.
            conversations = []
        else:
            try:
                with ConversationStore.in_folder(folder) as store:
                    conversations = store.conversations()
            except StoreError as exc:
                raise click.ClickException(str(exc)) from None
        if as_json:
            print_json([c.to_dict() for c in conversations])
            return
        if not conversations:
            click.echo(f"No conversations in {folder / DB_NAME} yet.")
            return
        rows = [(c.id, c.title or "", c.messages, c.summarised, c.unsummarised,
                 f"{c.last_at.astimezone(tz):%Y-%m-%d %H:%M}",
                 f"{c.last_summary_at.astimezone(tz):%Y-%m-%d %H:%M}" if c.last_summary_at else "never")
                for c in conversations]
        print_table(f"Conversations ({folder / DB_NAME})",
                    ["id", "title", "messages", "summarised", "unsummarised", "last message", "last summary"], rows,
                    justify_right=["messages", "summarised", "unsummarised"])
