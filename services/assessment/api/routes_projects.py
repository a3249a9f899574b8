"""Admission of new projects into parks and clusters (ProjectEvaluated)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from services.assessment.api.deps import READ, WRITE, actor, checked_code, now, read, write
from services.assessment.api.schemas import ProjectIn, ProjectOut
from services.assessment.domain.units import ENERGY_SCALE, LAND_SCALE, MONEY_SCALE
from services.assessment.domain.enterprise import EMISSIONS_SCALE
from services.assessment.projects import admit, get_project, stored_answer
from services.assessment.storage.rows import loads, utc
from shared.amounts import AmountError, format_amount, parse_amount
from shared.auth import Principal
from shared.china_time import cst_date
from shared.errors import Conflict, Unprocessable

router = APIRouter(prefix="/v1/projects", tags=["projects"])
SCALES = {"land": LAND_SCALE, "investment": MONEY_SCALE, "expected_yearly_tax": MONEY_SCALE, "energy_need": ENERGY_SCALE}


def _amount(field: str, text: str, scale: int, allow_zero: bool) -> int:
    try:
        return parse_amount(text, scale, allow_zero=allow_zero)
    except AmountError as exc:
        raise Unprocessable(exc.reason, f"{field}: {exc}", {"field": field}) from None


def _units(body: ProjectIn) -> dict:
    out: dict = {name: _amount(name, getattr(body, name), scale, name != "land") for name, scale in SCALES.items()}
    out["emission_needs"] = {p: _amount(f"emission_needs.{p}", v, EMISSIONS_SCALE, True)
                             for p, v in sorted(body.emission_needs.items())}
    return out


def project_out(r) -> ProjectOut:
    res = loads(r.result)
    app = loads(r.application)
    shown = {k: format_amount(v, SCALES[k]) if k in SCALES else v for k, v in app.items()}
    shown["emission_needs"] = {p: format_amount(v, EMISSIONS_SCALE) for p, v in app["emission_needs"].items()}
    return ProjectOut(project_id=r.project_id, county_code=r.county_code, year=r.year,
                      applicant_credit_code=r.applicant_credit_code, admitted=r.admitted, failures=res["failures"],
                      investment_per_mu=res["investment_per_mu"], tax_per_mu=res["tax_per_mu"],
                      investment_threshold_per_mu=res["investment_threshold_per_mu"],
                      tax_threshold_per_mu=res["tax_threshold_per_mu"], override_prefix=res["override_prefix"],
                      project_class=res["project_class"], listed_in_register=res["listed_in_register"],
                      land_quota_allowed=res.get("land_quota_allowed", True),
                      policy_version=r.policy_version, policy_hash=r.policy_hash, application=shown,
                      evaluated_by=r.evaluated_by, evaluated_at=utc(r.evaluated_at))


@router.post("", response_model=ProjectOut, status_code=201,
             responses={200: {"description": "the same request again: the stored answer"},
                        409: {"description": "project_id_reused"}},
             summary="Check a project against the admission thresholds; the answer lists every failed rule")
def post_project(body: ProjectIn, request: Request, response: Response, p: Principal = Depends(WRITE)):
    code = checked_code(body.applicant_credit_code, "applicant_credit_code")
    at = now()
    year = body.year or cst_date(at).year  # the county's year: 1 January begins at 00:00 in China
    application = dict(
        _units(body), id=body.project_id, applicant_credit_code=code, park_id=body.park_id,
        in_park_or_cluster=body.in_park_or_cluster if body.in_park_or_cluster is not None else body.park_id is not None,
        industry_code=body.industry_code.upper(), two_high=body.two_high, on_safety_or_env_list=body.on_safety_or_env_list)
    try:
        row, created = write(request, lambda uow: admit(uow.session, uow.outbox, application, body.county_code, year,
                                                        actor(p), at, body.year is not None), conflict="project_id_reused")
    except Conflict:
        # the same request sent twice at once (a client's retry while the first was in flight): the one that lost
        # the unique-key race answered 409 project_id_reused ("another request; use a new id") instead of the
        # answer the first stored; a request that differs stays a 409
        row = read(request, lambda s: stored_answer(s, application, body.county_code, year, body.year is not None))
        if row is None:
            raise
        created = False
    if not created:
        response.status_code = 200
    return project_out(row)


@router.get("/{project_id}", response_model=ProjectOut, responses={404: {"description": "no such project"}})
def get_one(project_id: str, request: Request, _: Principal = Depends(READ)):
    return read(request, lambda s: project_out(get_project(s, project_id)))
