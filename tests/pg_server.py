"""A private PostgreSQL server for the test session, from the machine's own PostgreSQL binaries.

``start()`` runs ``initdb`` and ``pg_ctl start`` (as the ``postgres`` user when run as root, since initdb
refuses root) in a fresh folder under the temp dir, on a free port, with fsync off (tests only), and returns
a :class:`PgServer` whose ``url`` the store tests connect to; ``stop()`` stops it and removes the folder.
A session killed before its teardown (SIGTERM, SIGKILL) leaves its server running: the folder names the
pytest process that owns it, and the next ``start()`` stops the servers of owners that are gone.
Nothing is installed: without binaries, :func:`find_bin` returns None and the caller decides (skip locally,
fail in CI).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def find_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl, or the ones on PATH, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                                                               if x.isdigit()])
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running private server: its data folder, port and connection URL."""

    bin: Path
    root: Path
    port: int
    as_user: list[str]

    @property
    def data(self) -> Path:
        """The cluster's data folder."""
        return self.root / "db"

    @property
    def url(self) -> str:
        """The URL of the server's ``postgres`` database as the superuser ``postgres`` (trust auth)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the server at once and remove its folder."""
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


OWNER_FILE = "owner.pid"


def _as_user() -> list[str]:
    # initdb refuses to run as root: run the server as the postgres user (created by Debian's package).
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(pg_bin: Path) -> list[Path]:
    """Stop and remove the private servers whose owning test session is gone; returns their folders."""
    swept = []
    for root in Path(tempfile.gettempdir()).glob("cass-pg-*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours to judge (no owner recorded, or being created)
        if _alive(owner):
            continue
        PgServer(pg_bin, root, 0, _as_user()).stop()
        swept.append(root)
    return swept


def start(pg_bin: Path) -> PgServer:
    """Start a private server with the binaries in ``pg_bin``; raises RuntimeError with the server's log on failure."""
    sweep_orphans(pg_bin)
    data = Path(tempfile.mkdtemp(prefix="cass-pg-"))
    (data / OWNER_FILE).write_text(str(os.getpid()))
    as_user = _as_user()
    if as_user:
        shutil.chown(data, "postgres")
    os.chmod(data, 0o700)
    pgdata = data / "db"
    init = subprocess.run([*as_user, str(pg_bin / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                           "--locale=C.UTF-8", "--no-sync"], capture_output=True, text=True, check=False)
    if init.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
    port = _free_port()
    options = (f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
               " -c full_page_writes=off -c max_connections=200")
    server = PgServer(pg_bin, data, port, as_user)
    run = subprocess.run([*as_user, str(pg_bin / "pg_ctl"), "-D", str(pgdata), "-l", str(data / "server.log"), "-w", "-t", "30",
                          "-o", options, "start"], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        log = (data / "server.log").read_text(errors="replace") if (data / "server.log").exists() else ""
        server.stop()
        raise RuntimeError(f"pg_ctl start failed: {run.stderr or run.stdout}\n{log}")
    return server
