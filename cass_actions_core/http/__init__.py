"""The optional HTTP surface: a JSON API over a :class:`~cass_actions_core.runtime.Runtime`, its
OpenAPI description, a server-sent events stream and the dashboard's static files.

Needs the ``http`` extra (``pip install 'cass-actions[http]'``: FastAPI and uvicorn). Nothing
in the core imports this package, so ``cass-actions list`` and the daemon never pay for it;
``cass-actions serve`` imports it on demand and embedding applications call :func:`create_app`::

    from cass_actions_core.http import create_app
    app = create_app(runtime, token="s3cret")   # a FastAPI application; mount it or serve it

See ``docs/http.md``.
"""

from __future__ import annotations

#: What to tell someone whose environment lacks the extra.
EXTRA_MISSING = (
    "the HTTP API needs the optional 'http' extra (FastAPI and uvicorn), which is not installed in this "
    "environment: install it with `pip install 'cass-actions[http]'` (or `pip install fastapi uvicorn`)."
)


class HTTPExtraMissing(ImportError):
    """The ``http`` extra (FastAPI, uvicorn) is not installed."""


try:
    import fastapi as _fastapi  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise HTTPExtraMissing(f"cass_actions_core.http: {EXTRA_MISSING} ({_exc})") from None

from cass_actions_core.http.app import API_PREFIX, create_app  # noqa: E402

__all__ = ["API_PREFIX", "EXTRA_MISSING", "HTTPExtraMissing", "create_app"]
