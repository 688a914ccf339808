"""Printing helpers shared by the commands: JSON, rich tables, warnings."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, justify_right: Sequence[str] = ()) -> None:
    """Print a rich table (plain text when stdout is not a terminal)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=None if not sys.stdout.isatty() else None, header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col, justify="right" if col in justify_right else "left", overflow="fold")
    for row in rows:
        # Text, not markup: cells hold user and model text such as "[offline] ..."
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    Console(width=200 if not sys.stdout.isatty() else None, soft_wrap=False).print(table)


def warn(message: str) -> None:
    """One warning line on stderr."""
    click.echo(f"warning: {message}", err=True)


def usd(value: float) -> str:
    """A USD amount with up to 4 decimals, trailing zeros trimmed to 2."""
    text = f"{value:.4f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{value:.2f}"
    return f"${text}"
