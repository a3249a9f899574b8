"""What every quota route shares: scopes, running a use case in one transaction, and mapping the
application's refusals to the one error shape (422 malformed, 409 not allowed now / id reused, 404)."""
from __future__ import annotations

from typing import Callable, TypeVar

from fastapi import Request

from shared.auth import require
from shared.errors import ApiError, Conflict, NotFound, Unprocessable
from shared.runtime import ServiceRuntime
from services.quota.application.intake import IdReused, NotKnown
from services.quota.application.requests import NOT_ALLOWED
from services.quota.application.tx import Tx
from services.quota.domain.identifiers import county_code_problem
from services.quota.domain.problems import QuotaDomainError
from services.quota.storage.counties import county_known

T = TypeVar("T")

READ = require("quota:read", "quota:write")  # finance:read is the settlement API's (shared/auth.py)
WRITE = require("quota:write")
POLICY_ADMIN = require("quota:admin")


def runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def problems_error(exc: QuotaDomainError) -> ApiError:
    details = [{"reason": p.reason, "field": p.field, "detail": p.detail} for p in exc.problems]
    blocking = [p for p in exc.problems if p.reason in NOT_ALLOWED]
    if blocking:
        return Conflict(blocking[0].reason, str(exc), details)
    return Unprocessable(exc.problems[0].reason if len(exc.problems) == 1 else "invalid_request", str(exc), details)


def transact(request: Request, fn: Callable[[Tx], T]) -> T:
    try:
        return runtime(request).transaction(lambda uow: fn(Tx.of_uow(uow)))
    except QuotaDomainError as exc:
        raise problems_error(exc) from None
    except IdReused as exc:
        raise Conflict(exc.reason, str(exc), [{"field": f} for f in exc.fields] or None) from None
    except NotKnown as exc:
        raise NotFound(exc.reason, str(exc)) from None


def read(request: Request, fn: Callable[..., T]) -> T:
    """``fn(session)`` in one snapshot (Database.read_snapshot): a view's queries all see the same moment (a
    pool's lots and its reservations, an allocation and its lots), and on SQLite a read does not keep writers out."""
    try:
        with runtime(request).db.read_snapshot() as session:
            return fn(session)
    except QuotaDomainError as exc:
        raise problems_error(exc) from None


def known_county(session, county_code: str) -> None:
    """A county's figures or records are asked for: 422 for a malformed code, 404 for a county nothing is known of
    (no policy set, nothing released, requested or run), whose zeros would read as an empty pool."""
    if (p := county_code_problem(county_code)) is not None:
        raise QuotaDomainError([p])
    if not county_known(session, county_code):
        raise NotFound("county_unknown", f"nothing is known of county {county_code!r} (no policy set, nothing "
                                         f"released, requested or allocated)")
