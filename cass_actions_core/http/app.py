"""The FastAPI application over a :class:`~cass_actions_core.runtime.Runtime` (see docs/http.md).

Every route is ``async``: the runtime's store is a SQLite connection usable only from the thread
that opened it, so requests run on the event loop thread (serve the app in the same thread, and the
same event loop, as the runtime was built in). Its calls are short local queries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cass_actions_core import __version__
from cass_actions_core.http.auth import APIGuard
from cass_actions_core.http.models import (
    ApprovalFilter,
    CategoryBudgetBody,
    DailyBudgetBody,
    Day,
    ErrorBody,
    MoveBody,
    Phase,
    PlanItemBody,
    ReasonBody,
    ResolveBody,
)
from cass_actions_core.events import parse_event_types
from cass_actions_core.problems import UnknownItem, UserError, WrongState
from cass_actions_core.store import UNIT_STATUSES, NotFoundError, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from cass_actions_core.runtime import Runtime
    from cass_actions_core.store import EventRow

log = logging.getLogger("cass_actions.http")

API_PREFIX = "/api"
#: Who the runtime records as the author of a change made through the API (unless a body says).
API_ACTOR = "api"
#: How often the events stream looks for new events (seconds).
STREAM_POLL_SECONDS = 0.5
#: A comment line on an idle stream this often (seconds), so proxies keep it open.
STREAM_KEEPALIVE_SECONDS = 15.0
#: Events read per query.
EVENT_PAGE = 1000
STATIC_DIR = Path(__file__).resolve().parent / "static"

_ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in (
    (400, "A value the runtime refuses"), (401, "Missing or wrong API token"),
    (403, "No token configured and the request is not from this machine"), (404, "No such item"),
    (409, "The item is not in a state that allows this"), (422, "A malformed request"))}


# --------------------------------------------------------------------------- errors


class APIError(Exception):
    """An error answer: ``status``, a sentence, details."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def _status_for(exc: BaseException) -> int:
    """The HTTP status for an exception the runtime raises for a user's request."""
    if isinstance(exc, (UnknownItem, NotFoundError)):
        return 404
    if isinstance(exc, (WrongState, StoreError)):
        return 409  # e.g. cancelling a finished unit, an approval already answered, a held lease
    return 400


