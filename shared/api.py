"""The FastAPI application every service starts from: errors in one shape, metrics, health and readiness,
correlation ids. Services add their routers."""
from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any, Callable

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
from shared.db import DB_ERRORS, data_exception, database_unavailable, driver_error, unique_violation
from shared.envelope import EnvelopeError, acceptable_correlation_id
from shared.errors import ApiError, Unauthenticated
from shared.logs import correlation_id
from shared.outbox import EventTooLarge
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, render

log = logging.getLogger(__name__)


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


# -- request bodies ----------------------------------------------------------------------------------------------
# Nothing limited the size of a request body: FastAPI reads it whole and parses it (a 10 MB JSON array of small
# items took ~650 MB of memory before its 422; a bigger one would take the process down with every request in
# it). A JSON body above JSON_BODY_LIMIT is refused 413 ``body_too_large`` as soon as Content-Length says so or the
# bytes read pass it. The largest JSON the APIs take is a ledger batch of 10,000 transfers (~3 MB), so 16 MiB
# leaves room. A route that declares a file body (text/csv, XLSX, multipart in its OpenAPI requestBody: the
# imports) may take up to FILE_BODY_LIMIT: an import is parsed in memory (a multipart body of 100 MiB peaked at
# ~1 GiB), and a county of 100,000 enterprises is ~8 MB of CSV per file, so larger files are split.
JSON_BODY_LIMIT = 16 * 1024 * 1024
FILE_BODY_LIMIT = 50 * 1024 * 1024
# A JSON string may spell a lone UTF-16 surrogate (\ud800). Python takes it, but neither PostgreSQL nor SQLite
# (nor orjson, nor Kafka's UTF-8 consumers) can store or encode it: the request failed with a 500 where the text
# met the database (ledger POST /v1/balances:query), or an event carrying it could not be written. Refused at the
# door, 422 ``invalid_text``. A pair (an emoji written \ud83d\ude00) is fine. The scan walks escapes left to right so
# that an escaped backslash followed by "ud800" is not read as one.
_ESCAPE = re.compile(rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
                     re.DOTALL)


class RequestRefused(StarletteHTTPException):
    """A request refused while its body is read (too large, unusable text). An HTTPException so that FastAPI's
    body reading passes it on unchanged (any other exception there becomes a bare 400); ``reason`` is the
    machine-readable one the error handler answers with."""

    def __init__(self, status: int, reason: str, message: str, details: Any = None):
        super().__init__(status_code=status, detail=message)
        self.reason = reason
        self.details = details


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _takes_files(route) -> bool:
    content = ((getattr(route, "openapi_extra", None) or {}).get("requestBody") or {}).get("content") or {}
    return any(not _is_json(media) for media in content)


def lone_surrogate(body: bytes) -> bool:
    """Whether a JSON text spells a UTF-16 surrogate that is not half of a pair."""
    if b"\\u" not in body:
        return False
    return any(m.group(1) for m in _ESCAPE.finditer(body))


class _BodyGuard:
    """Wraps ``receive``: counts the body against its limit and checks a JSON body's text once it is complete. The
    limit is chosen on the first read, when routing has set ``scope["route"]`` (the body is read by the endpoint)."""

    def __init__(self, scope: Scope, receive: Receive):
        self.scope = scope
        self.receive = receive
        headers = Headers(scope=scope)
        self.json = _is_json(headers.get("content-type"))
        declared = headers.get("content-length")
        self.declared = int(declared) if declared is not None and declared.isascii() and declared.isdigit() else None
        self.limit: int | None = None
        self.size = 0
        self.chunks: list[bytes] = []

    def _too_large(self) -> RequestRefused:
        return RequestRefused(413, "body_too_large", f"the request body is larger than {self.limit} bytes",
                              {"limit": self.limit})

    async def __call__(self) -> Message:
        if self.limit is None:
            self.limit = FILE_BODY_LIMIT if _takes_files(self.scope.get("route")) else JSON_BODY_LIMIT
            if self.declared is not None and self.declared > self.limit:
                raise self._too_large()
        message = await self.receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self.limit:
            raise self._too_large()
        if self.json:
            self.chunks.append(chunk)
            if not message.get("more_body", False):
                body = b"".join(self.chunks)
                self.chunks = []
                if lone_surrogate(body):
                    raise RequestRefused(422, "invalid_text", "a JSON string holds a lone UTF-16 surrogate (\\ud800-"
                                         "\\udfff not part of a pair): it is not text that can be stored")
        return message


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
        guard = _BodyGuard(scope, receive)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-correlation-id"] = cid
            await send(message)

        try:
            await self.app(scope, guard, send_with_id)
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's "client closed request"): not the service's error
            raise
        except Exception:
            # An error that escapes the app after the response started (a streamed export failing half way) left
            # the status at the 200 already sent: the request was counted a success, and the 5xx alert never saw
            # it. The client gets a cut-off response; the metric says 500.
            status = 500
            raise
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)
            correlation_id.reset(token)


