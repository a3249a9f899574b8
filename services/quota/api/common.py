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
from services.quota.domain.problems import QuotaDomainError

T = TypeVar("T")

READ = require("quota:read", "quota:write", "finance:read")
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
        raise Conflict(exc.reason, str(exc)) from None
    except NotKnown as exc:
        raise NotFound(exc.reason, str(exc)) from None


def read(request: Request, fn: Callable[..., T]) -> T:
    with runtime(request).db.sessions() as session:
        return fn(session)
