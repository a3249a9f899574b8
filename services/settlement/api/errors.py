"""Domain refusals as HTTP answers, in the shared error shape. A refusal that is about the state of things (a
closed period, an overlapping agreement, an id already taken) is 409; one about the input itself is 422."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.settlement.domain import SettlementDomainError

CONFLICTS = frozenset({
    "overlapping_agreements", "agreement_exists", "version_conflict", "version_order", "effective_in_closed_period",
    "receipt_id_conflict", "report_id_conflict", "already_corrected", "correction_before_original",
    "period_not_ended", "previous_period_not_closed", "period_already_closed", "already_finalized",
    "content_changed", "policy_missing", "as_of_before_last_cutoff", "agreement_start_changed",
})
NOT_FOUND = frozenset({"agreement_not_found"})


def status_of(reason: str) -> int:
    if reason in NOT_FOUND:
        return 404
    return 409 if reason in CONFLICTS else 422


def install(app: FastAPI) -> None:
    @app.exception_handler(SettlementDomainError)
    async def _domain_error(_: Request, exc: SettlementDomainError):
        return JSONResponse({"reason": exc.reason, "message": str(exc)}, status_code=status_of(exc.reason))
