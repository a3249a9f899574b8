"""Admission of a new project into a park or cluster, checked against the county-year policy; the answer
(every failed rule with its figure and threshold) is stored and published as ProjectEvaluated. Only
admitted projects may ask the quota service for quota.

A project id is an idempotency key: the same request again returns the stored answer; another request
under the same id is a 409 (a changed project is a new application with a new id)."""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.assessment.domain.admission import ProjectApplication, check_admission
from services.assessment.domain.policy import land_quota_allowed
from services.assessment.domain.units import LAND_SCALE
from services.assessment.evaluations import latest_result
from services.assessment.events import Actor, emit
from services.assessment.policies import ensure_policy
from services.assessment.storage.rows import dumps, loads
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import projects as P
from shared.amounts import format_amount
from shared.contracts.assessment import AdmissionFailure, ProjectEvaluated
from shared.errors import Conflict, NotFound, Unprocessable
from shared.outbox import Outbox

HAZARD_FLAGS = ("safety_hazard", "environmental_hazard")


def get_project(s: Session, project_id: str):
    r = s.execute(select(P).where(P.c.project_id == project_id)).first()
    if r is None:
        raise NotFound("project_not_found", f"no project {project_id!r}")
    return r


def request_digest(application: dict, county: str, year: int) -> str:
    return hashlib.sha256(dumps({"county": county, "year": year, "application": application}).encode()).hexdigest()


def _same_request(row, application: dict, county: str, year: int, year_given: bool) -> bool:
    """Whether ``row`` stored this very request. A request that left the year out took the county's year from the
    clock: sent again after New Year's midnight (China time) it is still the request stored under last year."""
    return row.request_digest == request_digest(application, county, year if year_given else row.year)


def stored_answer(s: Session, application: dict, county: str, year: int, year_given: bool = True):
    """The stored row of this very request (same id and body), or None."""
    r = s.execute(select(P).where(P.c.project_id == application["id"])).first()
    return r if r is not None and _same_request(r, application, county, year, year_given) else None


def admit(s: Session, outbox: Outbox, application: dict, county: str, year: int, actor: Actor, now: datetime,
          year_given: bool = True):
    """``application``: the ProjectApplication fields in integer units; ``year_given``: whether the caller named the
    year (else it is the county's year now). Returns (row, created)."""
    digest = request_digest(application, county, year)
    pid = application["id"]
    existing = s.execute(select(P).where(P.c.project_id == pid)).first()
    if existing is not None:
        if not _same_request(existing, application, county, year, year_given):
            raise Conflict("project_id_reused", f"project {pid} was evaluated with another request; use a new id")
        return existing, False
    listed = _listed_in_register(s, application["applicant_credit_code"])
    try:
        app = ProjectApplication(**dict(application, on_safety_or_env_list=application["on_safety_or_env_list"] or listed))
    except ValueError as exc:
        raise Unprocessable("invalid_project", str(exc)) from None
    stored = ensure_policy(s, outbox, county, year, actor, now)
    result = check_admission(app, stored.policy.admission)
    prior = latest_result(s, county, app.applicant_credit_code)
    answer = dict(asdict(result), failures=[asdict(f) for f in result.failures], admission_policy_hash=result.policy_hash,
                  policy_hash=stored.policy_hash, policy_version=stored.policy.version,
                  listed_in_register=listed, project_class=prior.class_label if prior is not None else None)
    answer["land_quota_allowed"] = land_quota_allowed(stored.policy, answer["project_class"])
    s.execute(P.insert().values(
        project_id=pid, county_code=county, year=year, applicant_credit_code=app.applicant_credit_code,
        request_digest=digest, application=dumps(application), admitted=result.admitted, result=dumps(answer),
        policy_version=stored.policy.version, policy_hash=stored.policy_hash, evaluated_by=actor.principal,
        evaluated_at=now))
    emit(s, outbox, actor, [(ProjectEvaluated(
        project_id=pid, applicant_credit_code=app.applicant_credit_code, county_code=county, park_id=app.park_id,
        admitted=result.admitted, failures=[AdmissionFailure(**asdict(f)) for f in result.failures],
        land=format_amount(app.land, LAND_SCALE), investment_per_mu=result.investment_per_mu,
        tax_per_mu=result.tax_per_mu, industry_code=app.industry_code, project_class=answer["project_class"],
        land_quota_allowed=answer["land_quota_allowed"], policy_hash=stored.policy_hash, year=year, policy_version=stored.policy.version), pid, f"project/{pid}")])
    return get_project(s, pid), True


def _listed_in_register(s: Session, credit_code: str) -> bool:
    """An applicant the register marks with a safety or environmental hazard is on the lists (seed 四)."""
    flags = s.execute(select(E.c.flags).where(E.c.credit_code == credit_code)).scalar()
    return flags is not None and any(f in loads(flags) for f in HAZARD_FLAGS)