def _error(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": _plain(detail)}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err.get("loc", ()))
            problems.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
        first = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems[:3])
        return _error(422, f"invalid request: {first}" if first else "invalid request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and text == "Not Found":
            text = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            text = f"method {request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, text, None if isinstance(exc.detail, str) else exc.detail,
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return _error(_status_for(exc), str(exc) or type(exc).__name__)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        # An unknown approval (404), one already answered (409); a busy or unusable store (503).
        if isinstance(exc, StoreUnavailable):
            return _error(503, str(exc))
        return _error(_status_for(exc), str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s: %r", request.method, request.url.path, exc, exc_info=exc)
        return _error(500, "internal error: the request failed inside the server (see its log)", type(exc).__name__)


# --------------------------------------------------------------------------- JSON


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dates and datetimes as ISO text, dataclasses as mappings."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if is_dataclass(value) and not isinstance(value, type):
        return {f: _plain(getattr(value, f)) for f in value.__dataclass_fields__}
    return str(value)


class JSON(JSONResponse):
    """A JSON answer that never fails on a date, a dataclass or a non-finite number."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_plain(content), ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


# --------------------------------------------------------------------------- shapes


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def unit_dict(unit: Any) -> dict[str, Any]:
    """A unit as ``cass-actions queue --json`` prints it, plus its times, name, priority and position."""
    from cass_actions_core.cli.runtime_cmds import unit_dict as cli_unit_dict

    out = cli_unit_dict(unit)
    out.update(name=unit.name, priority=unit.priority, position=unit.position, requires_idle=unit.requires_idle,
               not_before=_iso(unit.not_before), created_at=_iso(unit.created_at), updated_at=_iso(unit.updated_at),
               started_at=_iso(unit.started_at), finished_at=_iso(unit.finished_at), source=unit.data.get("source"))
    return out


def approval_dict(a: Any) -> dict[str, Any]:
    """An approval as ``cass-actions approvals --json`` prints it, plus when it was answered."""
    return {"id": a.id, "unit_id": a.unit_id, "action_id": a.action_id, "step": a.step_index, "status": a.status,
            "reason": a.reason, "requested_at": a.requested_at.isoformat(), "expires_at": a.expires_at.isoformat(),
            "resolved_at": _iso(a.resolved_at), "resolved_by": a.resolved_by, "note": a.note}


def event_dict(e: EventRow) -> dict[str, Any]:
    """An event as ``cass-actions events --json`` prints it."""
    return {"id": e.id, "at": e.at.isoformat(), "type": e.type, "unit_id": e.unit_id, "data": e.data}


# --------------------------------------------------------------------------- helpers


def _event_filter(types: list[str] | None, unit: str | None) -> Callable[[EventRow], bool]:
    """Exact types and ``prefix.*`` patterns (repeatable, comma-separated) and a unit id."""
    try:
        exact, prefixes = parse_event_types(types or [])
    except ValueError as exc:
        raise APIError(422, f"type {exc}") from None

    def wanted(event: EventRow) -> bool:
        if (exact or prefixes) and not (event.type in exact or any(event.type.startswith(p) for p in prefixes)):
            return False
        return unit is None or event.unit_id == unit

    return wanted


def _pauses(runtime: Runtime) -> dict[str, Any]:
    return {"daemon_paused": runtime.daemon_paused(),
            "paused_categories": sorted(runtime.paused_categories())}


def _known_category(runtime: Runtime, category: str) -> str:
    known = set(runtime.config.budget.allocations)
    if category not in known:
        from cass_actions_core.catalogue import closest

        hint = closest(category, sorted(known))
        raise APIError(404, f"unknown category {category!r}" + (f" (did you mean {hint!r}?)" if hint else ""),
                       {"categories": sorted(known)})
    return category


def _unit_or_404(runtime: Runtime, unit_id: str) -> Any:
    """The unit ``unit_id`` names (a full id, or a unique prefix where the runtime accepts one)."""
    unit = runtime.store.get_unit(unit_id)
    if unit is None and hasattr(runtime, "find_unit"):
        return runtime.find_unit(unit_id)  # UnknownItem (404), or UserError for a short or ambiguous prefix
    if unit is None:
        raise APIError(404, f"no work unit with id {unit_id!r}")
    return unit


def _plan_day(runtime: Runtime) -> date:
    return runtime.phases.instance_at(runtime.clock.now()).day


def _scan(runtime: Runtime, after_id: int) -> Iterator[EventRow]:
    while True:
        page = runtime.store.list_events(since_id=after_id, limit=EVENT_PAGE)
        yield from page
        if len(page) < EVENT_PAGE:
            return
        after_id = page[-1].id


# --------------------------------------------------------------------------- the app


def create_app(runtime: Runtime, *, token: str | None = None) -> FastAPI:
    """A FastAPI application serving ``runtime`` under ``/api/`` and the dashboard under ``/``.

    ``token``: every ``/api/`` request must carry ``Authorization: Bearer <token>`` (the events
    stream also takes ``?token=``). ``None``: the API answers loopback clients only, without
    auth. Serve the app in the thread and event loop the runtime was built in (its store is
    bound to that thread); an embedding application mounts it or runs ``uvicorn.Server`` in its
    own loop. The runtime is neither started nor closed by the app.
    """
    if token is not None and not token:
        raise ValueError("token must be a non-empty string, or None for no authentication")
    app = FastAPI(title="cass-actions", version=__version__, openapi_url=f"{API_PREFIX}/openapi.json",
                  docs_url=None, redoc_url=None, default_response_class=JSON,
                  description="Query and steer a cass-actions daemon (see docs/http.md).")
    app.state.runtime = runtime
    stream_path = f"{API_PREFIX}/events/stream"
    app.add_middleware(APIGuard, token=token, prefix=API_PREFIX, query_token_paths=frozenset({stream_path}))
    _install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX, responses=_ERRORS)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- queries
    @api.get("/status", summary="Where things stand")
    async def get_status() -> JSON:
        info = runtime.status()
        if "daemon_paused" not in info and hasattr(runtime, "daemon_paused"):
            info["daemon_paused"] = runtime.daemon_paused()
        return JSON(info)

    @api.get("/plan", summary="A date's plan and its units")
    async def get_plan(date: Annotated[Day | None, Query(description="YYYY-MM-DD; default: the current phase's date")] = None) -> JSON:
        day = date or _plan_day(runtime)
        from cass_actions_core.cli.runtime_cmds import plan_dict

        return JSON(plan_dict(day, runtime.store.get_plan(day), [unit_dict(u) for u in runtime.units(local_date=day)]))

    @api.get("/units", summary="Work units")
    async def get_units(date: Annotated[Day | None, Query()] = None, phase: Annotated[Phase | None, Query()] = None,
                        status: Annotated[list[str] | None, Query(description="repeatable, comma-separated")] = None
                        ) -> JSON:
        statuses = [s.strip() for value in status or [] for s in value.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in UNIT_STATUSES]
        if unknown:
            raise APIError(422, f"status {unknown[0]!r} is not a unit status", {"statuses": list(UNIT_STATUSES)})
        units = runtime.units(local_date=date, phase=phase, statuses=statuses or None)
        return JSON([unit_dict(u) for u in units])

    @api.get("/units/{unit_id}", summary="One unit with its steps, action runs, transitions, approvals and summary")
    async def get_unit(unit_id: Annotated[str, PathParam(max_length=200)]) -> JSON:
        unit = _unit_or_404(runtime, unit_id)
        out = unit_dict(unit)
        out["step_details"] = [{"index": i, "action": s["action"], "params": s.get("params") or {},
                                "optional": bool(s.get("optional"))} for i, s in enumerate(unit.steps)]
        out["data"] = unit.data
        out["action_runs"] = [{"key": r.key, "step": r.step_index, "action_id": r.action_id, "status": r.status,
                               "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
                               "cost_usd": r.cost_usd, "result": r.result, "error": r.error}
                              for r in runtime.store.action_runs_for_unit(unit.id)]
        out["transitions"] = [{"at": _iso(t.at), "from": t.from_status, "to": t.to_status, "reason": t.reason}
                              for t in runtime.store.transitions(unit.id)]
        out["approvals"] = [approval_dict(a) for a in runtime.store.list_approvals() if a.unit_id == unit.id]
        summary = runtime.store.get_summary(unit.id)
        out["summary"] = summary.data if summary is not None else None
        return JSON(out)

    @api.get("/history", summary="Work summaries, newest first")
    async def get_history(date: Annotated[Day | None, Query()] = None, phase: Annotated[Phase | None, Query()] = None,
                          category: Annotated[str | None, Query(max_length=200)] = None,
                          template: Annotated[str | None, Query(max_length=200)] = None,
                          text: Annotated[str | None, Query(max_length=1000)] = None,
                          limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> JSON:
        rows = runtime.history(local_date=date, phase=phase, category=category, template_id=template, text=text,
                               limit=limit)
        return JSON([r.data for r in rows])

    @api.get("/budget", summary="A budget day: limit, spent, reserved, available per category; the reserve")
    async def get_budget(date: Annotated[Day | None, Query(description="default: today")] = None) -> JSON:
        return JSON(runtime.ledger.status(date or runtime.clock.today()))

    @api.get("/events", summary="Stored events, oldest first")
    async def get_events(since_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                         type: Annotated[list[str] | None, Query(description="repeatable, comma-separated; "
                                                                 "a trailing * matches by prefix")] = None,
                         unit: Annotated[str | None, Query(max_length=200)] = None,
                         limit: Annotated[int, Query(ge=1, le=10_000)] = 50) -> JSON:
        if unit is not None:
            from cass_actions_core.cli.events_cmds import resolve_unit

            unit = resolve_unit(runtime.store, unit)  # a prefix, as the CLI takes: 404 / 400 otherwise
        wanted = _event_filter(type, unit)
        last = since_id or 0
        if since_id is None:
            # The last `limit` matching events.
            tail: deque[EventRow] = deque(maxlen=limit)
            for event in _scan(runtime, 0):
                last = event.id
                if wanted(event):
                    tail.append(event)
            return JSON({"events": [event_dict(e) for e in tail], "last_id": last})
        # The first `limit` matching events after since_id (page on with last_id).
        found: list[EventRow] = []
        for event in _scan(runtime, since_id):
            last = event.id
            if wanted(event):
                found.append(event)
                if len(found) >= limit:
                    break
        return JSON({"events": [event_dict(e) for e in found], "last_id": last})

    @api.get("/events/stream", summary="New events as server-sent events",
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"}})
    async def stream_events(
            request: Request,
            since_id: Annotated[int | None, Query(ge=0, le=2**62, description="start after this id (default: now)")] = None,
            type: Annotated[list[str] | None, Query()] = None,
            unit: Annotated[str | None, Query(max_length=200)] = None,
            token: Annotated[str | None, Query(description="the API token (EventSource cannot send headers)")] = None,
            last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None) -> StreamingResponse:
        wanted = _event_filter(type, unit)
        start: int | None = None
        if last_event_id is not None and last_event_id.strip().isdigit() and len(last_event_id.strip()) < 19:
            start = int(last_event_id.strip())
        elif since_id is not None:
            start = since_id
        first = runtime.store.last_event_id() if start is None else start

        async def events() -> AsyncIterator[str]:
            last = first
            quiet = 0.0
            yield f"retry: 2000\n: streaming events after id {last}\n\n"
            while True:
                page = runtime.store.list_events(since_id=last, limit=EVENT_PAGE)
                for event in page:
                    last = event.id
                    if wanted(event):
                        data = json.dumps(_plain(event_dict(event)), ensure_ascii=False, separators=(",", ":"))
                        yield f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"
                        quiet = 0.0
                if len(page) >= EVENT_PAGE:
                    continue
                await asyncio.sleep(STREAM_POLL_SECONDS)
                quiet += STREAM_POLL_SECONDS
                if quiet >= STREAM_KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield f": keepalive {last}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/approvals", summary="Approvals: pending (default) or of one status, or all")
    async def get_approvals(status: Annotated[ApprovalFilter, Query()] = "pending") -> JSON:
        rows = runtime.approvals(None if status == "all" else status)
        return JSON([approval_dict(a) for a in rows])

    # ---------------------------------------------------------------- controls
    def _resolve(approval_id: str, body: ResolveBody | None, approve: bool) -> JSON:
        body = body or ResolveBody()
        method = runtime.approve if approve else runtime.reject
        row = method(approval_id, by=body.by or API_ACTOR, note=body.note)
        return JSON(approval_dict(row))

    @api.post("/approvals/{approval_id}/approve", summary="Approve: the parked unit is queued again")
    async def approve(approval_id: Annotated[str, PathParam(max_length=200)], body: ResolveBody | None = None) -> JSON:
        return _resolve(approval_id, body, True)

    @api.post("/approvals/{approval_id}/reject", summary="Reject: the parked unit fails with the answer as reason")
    async def reject(approval_id: Annotated[str, PathParam(max_length=200)], body: ResolveBody | None = None) -> JSON:
        return _resolve(approval_id, body, False)

    @api.post("/units/{unit_id}/cancel", summary="Cancel a unit that has not finished")
    async def cancel(unit_id: Annotated[str, PathParam(max_length=200)], body: ReasonBody | None = None) -> JSON:
        unit = runtime.cancel(unit_id, reason=(body or ReasonBody()).reason, by=API_ACTOR)
        return JSON(unit_dict(unit))

    @api.post("/pause", summary="Pause the whole daemon (no new work starts)")
    async def pause_daemon(body: ReasonBody | None = None) -> JSON:
        runtime.pause(None, by=API_ACTOR, reason=(body or ReasonBody()).reason)
        return JSON(_pauses(runtime))

    @api.post("/resume", summary="Resume the whole daemon")
    async def resume_daemon(body: ReasonBody | None = None) -> JSON:
        runtime.resume(None, by=API_ACTOR, reason=(body or ReasonBody()).reason)
        return JSON(_pauses(runtime))

    @api.post("/categories/{category}/pause", summary="Hold a category's queued work")
    async def pause_category(category: Annotated[str, PathParam(max_length=200)], body: ReasonBody | None = None) -> JSON:
        runtime.pause(_known_category(runtime, category), by=API_ACTOR, reason=(body or ReasonBody()).reason)
        return JSON(_pauses(runtime))

    @api.post("/categories/{category}/resume", summary="Release a paused category")
    async def resume_category(category: Annotated[str, PathParam(max_length=200)], body: ReasonBody | None = None) -> JSON:
        runtime.resume(_known_category(runtime, category), by=API_ACTOR, reason=(body or ReasonBody()).reason)
        return JSON(_pauses(runtime))

    def _budget_answer(result: Any, day: date | None) -> JSON:
        if isinstance(result, dict) and "budget" in result:
            return JSON(result)
        return JSON({"result": result, "budget": runtime.ledger.status(day or runtime.clock.today())})

    @api.put("/budget/daily", summary="Set the daily budget (USD)")
    async def set_daily(body: DailyBudgetBody) -> JSON:
        return _budget_answer(runtime.set_budget(body.amount_usd, None, by=API_ACTOR), None)

    @api.delete("/budget/daily", summary="Clear the daily budget override (back to the configured amount)")
    async def clear_daily() -> JSON:
        return _budget_answer(runtime.clear_budget(None, by=API_ACTOR), None)

    @api.put("/budget/categories/{category}", summary="Set a category's money for a budget day (USD)")
    async def set_category(category: Annotated[str, PathParam(max_length=200)], body: CategoryBudgetBody) -> JSON:
        result = runtime.set_budget(body.amount_usd, _known_category(runtime, category), day=body.date,
                       by=API_ACTOR)
        return _budget_answer(result, body.date)

    @api.delete("/budget/categories/{category}", summary="Clear a category's override for a budget day")
    async def clear_category(category: Annotated[str, PathParam(max_length=200)],
                             date: Annotated[Day | None, Query(description="default: today")] = None) -> JSON:
        result = runtime.clear_budget(_known_category(runtime, category), day=date, by=API_ACTOR)
        return _budget_answer(result, date)

    @api.post("/plan/items", status_code=201, summary="Add a unit of a template to a date's plan")
    async def plan_add(body: PlanItemBody) -> JSON:
        unit = runtime.plan_add(body.template, body.phase, day=body.date, focus=body.focus,
                     motivation=body.motivation, params=body.params, position=body.position, by=API_ACTOR)
        return JSON(unit_dict(unit), status_code=201)

    @api.delete("/plan/items/{unit_id}", summary="Remove a unit that has not started from its plan")
    async def plan_remove(unit_id: Annotated[str, PathParam(max_length=200)]) -> JSON:
        return JSON(unit_dict(runtime.plan_remove(unit_id, by=API_ACTOR)))

    @api.post("/plan/items/{unit_id}/move", summary="Move a unit that has not started to another phase or position")
    async def plan_move(unit_id: Annotated[str, PathParam(max_length=200)], body: MoveBody) -> JSON:
        if body.phase is None and body.position is None:
            raise APIError(422, "give a phase, a position or both")
        return JSON(unit_dict(runtime.plan_move(unit_id, phase=body.phase, position=body.position,
                                    by=API_ACTOR)))

    app.include_router(api)

    # ---------------------------------------------------------------- the dashboard
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # browsers ask for it on every page load: no icon, and no error

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse("<!doctype html><title>cass-actions</title><p>The dashboard is not installed; "
                            f"the JSON API is under <code>{API_PREFIX}/</code>.</p>", status_code=404)

    _document_security(app, token is not None)
    return app


def _document_security(app: FastAPI, required: bool) -> None:
    """Declare the bearer token in the OpenAPI description (when the server requires one)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        if required:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>"}
            schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
