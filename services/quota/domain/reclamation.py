"""增减挂钩 reclamation projects: reclaimed rural construction land is registered first and enters the
pool as a LAND lot only when accepted (验收), and only once."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

from shared.amounts import AmountError, format_amount, parse_amount
from services.quota.domain.assets import ASSETS
from services.quota.domain.identifiers import county_code_problem, township_code_problem
from services.quota.domain.lots import Lot, SourceKind, lot_id_for_reclamation, new_lot
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.problems import Problem, QuotaDomainError
from services.quota.domain.releases import Basis, date_problem

LAND_SCALE = ASSETS["LAND"].scale


class ReclamationState(StrEnum):
    REGISTERED = "registered"
    ACCEPTED = "accepted"


@dataclass(frozen=True)
class ReclamationProject:
    project_id: str
    county_code: str
    township_code: str
    area: int  # registered (planned) area, 0.0001 亩 units
    registered_on: date
    state: ReclamationState = ReclamationState.REGISTERED
    accepted_on: date | None = None
    accepted_area: int | None = None  # the area the acceptance certifies; this is what enters the pool


def register_reclamation(
    project_id: str, county_code: str, township_code: str, area: str | int, registered_on: date
) -> ReclamationProject:
    problems: list[Problem] = []
    if not project_id:
        problems.append(Problem("project_id_missing", "project_id"))
    for p in (county_code_problem(county_code), township_code_problem(township_code, county_code)):
        if p is not None:
            problems.append(p)
    units = 0
    try:
        units = parse_amount(area, LAND_SCALE)
    except AmountError as e:
        problems.append(Problem(e.reason, "area", str(e)))
    if problems:
        raise QuotaDomainError(problems)
    return ReclamationProject(project_id, county_code, township_code, units, registered_on)


@dataclass(frozen=True)
class ReclamationAcceptance:
    project: ReclamationProject
    lot: Lot | None  # None when nothing changed
    changed: bool
    reason: str


def accept_reclamation(
    project: ReclamationProject, accepted_on: date, policy: PoolPolicy, accepted_area: int | None = None,
    today: date | None = None,
) -> ReclamationAcceptance:
    """First acceptance makes the lot; a repeated acceptance changes nothing (the land is already in). One naming
    another area than the accepted one (a correction) is refused, ``reclamation_already_accepted``: the lot is in
    the pool, perhaps allocated, and a silent answer would let the caller think the correction was made."""
    if project.state is ReclamationState.ACCEPTED:
        if accepted_area is not None and accepted_area != project.accepted_area:
            raise QuotaDomainError([Problem(
                "reclamation_already_accepted", "accepted_area",
                f"{project.project_id} was accepted with {format_amount(project.accepted_area or 0, LAND_SCALE)} 亩; "
                f"an accepted area is not changed afterwards")])
        return ReclamationAcceptance(project, None, False, "already_accepted")
    if project.county_code != policy.county_code:
        raise ValueError("the project belongs to another county's pool")
    problem = date_problem(accepted_on, "accepted_on", today)  # the lot's date (a registration may come later)
    if problem is not None:
        raise QuotaDomainError([problem])
    area = project.area if accepted_area is None else accepted_area
    if not 0 < area <= project.area:
        raise QuotaDomainError([Problem("accepted_area_out_of_range", "accepted_area",
                                        "accepted area is positive and at most the registered area")])
    accepted = replace(project, state=ReclamationState.ACCEPTED, accepted_on=accepted_on, accepted_area=area)
    lot = new_lot(
        lot_id=lot_id_for_reclamation(project.project_id),
        county_code=project.county_code,
        asset="LAND",
        amount=area,
        source_kind=SourceKind.RECLAMATION,
        source_ref=project.project_id,
        township_code=project.township_code,
        dated=accepted_on,
        basis=Basis.FREE,
        buyback_price_fen_per_unit=None,
        origin_id=project.project_id,
        policy=policy,
        earns_compensation=False,
    )
    return ReclamationAcceptance(accepted, lot, True, "accepted")
