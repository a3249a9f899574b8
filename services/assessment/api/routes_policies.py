"""Assessment policies per county and year: the default, the current version, every old version, and a
new version (an AssessmentPolicyChanged event)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from services.assessment.api.deps import COUNTY, READ, actor, now, read, write
from services.assessment.api.schemas import PolicyOut, PolicyPut, PolicyPutOut
from services.assessment.policies import StoredPolicy, current_policy, default_for, list_versions, policy_version, put_policy
from shared.auth import Principal

router = APIRouter(prefix="/v1/policies", tags=["policies"])
County = Path(pattern=r"^[0-9]{6}$")
Year = Path(ge=1990, le=2200)


def policy_out(p: StoredPolicy) -> PolicyOut:
    return PolicyOut(county_code=p.policy.county, year=p.policy.year, version=p.policy.version, policy_hash=p.policy_hash,
                     stored=p.stored, created_by=p.created_by, created_at=p.created_at, note=p.note, policy=p.policy)


@router.get("/{county_code}/{year}", response_model=PolicyOut, summary="The current policy (the default until one is stored)")
def get_current(request: Request, county_code: str = County, year: int = Year, _: Principal = Depends(READ)):
    return read(request, lambda s: policy_out(current_policy(s, county_code, year)))


@router.get("/{county_code}/{year}/default", response_model=PolicyOut, summary="The shipped default policy")
def get_default(county_code: str = County, year: int = Year, _: Principal = Depends(READ)):
    return policy_out(default_for(county_code, year))


@router.get("/{county_code}/{year}/versions", response_model=list[PolicyOut], summary="Every version, oldest first")
def get_versions(request: Request, county_code: str = County, year: int = Year, _: Principal = Depends(READ)):
    return read(request, lambda s: [policy_out(p) for p in list_versions(s, county_code, year)])


@router.get("/{county_code}/{year}/versions/{version}", response_model=PolicyOut, responses={404: {"description": "no such version"}})
def get_version(request: Request, county_code: str = County, year: int = Year, version: int = Path(ge=1, le=2**31 - 1),
                _: Principal = Depends(READ)):
    return read(request, lambda s: policy_out(policy_version(s, county_code, year, version)))


@router.put("/{county_code}/{year}", response_model=PolicyPutOut,
            responses={409: {"description": "policy_version_conflict: version is not the current + 1"},
                       422: {"description": "policy_path_mismatch; pollutant_name_case, pollutant_name_variant: an "
                             "emission weight for a known pollutant spelled otherwise ('nox' for 'NOx'); pollutant_name_invalid: "
                             "an emission weight no figure can carry (a name other than ASCII letters, digits and '-', "
                             "such as '总磷'); "
                             "class_label_invalid: a band or exclusion label of more than 20 characters, blank or with "
                             "control characters; policy_number_out_of_range: a number with more than 12 decimals or "
                             "of 10^16 or more"}},
            summary="Store a new policy version (same content as the current one, in any order of its indicators and "
                    "groups: nothing changes)")
def put(body: PolicyPut, request: Request, county_code: str = County, year: int = Year, p: Principal = Depends(COUNTY)):
    stored, changed = write(request, lambda uow: put_policy(uow.session, uow.outbox, county_code, year, body.policy,
                                                            actor(p), now(), body.note),
                            conflict="policy_version_conflict")
    return PolicyPutOut(changed=changed, policy=policy_out(stored))
