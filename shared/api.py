"""The FastAPI application every service starts from: errors in one shape, metrics, health and readiness,
correlation ids. Services add their routers."""
from __future__ import annotations

import time
import uuid
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.amounts import AmountError
from shared.auth import Authenticator
from shared.envelope import EnvelopeError
from shared.errors import ApiError
from shared.logs import correlation_id
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, render


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

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        cid = request.headers.get("x-correlation-id") or str(uuid.uuid4())
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["x-correlation-id"] = cid
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(service, request.method, path, str(status)).inc()
            HTTP_LATENCY.labels(service, request.method, path).observe(time.perf_counter() - started)
            correlation_id.reset(token)

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

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        details = [{"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]} for e in exc.errors()]
        return JSONResponse(
            {"reason": "invalid_request", "message": "; ".join(f"{d['field']}: {d['error']}" for d in details), "details": details},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
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
