"""Who may call ``/api/``: a bearer token compared in constant time, or, without a token, only
loopback clients that address the server by a loopback name (no DNS rebinding, no cross-site form)."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Host names that only ever mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _host_of(authority: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` → ``::1``, ``localhost:80`` → ``localhost``)."""
    authority = authority.strip()
    if authority.startswith("["):
        return authority[1:authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _json_error(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, raw, body


class APIGuard:
    """ASGI middleware in front of every path but ``/`` and ``/static/…`` (so all of ``/api/``).

    With a ``token``: the request needs ``Authorization: Bearer <token>`` (compared with
    :func:`hmac.compare_digest`); on the paths in ``query_token_paths`` (the events stream,
    since a browser's ``EventSource`` cannot set headers) ``?token=<token>`` is accepted too.
    Anything else gets a 401 JSON answer before the request reaches a route, so nothing changes.

    Without a token the API is open, but only to a loopback client that names the server by a
    loopback host (``Host: 127.0.0.1:8765``, ``localhost``, ``[::1]``) and, when a browser sends
    an ``Origin``, from the same origin: a web page elsewhere cannot drive it (403 otherwise).
    """

    def __init__(self, app: ASGIApp, *, token: str | None, prefix: str = "/api",
                 query_token_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token is not None else None
        self.prefix = prefix
        self.query_token_paths = query_token_paths

    def _guarded(self, path: str) -> bool:
        # Fail closed: everything but the page and its static files is guarded, whatever the route.
        return not (path in ("", "/", "/favicon.ico") or path.startswith("/static/"))

    @staticmethod
    def _relative(scope: Scope) -> str:
        """The path inside this application (mounted under a prefix, Starlette keeps the full path)."""
        path, root = scope.get("path", ""), scope.get("root_path", "")
        return path[len(root):] if root and path.startswith(root) else path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._guarded(self._relative(scope)):
            await self.app(scope, receive, send)
            return
        refusal = self._check({**scope, "path": self._relative(scope)})
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = refusal
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _check(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.token is not None:
            if self._token_ok(scope, headers):
                return None
            given = b"authorization" in headers or (scope.get("path") in self.query_token_paths
                                                     and b"token=" in scope.get("query_string", b""))
            return _json_error(
                401, "wrong API token" if given else "missing API token",
                "every /api/ request needs the header `Authorization: Bearer <token>` with the token the server "
                "was started with" + (" (this path also accepts ?token=<token>)"
                                      if scope.get("path") in self.query_token_paths else "") + ". Nothing was changed.",
                {"WWW-Authenticate": 'Bearer realm="cass-actions"'})
        # No token configured: loopback only.
        client = scope.get("client")
        if client is not None and not is_loopback(str(client[0])):
            return _json_error(403, "no API token is configured, so the API only answers this machine",
                               f"the request came from {client[0]}; start the server with a token "
                               "(CASS_ACTIONS_API_TOKEN) to allow other machines. Nothing was changed.")
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not is_loopback(_host_of(host)):
            return _json_error(403, "no API token is configured, so the API only answers requests addressed to "
                                    "a loopback name", f"Host {host!r} is not localhost, 127.0.0.1 or [::1]. "
                                                       "Nothing was changed.")
        origin = headers.get(b"origin")
        if origin is not None:
            # "null" is what sandboxed iframes and data: URLs send: a page of unknown origin, refused too.
            parts = urlsplit(origin.decode("latin-1"))
            if origin == b"null" or not host or parts.netloc.lower() != host.lower():
                return _json_error(403, "cross-origin request refused",
                                   f"a page from {parts.netloc or origin.decode('latin-1')!r} may not call this API "
                                   "without a token. Nothing was changed.")
        return None

    def _token_ok(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        assert self.token is not None
        ok = False
        value = headers.get(b"authorization")
        if value is not None:
            scheme, _, credential = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                ok = hmac.compare_digest(credential.strip(), self.token)
        if not ok and scope.get("path") in self.query_token_paths:
            query = scope.get("query_string", b"").decode("latin-1")
            for key, given in parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"):
                if key == "token":
                    ok = hmac.compare_digest(given.encode("utf-8", "replace"), self.token) or ok
        return ok
