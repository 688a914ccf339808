#!/usr/bin/env python3
"""SQL statements and WAL pages per unit: what the durable runtime sends to SQLite for one-step no-op units.

    .venv/bin/python bench/statements.py [--units 1000] [--top 25] [--json-only]

The same set-up as ``bench/dispatch.py`` (N units queued by ``trigger`` in a fresh store, then
``Runtime.tick()`` until all are done); every statement the connection runs while ticking is
recorded with ``sqlite3``'s trace callback, its literals replaced by ``?``, and counted.

A second run of ``--wal-units`` units (few enough that no checkpoint happens) reads the
write-ahead log afterwards: each frame is one page the commits wrote (4 KB each; with
``synchronous=NORMAL`` a commit's cost is mostly these writes), and SQLite's ``dbstat``
table names the table or index each page belongs to. Prints statements per unit, the most
frequent shapes, pages per commit by table or index, and a JSON line. It counts; it times
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, table  # noqa: E402
from dispatch import queued_runtime  # noqa: E402

_LITERAL = re.compile(r"'[^']*'|\b\d+(?:\.\d+)?\b")


def count(n: int) -> collections.Counter[str]:
    """Statement shapes run while ticking ``n`` queued one-step no-op units to the end."""
    with tempfile.TemporaryDirectory() as tmp:
        runtime = queued_runtime(Path(tmp), n)
        shapes: collections.Counter[str] = collections.Counter()
        runtime.store._conn.set_trace_callback(lambda sql: shapes.update([" ".join(_LITERAL.sub("?", sql).split())]))
        while asyncio.run(runtime.tick()).ran:
            pass
        runtime.store._conn.set_trace_callback(None)
        runtime.release_lease()
        runtime.close()
    return shapes


def wal_pages(n: int) -> tuple[int, int, collections.Counter[str]]:
    """(frames, commits, frames by table or index) the commits of ``n`` units wrote to the WAL."""
    with tempfile.TemporaryDirectory() as tmp:
        runtime = queued_runtime(Path(tmp), n)
        db = Path(runtime.store.path)
        runtime.store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the log holds only what the ticks write
        page_size = runtime.store._conn.execute("PRAGMA page_size").fetchone()[0]
        while asyncio.run(runtime.tick()).ran:
            pass
        log = Path(str(db) + "-wal").read_bytes()  # read before closing: the last close checkpoints it
        runtime.release_lease()
        runtime.close()
        pages: list[int] = []
        commits = 0
        offset = 32  # the WAL header; then each frame: a 24-byte header (page number, commit flag, ...) and a page
        while offset + 24 + page_size <= len(log):
            page, size_after_commit = struct.unpack(">II", log[offset:offset + 8])
            pages.append(page)
            commits += size_after_commit > 0
            offset += 24 + page_size
        with sqlite3.connect(db) as conn:
            owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
        return len(pages), commits, collections.Counter(owner.get(p, "(free or new)") for p in pages)


def main() -> None:
    """Count, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--wal-units", type=int, default=100, help="units for the WAL page count (no checkpoint may happen)")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    shapes = count(args.units)
    total = sum(shapes.values())
    rows = [{"per_unit": round(k / args.units, 2), "statement": s[:100]} for s, k in shapes.most_common(args.top)]
    text = table(f"counted: SQL statements while ticking {args.units} one-step no-op units; "
                 f"{total / args.units:.1f} per unit", [("per_unit", "per unit"), ("statement", "statement")], rows)
    frames, commits, by_tree = wal_pages(args.wal_units)
    tree_rows = [{"per_commit": round(k / commits, 2), "tree": name} for name, k in by_tree.most_common()]
    text += "\n\n" + table(f"counted: pages written to the WAL by {commits} commits of {args.wal_units} units; "
                           f"{frames / args.wal_units:.1f} per unit, {frames / commits:.1f} per commit",
                           [("per_commit", "per commit"), ("tree", "table or index")], tree_rows)
    report("statements", text, {"counted": "SQL statements per one-step no-op unit (sqlite3 trace callback); "
                                           "WAL frames (pages) written per unit and per commit, by table or index",
                                "units": args.units, "per_unit": round(total / args.units, 2),
                                "shapes": {s: k / args.units for s, k in shapes.most_common()},
                                "wal_units": args.wal_units, "wal_pages_per_unit": round(frames / args.wal_units, 2),
                                "wal_pages_per_commit": round(frames / commits, 2),
                                "wal_pages_per_commit_by_tree": {name: round(k / commits, 3) for name, k in by_tree.most_common()}},
           args.json_only)


if __name__ == "__main__":
    main()
