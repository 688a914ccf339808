"""Shared helpers of the benchmark scripts: clean environments, peer venvs, tables and JSON.

Benchmarks print figures; they never assert on timing. Each script says exactly what it
times in its table heading and in its JSON (``timed``), so a figure is never mistaken
for another (a rate that divides by start-up time is labelled as such, or not printed).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Where peers (APScheduler 3, llm) get their own virtual environments, outside the
#: project's: `bench/.peers/` in the checkout (git-ignored), never the user's folders.
PEERS = ROOT / "bench" / ".peers"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``CASS_ACTIONS_*`` setting, plus ``extra``.

    ``PYTHONDONTWRITEBYTECODE`` is dropped too: a user's Python writes ``.pyc`` files, and with
    it set (as on some CI shells) every run would compile the changed modules again and time that.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CASS_ACTIONS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def peer_python(name: str, requirements: list[str]) -> Path:
    """The interpreter of the peer venv ``bench/.peers/<name>``, created and filled on first use."""
    venv_dir = PEERS / name
    python = venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = venv_dir / ".installed"
    if not (python.exists() and stamp.exists() and stamp.read_text() == repr(requirements)):
        print(f"setting up {name} in {venv_dir} ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                       check=True, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stamp.write_text(repr(requirements))
    return python


def run_timed(cmd: list[str], env: dict[str, str] | None = None, check: bool = True,
              cwd: str | Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` once; its wall time and its own CPU time (user + system of the child), in ms."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_ms": wall * 1000, "cpu_ms": cpu * 1000, "returncode": proc.returncode, "stdout": proc.stdout,
            "stderr": proc.stderr}


def python_pass_ms(runs: int = 10) -> float:
    """Median wall time of ``python -c pass`` (this interpreter), in ms: the machine's pace that minute.

    Shared machines swing by a fifth from minute to minute; a figure printed beside this one
    can be compared with a run taken at another pace.
    """
    return round(statistics.median(run_timed([sys.executable, "-c", "pass"])["wall_ms"] for _ in range(runs)), 2)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()}


def table(title: str, columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> str:
    """A plain-text table: ``columns`` are (key, heading) pairs; missing values print as ``-``."""
    cells = [[heading for _key, heading in columns]]
    for row in rows:
        cells.append([_fmt(row.get(key)) for key, _heading in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [title]
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def report(name: str, text: str, payload: dict[str, Any], json_only: bool = False) -> None:
    """Print the table (unless ``json_only``) and one JSON line with the machine it ran on."""
    if not json_only:
        print(text)
    print(json.dumps({"benchmark": name, **machine(), **payload}))
