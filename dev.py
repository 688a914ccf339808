#!/usr/bin/env python3
"""Developer entry point: set up a virtual environment and run the demo or the tests.

    python3 dev.py demo    # set up .venv, then simulate a day with the bundled packs (no API key)
    python3 dev.py test    # set up .venv with test tools, then run the whole test suite

Only the Python standard library is used here, so this works on a machine that has
nothing but Python 3.11+. The environment is rebuilt when a pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PACKS = ["journal", "memory", "wonderland", "session"]
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def _fingerprint() -> str:
    files = [ROOT / "pyproject.toml"] + [ROOT / "plugins" / p / "pyproject.toml" for p in PACKS]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes() if f.exists() else b"-")
    return digest.hexdigest()


def ensure_env() -> None:
    """Create .venv and install the core (with test extras) and the four packs, editable."""
    if sys.version_info < (3, 11):
        sys.exit(f"cass-actions needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    stamp = VENV / ".cass-actions-installed"
    if stamp.exists() and stamp.read_text() == _fingerprint() and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("installing cass-actions and the bundled packs (editable) ...", flush=True)
    args = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", f"{ROOT}[test]"]
    for pack in PACKS:
        args += ["-e", str(ROOT / "plugins" / pack)]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    stamp.write_text(_fingerprint())


def _clean_env() -> dict[str, str]:
    # Ambient settings would make the demo and the tests depend on this machine.
    # CASS_ACTIONS_TEST_PG_URL is the suite's own setting (a PostgreSQL server for the store tests), kept.
    return {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_") or k == "CASS_ACTIONS_TEST_PG_URL"}


def demo(extra: list[str]) -> int:
    """Simulate one day on a virtual clock with the bundled packs and the offline provider."""
    data_dir = ROOT / ".demo-data"
    cmd = [str(BIN / "cass-actions"), "simulate", "--data-dir", str(data_dir), "--fresh", *extra]
    print("$ cass-actions " + " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd, env=_clean_env(), stdin=subprocess.DEVNULL)


def test(extra: list[str]) -> int:
    """Run the whole test suite (core, CLI, packaging and every pack's tests)."""
    return subprocess.call([str(PY), "-m", "pytest", *extra], cwd=ROOT, env=_clean_env(), stdin=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    """Dispatch ``demo`` or ``test``; extra arguments go to the command."""
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    ensure_env()
    return {"demo": demo, "test": test}[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
