"""Taking quota in over HTTP: county policy, department releases, reclamation projects, approvals."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from shared.amounts import parse_amount
from shared.auth import Principal, principal, require, require_each
from shared.errors import NotFound
from services.quota.api import schemas as s
from services.quota.api.common import POLICY_ADMIN, READ, known_county, read, transact
from services.quota.api.views import policy_out, reclamation_out, release_out
from services.quota.application import intake, requests
from services.quota.application.policy_codec import policy_from_doc, policy_to_doc
from services.quota.domain.assets import MONEY_SCALE
from services.quota.domain.identifiers import county_code_problem
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.problems import Problem, QuotaDomainError
from services.quota.intake_scopes import RECLAMATION_SCOPE, approval_scope, department_of, release_scope
from services.quota.storage import intake_store
from services.quota.storage.counties import read_policy, save_policy

router = APIRouter(prefix="/v1", tags=["intake"])


def _county_or_422(county_code: str) -> None:
    if (p := county_code_problem(county_code)) is not None:
        raise QuotaDomainError([p])


@router.get("/counties/{county_code}/policy", response_model=s.PolicyOut, summary="A county's pool policy")
def get_policy(county_code: str, request: Request, _: Principal = Depends(READ)):
    def policy(session):
        known_county(session, county_code)  # a typo is 404/422, not a policy in force (the defaults, version 0)
        return policy_out(read_policy(session, county_code))

    return read(request, policy)


@router.put("/counties/{county_code}/policy", response_model=s.PolicyOut,
            summary="Replace a county's pool policy (fields left out take the defaults); versioned")
def put_policy(county_code: str, body: s.PolicyIn, request: Request, who: Principal = Depends(POLICY_ADMIN)):
    def change(tx):
        _county_or_422(county_code)
        doc = body.model_dump(exclude_none=True)
        if "prices" in doc:
            doc["price_fen_per_unit"] = {a: parse_amount(p, MONEY_SCALE, allow_zero=True) for a, p in doc.pop("prices").items()}
        if "priority" in doc:
            doc["priority"] = {**policy_to_doc(PoolPolicy(county_code))["priority"], **doc["priority"]}
        try:
            policy = policy_from_doc(county_code, doc)
        except ValueError as exc:
            raise QuotaDomainError([Problem("policy_invalid", None, str(exc))]) from None
        # timeouts the ledger or a date cannot carry: refused here, not by every round (500) or request (422) after
        if limits := policy.limit_problems():
            raise QuotaDomainError([Problem("policy_invalid", None, "; ".join(limits))])
        return policy_out(save_policy(tx.session, policy, who.id, tx.now))

    return transact(request, change)


@router.post("/releases", response_model=s.ReleaseOut, status_code=201,
             responses={200: {"description": "the same release again: nothing changed"},
                        403: {"description": "the caller may not publish this asset"},
                        409: {"description": "release id reused with another body"}},
             summary="A department releases quota freed by an enterprise (收储)")
def post_release(body: s.ReleaseIn, request: Request, response: Response, who: Principal = Depends(principal)):
    require_each(who, [release_scope(body.asset)])
    data = body.model_dump(mode="json")
    out = transact(request, lambda tx: intake.submit_release(tx, data, department=department_of(who.sources),
                                                             submitted_by=who.id))
    if not out.created:
        response.status_code = 200
    return read(request, lambda session: release_out(intake_store.release_row(session, out.release_id)))


@router.get("/releases/{release_id}", response_model=s.ReleaseOut)
def get_release(release_id: str, request: Request, _: Principal = Depends(READ)):
    row = read(request, lambda session: intake_store.release_row(session, release_id))
    if row is None:
        raise NotFound("release_not_found", f"no release {release_id!r}")
    return release_out(row)


@router.post("/reclamation-projects", response_model=s.ReclamationOut, status_code=201,
             summary="Register a 增减挂钩 reclamation project; its land enters the pool on acceptance")
def register_reclamation(body: s.ReclamationIn, request: Request, response: Response,
                         who: Principal = Depends(require(RECLAMATION_SCOPE, "quota:write"))):
    data = body.model_dump(mode="json", exclude_none=True)
    row, created = transact(request, lambda tx: intake.register_reclamation_project(tx, data, who.id))
    if not created:
        response.status_code = 200
    return reclamation_out(row)


@router.post("/reclamation-projects/{project_id}/acceptance", response_model=s.ReclamationOut,
             summary="验收 accepted: the project's land quota enters the pool (once)")
def accept_reclamation(project_id: str, body: s.ReclamationAcceptanceIn, request: Request,
                       _: Principal = Depends(require(RECLAMATION_SCOPE))):
    transact(request, lambda tx: intake.accept_reclamation_project(tx, project_id, body.accepted_on, body.accepted_area,
                                                                     body.document_ref))
    return read(request, lambda session: reclamation_out(intake_store.reclamation_row(session, project_id)))


@router.get("/reclamation-projects/{project_id}", response_model=s.ReclamationOut)
def get_reclamation(project_id: str, request: Request, _: Principal = Depends(READ)):
    row = read(request, lambda session: intake_store.reclamation_row(session, project_id))
    if row is None:
        raise NotFound("reclamation_project_unknown", f"no reclamation project {project_id!r}")
    return reclamation_out(row)


@router.post("/approvals", response_model=s.ApprovalOut,
             summary="环评 / 能评 / 用地 approval of a project: confirms (allocates) its reservation")
def post_approval(body: s.ApprovalIn, request: Request, who: Principal = Depends(principal)):
    require_each(who, [approval_scope(body.kind)])
    done = transact(request, lambda tx: requests.approval_granted(tx, body.project_id, body.kind, body.document_ref,
                                                                  body.granted_on))
    return s.ApprovalOut(project_id=body.project_id, kind=body.kind,
                         requests=[{"request_id": t.request.request_id, "state": t.request.state.value,
                                    "outcome": t.reason} for t in done])

