"""Asset codes, their family, unit and scale (digits of the smallest unit), and the approval
that confirms a reservation of each family."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.quota.domain.problems import Problem


class Family(StrEnum):
    LAND = "land"
    ENERGY = "energy"
    EMISSION = "emission"


class ApprovalKind(StrEnum):
    ENVIRONMENTAL_IMPACT = "environmental_impact"  # 环评
    ENERGY_REVIEW = "energy_review"  # 能评 (节能审查)
    LAND_USE = "land_use"  # 用地审批


@dataclass(frozen=True)
class Asset:
    code: str
    family: Family
    unit: str  # the display unit prices and API amounts are expressed in
    scale: int  # smallest unit = 10**-scale display units


ASSETS: dict[str, Asset] = {
    a.code: a
    for a in (
        Asset("LAND", Family.LAND, "亩", 4),
        Asset("ENERGY", Family.ENERGY, "tce", 3),
        Asset("COD", Family.EMISSION, "t", 4),
        Asset("NH3N", Family.EMISSION, "t", 4),
        Asset("SO2", Family.EMISSION, "t", 4),
        Asset("NOX", Family.EMISSION, "t", 4),
        Asset("VOCS", Family.EMISSION, "t", 4),
    )
}
EMISSION_ASSETS = frozenset(c for c, a in ASSETS.items() if a.family is Family.EMISSION)

MONEY_SCALE = 2  # fen

# No quota, no approval: the approval that confirms (allocates) a reservation of each family.
CONFIRMING_APPROVAL: dict[Family, ApprovalKind] = {
    Family.EMISSION: ApprovalKind.ENVIRONMENTAL_IMPACT,
    Family.ENERGY: ApprovalKind.ENERGY_REVIEW,
    Family.LAND: ApprovalKind.LAND_USE,
}


def asset_problem(code: object, field: str = "asset") -> Problem | None:
    if not isinstance(code, str) or code not in ASSETS:
        return Problem("unknown_asset", field, f"{code!r} is not one of {sorted(ASSETS)}")
    return None


def confirming_approval(asset_code: str) -> ApprovalKind:
    return CONFIRMING_APPROVAL[ASSETS[asset_code].family]
