"""Admission of a new industrial project into a park or cluster (seed 二.2 and 四).

Comparisons are exact in integers: with land in 0.0001 亩 and money in fen,
'investment per 亩 >= threshold' is ``investment_fen * 10000 >= threshold_fen_per_mu * land_units``.
Every failed rule is returned, not only the first. Figures shown beside a threshold are floored to the
fen (see exact.py) so a failing figure never displays as reaching its threshold.

Industry codes (GB/T 4754) are written with their door letter or without it ('C2614' and '2614' are the
same industry: each two-digit division belongs to one door), in the register, in applications and in the
policy's prefixes alike; a prefix matches a code whichever way either is written ('C26', '26' and 'C' all
cover '2614').
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping

from pydantic import Field, field_validator
from shared.amounts import format_amount

from ._base import FrozenModel
from .canonical import content_hash
from .credit_code import require_credit_code
from .enterprise import PARK_ID
from .exact import floor_places

LAND_PER_MU = 10**4  # land units (0.0001 亩) in one 亩
_INDUSTRY_PREFIX = re.compile(r"^[A-T]?[0-9]{0,4}$")  # ASCII digits: \d takes full-width ones too
_INDUSTRY_CODE = re.compile(r"^[A-T]([0-9]{2,4})?$|^[0-9]{2,4}$")  # as the register takes it (enterprise.py)
# A project's park becomes the settlement party park:<park_id> of what its quota earns (QuotaAllocated.park_id), and
# settlement names parties by codes only (services/settlement/domain/parties.py): a project admitted into '高新区' or
# 'P 01' had every allocation dead-lettered there (invalid_party_code), its proceeds never settled

# GB/T 4754-2017: the door (门类) of each division (大类, the first two digits)
_DOOR_OF_DIVISION = {f"{d:02d}": door for door, first, last in (
    ("A", 1, 5), ("B", 6, 12), ("C", 13, 43), ("D", 44, 46), ("E", 47, 50), ("F", 51, 52), ("G", 53, 60),
    ("H", 61, 62), ("I", 63, 65), ("J", 66, 69), ("K", 70, 70), ("L", 71, 72), ("M", 73, 75), ("N", 76, 79),
    ("O", 80, 82), ("P", 83, 83), ("Q", 84, 85), ("R", 86, 90), ("S", 91, 96), ("T", 97, 97)) for d in range(first, last + 1)}


def _industry_parts(code: str) -> tuple[str | None, str]:
    """(door letter, digits) of a code or prefix; the door of a letterless one from its division, if known."""
    door = code[:1] if code[:1].isalpha() else None
    digits = code[1:] if door else code
    if door is None and len(digits) >= 2:
        door = _DOOR_OF_DIVISION.get(digits[:2])
    return door, digits


def industry_prefix_matches(industry_code: str, prefix: str) -> bool:
    """Whether ``prefix`` covers ``industry_code``, each written with or without its door letter."""
    code_door, code_digits = _industry_parts(industry_code)
    door, digits = _industry_parts(prefix)
    return (door is None or door == code_door) and code_digits.startswith(digits)


def _specificity(prefix: str) -> tuple[int, bool, str]:
    """The most specific of matching prefixes wins: more digits, then one naming its door (then the text, so
    the choice never depends on the order of the policy's keys)."""
    return len(_industry_parts(prefix)[1]), prefix[:1].isalpha(), prefix


class IndustryThresholds(FrozenModel):
    investment_fen_per_mu: int = Field(gt=0)
    tax_fen_per_mu: int = Field(ge=0)


class AdmissionPolicy(FrozenModel):
    investment_fen_per_mu: int = Field(default=250_000_000, gt=0)  # 250 万元 per 亩
    tax_fen_per_mu: int = Field(default=15_000_000, ge=0)  # 15 万元 per 亩 per year
    # industry code prefix -> thresholds; the longest matching prefix wins ('C26' covers 'C2614')
    industry_overrides: dict[str, IndustryThresholds] = Field(default_factory=dict)
    refused_industry_prefixes: tuple[str, ...] = ()
    refuse_two_high: bool = True  # 两高 projects are refused (seed 四)
    refuse_listed: bool = True  # applicants on safety/environment lists are refused (seed 四)
    require_park_or_cluster: bool = True  # new projects all go into parks and clusters (seed 四)

    @field_validator("industry_overrides")
    @classmethod
    def _override_keys(cls, v: dict[str, IndustryThresholds]) -> dict[str, IndustryThresholds]:
        for k in v:
            if not k or not _INDUSTRY_PREFIX.match(k):
                raise ValueError(f"override key {k!r} is not an industry code prefix")
        return v

    @field_validator("refused_industry_prefixes")
    @classmethod
    def _refused_keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for k in v:
            if not k or not _INDUSTRY_PREFIX.match(k):
                raise ValueError(f"{k!r} is not an industry code prefix")
        return v

    def thresholds_for(self, industry_code: str) -> tuple[int, int, str | None]:
        """(investment fen per 亩, tax fen per 亩, override prefix used or None)."""
        matches = [k for k in self.industry_overrides if industry_prefix_matches(industry_code, k)]
        if not matches:
            return self.investment_fen_per_mu, self.tax_fen_per_mu, None
        best = max(matches, key=_specificity)
        o = self.industry_overrides[best]
        return o.investment_fen_per_mu, o.tax_fen_per_mu, best

    def content_hash(self) -> str:
        return content_hash(self)


@dataclass(frozen=True)
class ProjectApplication:
    id: str
    applicant_credit_code: str
    park_id: str | None
    in_park_or_cluster: bool
    land: int  # 0.0001 亩, > 0
    investment: int  # fixed-asset investment, fen
    expected_yearly_tax: int  # fen per year
    energy_need: int  # 0.001 tce per year
    industry_code: str
    emission_needs: Mapping[str, int] = field(default_factory=dict)  # pollutant -> 0.0001 t per year
    two_high: bool = False
    on_safety_or_env_list: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("an application needs an id")
        require_credit_code(self.applicant_credit_code)
        for name in ("land", "investment", "expected_yearly_tax", "energy_need"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer of its unit")
        if self.land == 0:
            raise ValueError("land must be positive: per-亩 figures need it")
        for p, v in dict(self.emission_needs).items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"emission need of {p} must be a non-negative integer")
        object.__setattr__(self, "emission_needs", dict(sorted(dict(self.emission_needs).items())))
        for name in ("in_park_or_cluster", "two_high", "on_safety_or_env_list"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool")
        if self.park_id is not None and (not isinstance(self.park_id, str) or not PARK_ID.match(self.park_id)):
            raise ValueError(f"park id {self.park_id!r} is not a park code (letters, digits, _ . -)")
        if not isinstance(self.industry_code, str) or not self.industry_code:
            raise ValueError("an application needs an industry code")
        if not _INDUSTRY_CODE.match(self.industry_code):
            raise ValueError(f"industry code {self.industry_code!r} is not a GB/T 4754 code")


@dataclass(frozen=True)
class RuleFailure:
    code: str  # machine-readable
    message: str
    figure: str | None = None  # decimal string, in ``unit``
    threshold: str | None = None
    unit: str | None = None


@dataclass(frozen=True)
class AdmissionResult:
    application_id: str
    admitted: bool
    failures: tuple[RuleFailure, ...]
    investment_per_mu: str  # 元/亩, floored to the fen
    tax_per_mu: str  # 元/亩/年, floored to the fen
    investment_threshold_per_mu: str  # 元/亩
    tax_threshold_per_mu: str  # 元/亩/年
    override_prefix: str | None  # industry override used, if any
    policy_hash: str


def _per_mu_yuan(amount_fen: int, land_units: int) -> str:
    # fen * 10000 / land_units is fen per 亩; /100 -> 元, floored at 2 decimals
    return str(floor_places(Fraction(amount_fen * LAND_PER_MU, land_units * 100), 2))


def check_admission(app: ProjectApplication, policy: AdmissionPolicy) -> AdmissionResult:
    failures: list[RuleFailure] = []
    if policy.require_park_or_cluster and not app.in_park_or_cluster:
        failures.append(RuleFailure("not_in_park_or_cluster", "new projects go into a park or cluster"))
    if policy.refuse_two_high and app.two_high:
        failures.append(RuleFailure("two_high_project", "两高 (high energy, high emission) projects are refused"))
    if policy.refuse_listed and app.on_safety_or_env_list:
        failures.append(
            RuleFailure("applicant_on_safety_or_env_list", "the applicant is on a safety or environment list")
        )
    refused = [p for p in policy.refused_industry_prefixes if industry_prefix_matches(app.industry_code, p)]
    if refused:
        failures.append(
            RuleFailure("industry_refused", f"industry {app.industry_code} is refused (prefix {max(refused, key=_specificity)})")
        )
    inv_threshold, tax_threshold, prefix = policy.thresholds_for(app.industry_code)
    inv_figure = _per_mu_yuan(app.investment, app.land)
    tax_figure = _per_mu_yuan(app.expected_yearly_tax, app.land)
    inv_text, tax_text = format_amount(inv_threshold, 2), format_amount(tax_threshold, 2)
    if app.investment * LAND_PER_MU < inv_threshold * app.land:
        failures.append(
            RuleFailure(
                "investment_per_mu_below_threshold",
                f"fixed-asset investment per 亩 {inv_figure} 元 is below {inv_text} 元",
                inv_figure,
                inv_text,
                "元/亩",
            )
        )
    if app.expected_yearly_tax * LAND_PER_MU < tax_threshold * app.land:
        failures.append(
            RuleFailure(
                "tax_per_mu_below_threshold",
                f"expected tax per 亩 {tax_figure} 元 is below {tax_text} 元",
                tax_figure,
                tax_text,
                "元/亩/年",
            )
        )
    return AdmissionResult(
        application_id=app.id,
        admitted=not failures,
        failures=tuple(failures),
        investment_per_mu=inv_figure,
        tax_per_mu=tax_figure,
        investment_threshold_per_mu=inv_text,
        tax_threshold_per_mu=tax_text,
        override_prefix=prefix,
        policy_hash=policy.content_hash(),
    )
