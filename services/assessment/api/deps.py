"""What every assessment route needs: scopes, the runtime, who is acting, now, a checked credit code."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, TypeVar

from fastapi import Request
from sqlalchemy.exc import IntegrityError

from services.assessment.domain.credit_code import credit_code_problem, normalize_credit_code
from services.assessment.events import Actor
from shared.db import unique_violation
from shared.auth import Principal, require
from shared.errors import Conflict, Unprocessable
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

# finance:read is the settlement API's (shared/auth.py): the register and every department's figures need assessment:read
READ = require("assessment:read", "assessment:write")
WRITE = require("assessment:write")
# What the county itself decides, not a department holding assessment:write: its evaluation policy and its decision
# on a recommendation (admin holds it; grant it to the county government's principal)
COUNTY = require("assessment:admin")
T = TypeVar("T")


def runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def actor(p: Principal) -> Actor:
    return Actor(principal=p.id, via="api")


def now() -> datetime:
    return datetime.now(timezone.utc)


def checked_code(text: str, field: str = "credit_code") -> str:
    code = normalize_credit_code(text)
    problem = credit_code_problem(code)
    if problem:
        raise Unprocessable("invalid_credit_code", f"{field}: {problem.message}", {"field": field, "problem": problem.reason})
    return code


def write(request: Request, fn: Callable[[UnitOfWork], T], *, conflict: str = "concurrent_change") -> T:
    """One unit of work; a unique-key race with another writer is a 409, not a 500."""
    try:
        return runtime(request).transaction(fn)
    except Exception as exc:
        # rows inserted through shared.bulk fail with the driver's own error, not SQLAlchemy's IntegrityError
        if not (isinstance(exc, IntegrityError) or unique_violation(exc)):
            raise
        raise Conflict(conflict, "another request changed the same thing at the same time; read it and retry",
                       {"error": type(getattr(exc, "orig", exc)).__name__}) from None


def read(request: Request, fn: Callable) -> T:
    # one moment for all its statements, and no write lock on SQLite (a 100,000-enterprise evaluation holds it ~10 s)
    with runtime(request).db.read_snapshot() as s:
        return fn(s)
