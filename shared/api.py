"""The FastAPI application every service starts from: errors in one shape, metrics, health and readiness,
correlation ids. Services add their routers."""
from __future__ import annotations

import time
import uuid
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sqlalchemy.exc import DataError

from shared.amounts import AmountError
from shared.auth import Authenticator
from shared.auth import principal as auth_principal
from shared.envelope import EnvelopeError, acceptable_correlation_id
from shared.errors import ApiError, Unauthenticated
from shared.logs import correlation_id
from shared.outbox import EventTooLarge
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, render


def _needs_principal(dependant) -> bool:
    return any(d.call is auth_principal or _needs_principal(d) for d in dependant.dependencies)


def _unauthenticated(request: Request) -> JSONResponse | None:
    """FastAPI reads the body before it runs dependencies: a caller without a valid token must still get
    401 (not a 4xx about a body it may not even send)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not _needs_principal(dependant):
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        refused = Unauthenticated("missing_token", "this endpoint needs a bearer token")
    elif request.app.state.authenticator.authenticate(token.strip()) is None:
        refused = Unauthenticated("invalid_token", "the bearer token is not valid")
    else:
        return None
    return JSONResponse(refused.body(), status_code=refused.status, headers=refused.headers)


# Metric labels take the method only from this set: a server that passes any method token through (h11) would
# otherwise let each request make a new time series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _correlation_id(scope: Scope) -> str:
    # A caller's x-correlation-id is carried into every event the request writes: it must pass the envelope's own
    # check of correlationid, or each of those events would be dead-lettered `invalid_envelope` by every consumer.
    # Anything else gets a fresh id.
    given = Headers(scope=scope).get("x-correlation-id")
    return given if given is not None and acceptable_correlation_id(given) else str(uuid.uuid4())


class _Observe:
    """Every HTTP request: its correlation id (the caller's x-correlation-id or a new one) set for the handler and
    echoed in the response, and the request counted and timed by route and status. Plain ASGI: starlette's
    BaseHTTPMiddleware (``@app.middleware("http")``) runs the app in a task of its own behind memory streams,
    which costs more CPU per request than a small handler does."""

    def __init__(self, app: ASGIApp, service: str):
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = _correlation_id(scope)
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-correlation-id"] = cid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)
            correlation_id.reset(token)


def create_app(
    service: str,
    *,
    authenticator: Authenticator,
    ready_checks: dict[str, Callable[[], bool]],
    title: str,
    description: str = "",
    version: str = "1.0.0",
) -> FastAPI:
    app = FastAPI(title=title, description=description, version=version)
    app.state.authenticator = authenticator
    app.state.service = service

    app.add_middleware(_Observe, service=service)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(AmountError)
    async def _amount_error(_: Request, exc: AmountError):
        return JSONResponse({"reason": exc.reason, "message": str(exc)}, status_code=422)

    @app.exception_handler(EnvelopeError)
    async def _envelope_error(_: Request, exc: EnvelopeError):
        body = {"reason": exc.reason, "message": str(exc)}
        if exc.details is not None:
            body["details"] = exc.details
        return JSONResponse(body, status_code=422)

    @app.exception_handler(EventTooLarge)
    async def _event_too_large(_: Request, exc: EventTooLarge):
        # the request would make an event Kafka cannot carry: nothing of it was written
        return JSONResponse({"reason": "event_too_large", "message": str(exc),
                             "details": {"event_type": exc.event_type, "bytes": exc.size, "limit": exc.limit}},
                            status_code=413)

    @app.exception_handler(DataError)
    async def _data_error(_: Request, exc: DataError):
        # a value the database refuses (out of range, NUL in text): the caller's input, not our fault
        return JSONResponse({"reason": "invalid_value", "message": str(exc.orig).split("\n")[0]}, status_code=422)

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError):
        return JSONResponse({"reason": "invalid_value", "message": f"a number is out of range: {exc}"}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        if (refused := _unauthenticated(request)) is not None:
            return refused
        details = [{"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]} for e in exc.errors()]
        return JSONResponse(
            {"reason": "invalid_request", "message": "; ".join(f"{d['field']}: {d['error']}" for d in details), "details": details},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and (refused := _unauthenticated(request)) is not None:
            return refused
        reason = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"reason": reason, "message": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        results = {name: bool(check()) for name, check in ready_checks.items()}
        ok = all(results.values())
        return JSONResponse({"ready": ok, "checks": results}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics() -> Response:
        body, ctype = render()
        return Response(body, media_type=ctype)

    return app
