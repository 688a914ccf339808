"""``cass-actions serve``: the HTTP API and dashboard over a data folder's store (needs the ``http`` extra)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

import click

from cass_actions_core.cli.state import CLIState, global_options

#: The environment variable read for the API token by default.
TOKEN_ENV = "CASS_ACTIONS_API_TOKEN"
#: Said when the extra is missing (cass_actions_core.http cannot be imported then, so it lives here too).
EXTRA_MISSING = ("the HTTP server needs the optional 'http' extra (FastAPI and uvicorn), which is not installed in "
                 "this environment: install it with `pip install 'cass-actions[http]'`")


def _config_token(state: CLIState) -> str | None:
    """``http.token`` from the configuration, if the config schema has such a key (it may not)."""
    section = getattr(state.config(), "http", None)
    token = getattr(section, "token", None) if section is not None else None
    return token if isinstance(token, str) and token else None


def resolve_token(state: CLIState, token_env: str, token_file: str | None) -> tuple[str | None, str]:
    """The API token and where it came from: ``--token-file``, else ``$<token_env>``, else the
    config's ``http.token``; ``(None, ...)`` when none is set. An empty one is an error."""
    if token_file is not None:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{path}: cannot read the token file (--token-file): {exc}. Nothing was started.") \
                from None
        if not token:
            raise click.ClickException(f"{path}: the token file (--token-file) is empty. Nothing was started.")
        return token, f"--token-file {path}"
    value = os.environ.get(token_env)
    if value is not None:
        if not value.strip():
            raise click.ClickException(f"${token_env} is set but empty: give it a token, or unset it to serve "
                                       "without one (on a loopback address only). Nothing was started.")
        return value.strip(), f"${token_env}"
    if token_env != TOKEN_ENV:
        # Naming a variable asks for a token: serving without one would be a silent downgrade.
        raise click.ClickException(f"--token-env {token_env}: ${token_env} is not set. Set it to the API token, "
                                   "or leave --token-env out. Nothing was started.")
    token = _config_token(state)
    if token is not None:
        return token, "config http.token"
    return None, "none"


@click.command("serve")
@global_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address (127.0.0.1, ::1, localhost) needs a token.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="TCP port.")
@click.option("--token-env", default=TOKEN_ENV, show_default=True, metavar="NAME",
              help="Environment variable holding the API token.")
@click.option("--token-file", type=click.Path(dir_okay=False), help="A file holding the API token (overrides the variable).")
@click.pass_obj
def serve_command(state: CLIState, host: str, port: int, token_env: str, token_file: str | None) -> None:
    """Serve the JSON API (/api/, OpenAPI at /api/openapi.json) and the dashboard (/) over HTTP.

    Reads and steers the store in the data directory beside a running `cass-actions run` (or a
    stopped daemon's store); it never takes the daemon's lease and never creates a store. Every
    /api/ request needs `Authorization: Bearer <token>` when a token is set ($CASS_ACTIONS_API_TOKEN
    or --token-file); without one it binds loopback addresses only. Needs the http extra:
    pip install 'cass-actions[http]'.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise click.ClickException(f"cass-actions serve: {EXTRA_MISSING} ({exc}). Nothing was started.") from None
    from cass_actions_core.http.auth import is_loopback

    token, source = resolve_token(state, token_env, token_file)
    if token is None and not is_loopback(host):
        raise click.ClickException(
            f"refusing to listen on {host!r} without an API token: anyone who can reach it could read and steer "
            f"the daemon. Set ${token_env} (or pass --token-file) to require `Authorization: Bearer <token>`, or "
            "listen on a loopback address (127.0.0.1, ::1, localhost). Nothing was started.")
    path = state.require_store()
    from cass_actions_core.cli.events_cmds import daemon_clock
    from cass_actions_core.http import create_app
    from cass_actions_core.runtime import Runtime
    from cass_actions_core.store import open_store

    config = state.config()
    with open_store(path, config.daemon_id) as store:
        clock = daemon_clock(state, config, store)  # a rehearsal's accelerated clock, else the system clock
    sock = _listen_socket(host, port)  # before the banner: a port in use is one error, nothing printed first
    runtime = Runtime(config, data_dir=state.data_dir, clock=clock, strict=False, check=False)
    try:
        app = create_app(runtime, token=token)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"cass-actions: serving daemon {config.daemon_id!r} (data dir {state.data_dir}) on "
                   f"http://{shown}:{port}/ — API token: "
                   + (f"required (from {source})" if token else "none (loopback only, /api/ is open)")
                   + "; Ctrl-C stops it.", err=True)
        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: object) -> None:
                super().handle_exit(sig, frame)  # type: ignore[arg-type]
                # SIGINT/SIGTERM is a stop request: end with exit 0 (uvicorn would raise the signal again).
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

        server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=2, lifespan="off"))
        server.run(sockets=[sock])
    finally:
        sock.close()
        runtime.close()
    click.echo("cass-actions: server stopped.", err=True)
    sys.stderr.flush()


def _listen_socket(host: str, port: int) -> Any:
    """A TCP socket bound to ``host:port`` for uvicorn to serve on, or a one-paragraph error when the
    address is in use or not this machine's (nothing has been started or printed yet)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise click.ClickException(f"could not listen on {host}:{port}: {exc.strerror or exc}. Nothing was started.") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = "the port is in use (is another server running?)" if exc.errno == errno.EADDRINUSE else (
            exc.strerror or str(exc))
        raise click.ClickException(f"could not listen on {host}:{port}: {why}. Nothing was started.") from None
    sock.set_inheritable(True)
    return sock
