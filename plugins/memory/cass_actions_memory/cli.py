"""``cass-actions memory ...``: import a conversation file, list the stored conversations and inbox problems.

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

from cass_actions_memory.store import DB_NAME, ConversationStore, InboxFileRecord, StoreError

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


def read_inbox_records(folder: Path) -> list[InboxFileRecord]:
    """The inbox files imported into the store in ``folder`` (none, and no store created, when it does not exist)."""
    if not (folder / DB_NAME).exists():
        return []
    try:
        with ConversationStore.in_folder(folder) as store:
            return store.inbox_files()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def register(cli: click.Group) -> None:
    """Add the ``memory`` command group to ``cli``."""

    @cli.group("memory")
    @global_options
    def memory_group() -> None:
        """Conversations kept by the memory pack: import files, list conversations and inbox problems."""

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
            conversations, records = [], []
        else:
            try:
                with ConversationStore.in_folder(folder) as store:
                    conversations, records = store.conversations(), store.inbox_files()
            except StoreError as exc:
                raise click.ClickException(str(exc)) from None
        problems = sum(len(r.problems) for r in records)
        if as_json:
            print_json([c.to_dict() for c in conversations])
            return
        if not conversations:
            click.echo(f"No conversations in {folder / DB_NAME} yet.")
        else:
            rows = [(c.id, c.title or "", c.messages, c.summarised, c.unsummarised,
                     f"{c.last_at.astimezone(tz):%Y-%m-%d %H:%M}",
                     f"{c.last_summary_at.astimezone(tz):%Y-%m-%d %H:%M}" if c.last_summary_at else "never")
                    for c in conversations]
            print_table(f"Conversations ({folder / DB_NAME})",
                        ["id", "title", "messages", "summarised", "unsummarised", "last message", "last summary"], rows,
                        justify_right=["messages", "summarised", "unsummarised"])
        if problems:
            files = sum(1 for r in records if r.problems)
            click.echo(f"{problems} inbox line(s) in {files} file(s) were skipped when imported; "
                       "see `cass-actions memory problems`.")

    @memory_group.command("problems")
    @json_option
    @global_options
    @click.pass_context
    def problems_command(ctx: click.Context, as_json: bool) -> None:
        """List the inbox lines skipped at import, per inbox file (file, line, field, problem).

        They are kept until the file changes and is imported again. A file that has
        since been removed from the inbox is marked as such. --json prints every
        imported inbox file with its problems (an empty list when it had none).
        """
        _config, folder = resolve(ctx.ensure_object(CLIState))
        records = read_inbox_records(folder)
        workspace = folder.parent
        if as_json:
            print_json([{**r.to_dict(), "exists": (workspace / r.path).exists()} for r in records])
            return
        rows = [(p.file + ("" if (workspace / r.path).exists() else " (removed)"), p.line or "", p.field or "", p.message)
                for r in records for p in r.problems]
        if not rows:
            click.echo(f"No inbox import problems ({len(records)} inbox file(s) imported into {folder / DB_NAME}).")
            return
        print_table(f"Inbox lines skipped at import ({folder / DB_NAME})", ["file", "line", "field", "problem"], rows,
                    justify_right=["line"])
