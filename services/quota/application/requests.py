"""Quota requests of admitted projects: opening, cancelling, and the approvals that confirm them."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any, Callable, Mapping

from services.quota.application.intake import IdReused, NotKnown, body_digest, request_differences, same_body
from services.quota.application.request_events import requested
from services.quota.application.saga import carry_out, unless_withdrawn
from services.quota.application.tx import Tx
from services.quota.domain.assets import ApprovalKind
from services.quota.domain.identifiers import county_code_problem
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.releases import date_problem
from services.quota.domain.requests import (
    QuotaRequest, RequestTransition, cancel, on_approval, open_request, withdraw,
)
from services.quota.storage import request_store
from services.quota.storage.counties import drop_unused, lock_counties, lock_county
from shared.china_time import cst_date

# Problems that mean "not allowed now" (409) rather than "malformed" (422).
NOT_ALLOWED = frozenset({"project_unknown", "project_not_admitted", "project_in_other_county", "county_not_served",
                         "reclamation_already_accepted", "land_not_allowed_for_class"})


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
        if not same_body(existing.digest, body) and (differ := request_differences(
                existing, request_store.request_lines_of(tx.session, request_id), body)):
            raise IdReused("request", request_id, differ)
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
    if (problem := date_problem(granted_on, "granted_on", cst_date(tx.now))) is not None:
        # granted next year, or in 0024: such an approval confirmed a reservation into an allocation
        raise QuotaDomainError([problem])

    def record() -> None:
        request_store.record_approval(tx.session, project_id, kind, document_ref, granted_on, tx.now)

    return _for_open_requests(tx, project_id, record, lambda req: unless_withdrawn(tx, req, on_approval(req, kind, tx.now)))


def admission_withdrawn(tx: Tx, project_id: str, record: Callable[[], object]) -> list[RequestTransition]:
    """A later evaluation no longer admits the project: ``record`` it, and close every open request of the
    project (rejected, or cancelled with its reservation voided; reason project_not_admitted)."""
    return _for_open_requests(tx, project_id, record, lambda req: withdraw(req, tx.now))


def _for_open_requests(tx: Tx, project_id: str, record: Callable[[], object],
                       step: Callable[[QuotaRequest], RequestTransition]) -> list[RequestTransition]:
    """``record`` a fact of the project, then ``step`` each of its open requests, all under the locks of the
    counties they live in, taken (in code order) before anything of the project is read or written: a request
    opening meanwhile (it reads the project's facts under its county's lock) waits and sees the fact, or was
    committed first and is stepped here."""
    locked, created = lock_counties(tx.session, _counties_of_project(tx, project_id), tx.now)
    record()
    waiting = request_store.open_requests_of_project(tx.session, project_id)  # read again under the locks
    out = []
    for county in sorted({r.county_code for r in waiting}):
        # a county not locked above: a request opened since in a county the project moved to (rare, out of order)
        cp = locked[county] if county in locked else lock_county(tx.session, county, tx.now)
        out += [carry_out(tx, cp.policy, step(req)) for req in waiting if req.county_code == county]
    drop_unused(tx.session, created - {r.county_code for r in waiting})  # a lock on a county row made only for it
    return out


def _counties_of_project(tx: Tx, project_id: str) -> set[str]:
    """Where the project's requests may live: its evaluated county and those of its open requests.

    A project not evaluated yet (an approval before its ProjectEvaluated) has no county to lock, and its first
    evaluation may commit, and a request open in its county, while this transaction is still open: neither
    would see the other's fact. So take the project's lock, which every evaluation holds while it writes the
    row, and look again: an evaluation in flight is waited for (and its county locked below); one that comes
    later waits for this transaction, so a request can open only after it commits, and sees the fact."""
    row = request_store.project_row(tx.session, project_id)
    if row is None:
        request_store.lock_project(tx.session, project_id)
        row = request_store.project_row(tx.session, project_id)
    counties = {r.county_code for r in request_store.open_requests_of_project(tx.session, project_id)}
    return counties | ({row.county_code} if row is not None else set())
