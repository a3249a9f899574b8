"""Quota requests of admitted projects: opening, cancelling, and the approvals that confirm them."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any, Mapping

from services.quota.application.intake import IdReused, NotKnown, body_digest
from services.quota.application.request_events import requested
from services.quota.application.saga import carry_out
from services.quota.application.tx import Tx
from services.quota.domain.assets import ApprovalKind
from services.quota.domain.identifiers import county_code_problem
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.requests import QuotaRequest, RequestTransition, cancel, on_approval, open_request
from services.quota.storage import request_store
from services.quota.storage.counties import lock_county

# Problems that mean "not allowed now" (409) rather than "malformed" (422).
NOT_ALLOWED = frozenset({"project_unknown", "project_not_admitted", "project_in_other_county", "county_not_served"})


def open_quota_request(tx: Tx, body: Mapping[str, Any], by: str) -> tuple[QuotaRequest, bool]:
    """body: {request_id, project_id, county_code, lines: [{asset, amount, approval_kind?}]}. Idempotent by
    request id. Raises QuotaDomainError with every problem, or IdReused."""
    county = body.get("county_code")
    if (p := county_code_problem(county)) is not None:
        raise QuotaDomainError([p])
    cp = lock_county(tx.session, county, tx.now)
    digest = body_digest(body)
    request_id = str(body.get("request_id") or "")
    existing = request_store.request_row(tx.session, request_id)
    if existing is not None:
        if existing.digest != digest:
            raise IdReused("request", request_id)
        return request_store.load_request(tx.session, request_id), False
    project_id = str(body.get("project_id") or "")
    row = request_store.project_row(tx.session, project_id)
    registry = {project_id: request_store.project_facts(row)} if row is not None else {}
    req = open_request(request_id, project_id, county, list(body.get("lines") or []), tx.now, registry, cp.policy)
    # approvals granted before the request (e.g. 环评 first) count for it
    req = replace(req, approvals=request_store.approvals_of(tx.session, project_id) & req.needed_approvals)
    request_store.insert_request(tx.session, req, park_id=row.park_id if row is not None else None, digest=digest, by=by)
    tx.emit(requested(req), req.request_id)
    return req, True


def cancel_request(tx: Tx, request_id: str, reason: str) -> RequestTransition:
    row = request_store.request_row(tx.session, request_id)
    if row is None:
        raise NotKnown("request_not_found", f"no quota request {request_id!r}")
    cp = lock_county(tx.session, row.county_code, tx.now)
    req = request_store.load_request(tx.session, request_id)
    return carry_out(tx, cp.policy, cancel(req, tx.now, reason or "cancelled"))


def approval_granted(tx: Tx, project_id: str, kind: str, document_ref: str, granted_on: date) -> list[RequestTransition]:
    """Remember the approval for the project, and let it confirm every open request of the project (an
    approval before the ledger's answer is remembered by the request and allocates once reserved)."""
    kind = ApprovalKind(kind).value
    request_store.record_approval(tx.session, project_id, kind, document_ref, granted_on, tx.now)
    out = []
    waiting = request_store.open_requests_of_project(tx.session, project_id)
    for county in sorted({r.county_code for r in waiting}):
        cp = lock_county(tx.session, county, tx.now)
        for req in waiting:
            if req.county_code == county:
                fresh = request_store.load_request(tx.session, req.request_id)  # read again under the lock
                out.append(carry_out(tx, cp.policy, on_approval(fresh, kind, tx.now)))
    return out
