#!/usr/bin/env python3
"""SQL statements per unit: what the durable runtime sends to SQLite for one-step no-op units.

    .venv/bin/python bench/statements.py [--units 1000] [--top 25] [--json-only]

The same set-up as ``bench/dispatch.py`` (N units queued by ``trigger`` in a fresh store, then
``Runtime.tick()`` until all are done); every statement the connection runs while ticking is
recorded with ``sqlite3``'s trace callback, its literals replaced by ``?``, and counted. Prints
statements per unit, the most frequent shapes, and a JSON line. It counts; it times nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
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


def main() -> None:
    """Count, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    shapes = count(args.units)
    total = sum(shapes.values())
    rows = [{"per_unit": round(k / args.units, 2), "statement": s[:100]} for s, k in shapes.most_common(args.top)]
    text = table(f"counted: SQL statements while ticking {args.units} one-step no-op units; "
                 f"{total / args.units:.1f} per unit", [("per_unit", "per unit"), ("statement", "statement")], rows)
    report("statements", text, {"counted": "SQL statements per one-step no-op unit (sqlite3 trace callback)",
                                "units": args.units, "per_unit": round(total / args.units, 2),
                                "shapes": {s: k / args.units for s, k in shapes.most_common()}}, args.json_only)


if __name__ == "__main__":
    main()
