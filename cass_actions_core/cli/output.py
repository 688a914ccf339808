"""Printing helpers shared by the commands: JSON, tables (rich on a terminal, plain text otherwise), warnings."""

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
    """Print a table: with rich on a terminal; as plain aligned text (one line per row, never
    wrapped, rich not even imported) when stdout is a pipe or a file."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if not sys.stdout.isatty():
        widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]

        def line(values: Sequence[str]) -> str:
            return "  ".join(v.rjust(w) if col in justify_right else v.ljust(w)
                             for v, w, col in zip(values, widths, columns)).rstrip()

        out = ([title.center(sum(widths) + 2 * (len(widths) - 1)).rstrip()] if title else []) + [line(columns)]
        out += [line(r) for r in cells]
        click.echo("\n".join(out))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col, justify="right" if col in justify_right else "left", overflow="fold")
    for row in cells:
        # Text, not markup: cells hold user and model text such as "[offline] ..."
        table.add_row(*(Text(v) for v in row))
    Console(soft_wrap=False).print(table)


def warn(message: str) -> None:
    """One warning line on stderr."""
    click.echo(f"warning: {message}", err=True)


def usd(value: float) -> str:
    """A USD amount with up to 4 decimals, trailing zeros trimmed to 2; an amount that 4 decimals would
    show as zero gets up to 6 (``$0.00002``, not ``$0.00``: the ledger counts micro-dollars)."""
    decimals = 6 if 0 < abs(value) < 0.00005 else 4
    text = f"{value:.{decimals}f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{value:.2f}"
    return f"${text}"
