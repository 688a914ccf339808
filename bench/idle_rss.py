#!/usr/bin/env python3
"""Idle memory benchmark: resident set size of `cass-actions run` (supervisor and worker) once idle.

    .venv/bin/python bench/idle_rss.py [--settle 12] [--json-only]

Starts `cass-actions run --provider offline` with the bundled packs on a new temporary
data folder, waits SETTLE seconds (the worker starts, takes the lease, plans the day and
runs what is due), then samples VmRSS of the supervisor and of its worker process from
``/proc`` every half second for three seconds and reports the largest sample of each,
then stops the daemon with SIGTERM. Linux only (reads ``/proc``). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clean_env, report, table  # noqa: E402


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` in MB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def main() -> None:
    """Start the daemon, sample its memory, stop it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=12.0, help="seconds to wait before sampling")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = clean_env(CASS_ACTIONS_CACHE_DIR=str(Path(tmp) / "cache"))
        cmd = [sys.executable, "-m", "cass_actions_core.cli.main", "run", "--provider", "offline",
               "--data-dir", str(Path(tmp) / "data")]
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(args.settle)
            if proc.poll() is not None:
                raise SystemExit(f"run exited {proc.returncode}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            supervisor, worker = 0.0, 0.0
            for _ in range(6):
                supervisor = max(supervisor, rss_mb(proc.pid) or 0.0)
                for child in children(proc.pid):
                    worker = max(worker, rss_mb(child) or 0.0)
                time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    rows = [{"process": "supervisor (run)", "rss_mb": round(supervisor, 1)},
            {"process": "worker (run --worker)", "rss_mb": round(worker, 1)},
            {"process": "both", "rss_mb": round(supervisor + worker, 1)}]
    title = f"measured: largest VmRSS over 3 s, {args.settle:g} s after `cass-actions run --provider offline` started"
    text = table(title, [("process", "process"), ("rss_mb", "RSS MB")], rows)
    report("idle_rss", text, {"timed": "VmRSS of an idle run (supervisor and worker)", "settle_s": args.settle,
                              "rows": rows}, args.json_only)


if __name__ == "__main__":
    if not os.path.isdir("/proc/self"):
        raise SystemExit("idle_rss.py reads /proc: Linux only")
    main()
