"""The events a request's transitions publish (shared/contracts/quota.py), built from the domain request."""
from __future__ import annotations

from shared.contracts.quota import (
    QuotaRequested, QuotaRequestExpired, QuotaRequestRejected, QuotaReservationCancelled,
    QuotaReservationExpired, QuotaReserved, RequestLineOut,
)
from shared.envelope import Event
from services.quota.application.formats import qty
from services.quota.domain.requests import QuotaRequest, RequestEvent


def lines_out(req: QuotaRequest) -> list[RequestLineOut]:
    return [RequestLineOut(asset=l.asset, amount=qty(l.asset, l.amount), approval_kind=l.approval_kind.value)
            for l in req.lines]


def requested(req: QuotaRequest) -> QuotaRequested:
    return QuotaRequested(request_id=req.request_id, project_id=req.project_id, county_code=req.county_code,
                          lines=lines_out(req))


def transition_event(kind: RequestEvent, req: QuotaRequest) -> Event:
    """Every request event but QuotaAllocated (that one needs the lots consumed: see allocation)."""
    ids = dict(request_id=req.request_id, project_id=req.project_id, county_code=req.county_code)
    if kind is RequestEvent.RESERVED:
        return QuotaReserved(**ids, lines=lines_out(req), expires_at=req.deadline)
    if kind is RequestEvent.REJECTED:
        return QuotaRequestRejected(**ids, reason=req.reason or "")
    if kind is RequestEvent.CANCELLED:
        return QuotaReservationCancelled(**ids, reason=req.reason or "")
    if kind is RequestEvent.RESERVATION_EXPIRED:
        return QuotaReservationExpired(**ids, reason=req.reason or "")
    if kind is RequestEvent.REQUEST_EXPIRED:
        return QuotaRequestExpired(**ids, reason=req.reason or "")
    raise ValueError(f"no plain event for {kind}")