# -- validation errors ----------------------------------------------------------------------------------------------
# A 422 listed every error pydantic found, each twice (message and details): 9,000 empty objects in a ledger batch
# (27 KB) answered 2.9 MB, and a list without a length limit could be made to answer a hundred times what was sent.
# The first MAX_DETAILS errors are listed, the total is in ``error_count``; a field path is cut at MAX_FIELD (an
# extra key the caller invented is echoed in it).
MAX_DETAILS = 50
MAX_FIELD = 200
_MESSAGE_ERRORS = 10


def _field(loc) -> str:
    text = ".".join(str(p) for p in loc)
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + "..."


def _invalid_request(errors) -> JSONResponse:
    details = [{"field": _field(e["loc"]), "error": e["msg"]} for e in errors[:MAX_DETAILS]]
    message = "; ".join(f"{d['field']}: {d['error']}" for d in details[:_MESSAGE_ERRORS])
    if len(errors) > _MESSAGE_ERRORS:
        message += f"; and {len(errors) - _MESSAGE_ERRORS} more"
    body = {"reason": "invalid_request", "message": message, "details": details}
    if len(errors) > MAX_DETAILS:
        body["error_count"] = len(errors)
    return JSONResponse(body, status_code=422)


def _malformed_json(what: str) -> JSONResponse:
    return JSONResponse({"reason": "malformed_json", "message": f"the body is not valid JSON: {what}"}, status_code=400)


def _parse_failure(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "it is nested too deeply"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "a number has too many digits"
    return "it cannot be read"


def _not_json(request: Request, errors) -> JSONResponse | None:
    """A body sent with a content type other than JSON to a route that takes JSON: FastAPI does not parse it and
    answered 422 "body: Input should be a valid dictionary", although the body may be exactly the right object.
    415 says what to change."""
    if _is_json(request.headers.get("content-type")) or _takes_files(request.scope.get("route")):
        return None
    if not any(e["loc"] == ("body",) and e.get("type") != "missing" for e in errors):
        return None
    given = request.headers.get("content-type") or "none"
    return JSONResponse({"reason": "unsupported_media_type", "message": f"send the body as application/json "
                         f"(content type {given[:100]!r} given)"}, status_code=415)


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

    async def _database(_: Request, exc: Exception):
        # The raw COPY/pipeline paths raise psycopg's own errors, which the DataError handler above does not see;
        # and a database that is away is the caller's to retry (503), not a bug of ours (a bare 500)
        raw = driver_error(exc)
        if data_exception(exc):
            return JSONResponse({"reason": "invalid_value", "message": str(raw).split("\n")[0]}, status_code=422)
        if unique_violation(exc):  # two requests took the same new key at once: the loser's retry gets the answer
            return JSONResponse({"reason": "concurrent_change", "message": "another request changed the same thing at "
                                 "the same time; read it and retry"}, status_code=409)
        if database_unavailable(exc):
            log.warning("database unavailable: %s", raw)
            return JSONResponse({"reason": "database_unavailable", "message": "the database does not answer; retry"},
                                status_code=503, headers={"Retry-After": "5"})
        log.error("database error", exc_info=exc)
        return JSONResponse({"reason": "database_error", "message": type(raw).__name__}, status_code=500)

    for kind in DB_ERRORS:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError):
        return JSONResponse({"reason": "invalid_value", "message": f"a number is out of range: {exc}"}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        if (refused := _unauthenticated(request)) is not None:
            return refused
        errors = exc.errors()
        if len(errors) == 1 and errors[0].get("type") == "json_invalid":
            # was 422 invalid_request "body.13: JSON decode error": what is wrong, and where, was left out
            return _malformed_json(f"{(errors[0].get('ctx') or {}).get('error', 'invalid JSON')} at character "
                                   f"{errors[0]['loc'][-1]}")
        if (refused := _not_json(request, errors)) is not None:
            return refused
        return _invalid_request(errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        refused_body = isinstance(exc, RequestRefused)
        if (exc.status_code == 400 or refused_body) and (refused := _unauthenticated(request)) is not None:
            return refused
        if refused_body:
            body = {"reason": exc.reason, "message": str(exc.detail)}
            if exc.details is not None:
                body["details"] = exc.details
            return JSONResponse(body, status_code=exc.status_code)
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a JSON body json.loads could not take for any reason but a syntax error: not
            # UTF-8, nested too deep, an integer of more than 4,300 digits. Say which.
            return _malformed_json(_parse_failure(exc.__cause__))
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
