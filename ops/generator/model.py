"""What the generator makes, in exact integer units (the quota and assessment domains' units):
land 0.0001 亩, money fen, energy 0.001 tce, electricity kWh, emissions 0.0001 t, employees persons."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

LAND_SCALE, MONEY_SCALE, ENERGY_SCALE, EMISSION_SCALE = 4, 2, 3, 4
EMISSION_ASSETS = ("COD", "NH3N", "SO2", "NOX", "VOCS")
ASSETS = ("LAND", "ENERGY", *EMISSION_ASSETS)
ASSET_SCALE = {"LAND": LAND_SCALE, "ENERGY": ENERGY_SCALE, **{a: EMISSION_SCALE for a in EMISSION_ASSETS}}
ASSET_UNIT = {"LAND": "亩", "ENERGY": "tce", **{a: "t" for a in EMISSION_ASSETS}}
# The assessment domain names pollutants as in the indicator files (rows.py: 'emissions.NH3-N').
ASSESSMENT_POLLUTANT = {"COD": "COD", "NH3N": "NH3-N", "SO2": "SO2", "NOX": "NOx", "VOCS": "VOCs"}

# Department ids (as in the quota domain's Department and IndicatorsReported.department) and their
# envelope sources (deploy/dev-tokens.json).
TAX, INDUSTRY, DEV_REFORM, ECOLOGY, NATURAL_RESOURCES, COUNTY = (
    "tax", "industry", "development_reform", "ecology", "natural_resources", "county")
DEPARTMENTS = (INDUSTRY, TAX, DEV_REFORM, ECOLOGY, NATURAL_RESOURCES)
SOURCE = {d: "/departments/" + d.replace("_", "-") for d in DEPARTMENTS}
ASSET_DEPARTMENT = {"LAND": NATURAL_RESOURCES, "ENERGY": DEV_REFORM, **{a: ECOLOGY for a in EMISSION_ASSETS}}
APPROVAL_OF_ASSET = {"LAND": "land_use", "ENERGY": "energy_review",
                     **{a: "environmental_impact" for a in EMISSION_ASSETS}}
APPROVAL_DEPARTMENT = {"environmental_impact": ECOLOGY, "energy_review": DEV_REFORM, "land_use": NATURAL_RESOURCES}

# Assumed share retired rather than reused (quota domain default: 20 % of emissions), basis points.
# Requests are sized against what remains, so a run with the default policy can serve them all.
RETIRE_SHARE_BP = {a: (2000 if a in EMISSION_ASSETS else 0) for a in ASSETS}
# County price list for 有偿使用, fen per display unit (per 亩, per tce, per t). Illustrative figures.
DEFAULT_PRICES_FEN = {"LAND": 30_000_000, "ENERGY": 50_000, "COD": 2_000_000, "NH3N": 3_000_000,
                      "SO2": 800_000, "NOX": 1_000_000, "VOCS": 1_500_000}
ADMISSION_INVESTMENT_FEN_PER_MU = 250_000_000  # 250 万元 per 亩 (seed 二.2)
ADMISSION_TAX_FEN_PER_MU = 15_000_000  # 15 万元 per 亩 per year
LOCAL_SHARES_BP = {"VAT": 5000, "CIT": 4000}  # local governments keep ~50 % of VAT, 40 % of CIT


@dataclass(frozen=True, slots=True)
class Release:
    release_id: str
    department: str
    enterprise_credit_code: str
    township_code: str
    county_code: str
    asset: str
    amount: int
    held: int  # what the enterprise held of the asset (its indicator figure); amount <= held
    reason: str  # closure | relocation
    basis: str  # free | paid
    buyback_price_fen: int | None  # fen per display unit, when paid
    document_ref: str
    released_on: date


@dataclass(frozen=True, slots=True)
class EnterpriseRecord:
    county_code: str
    index: int  # within its county
    credit_code: str
    name: str
    township_code: str
    in_park: bool
    park_id: str | None
    industry_code: str
    scale: str  # 规上 / 规下
    flags: tuple[str, ...]
    year: int  # the data year of the indicators
    land: int
    tax: int
    revenue: int
    value_added: int
    energy: int
    electricity: int
    emissions: dict[str, int]  # quota asset code -> 0.0001 t; only pollutants it reports
    rnd: int
    employees: int
    quality: float  # latent quantile in its county (0 worst .. 1 best); drives the figures
    disposition: str | None = None  # close | relocate | None
    effective_on: date | None = None
    to_park_id: str | None = None
    exit_reason: str = ""
    releases: tuple[Release, ...] = ()


@dataclass(frozen=True, slots=True)
class Reclamation:
    project_id: str
    county_code: str
    township_code: str
    name: str
    area: int
    registered_on: date
    accepted_on: date | None
    accepted_area: int | None  # None on an accepted project: the acceptance omits it (= registered area)
    document_ref: str

    @property
    def pooled_area(self) -> int:
        if self.accepted_on is None:
            return 0
        return self.area if self.accepted_area is None else self.accepted_area


@dataclass(frozen=True, slots=True)
class Project:
    project_id: str
    county_code: str
    name: str
    applicant_credit_code: str
    applicant_name: str
    park_id: str | None
    in_park_or_cluster: bool
    land: int
    investment: int
    expected_yearly_tax: int
    energy_need: int
    emission_needs: dict[str, int]
    industry_code: str
    two_high: bool
    on_safety_or_env_list: bool
    submitted_on: date
    scenario: str  # ok, below_investment, below_tax, ... (what the generator meant)
    expected_failures: tuple[str, ...]  # assessment admission failure codes
    relocated_enterprise: bool

    @property
    def expected_admitted(self) -> bool:
        return not self.expected_failures

    def needs(self) -> dict[str, int]:
        out = {"LAND": self.land, "ENERGY": self.energy_need}
        out.update(self.emission_needs)
        return {a: v for a, v in out.items() if v > 0}


@dataclass(frozen=True, slots=True)
class RequestLine:
    asset: str
    amount: int
    approval_kind: str
    need: int  # the project's full need; amount = the pool's share of it


@dataclass(frozen=True, slots=True)
class QuotaRequest:
    request_id: str
    project_id: str
    county_code: str
    requested_at: datetime
    lines: tuple[RequestLine, ...]


@dataclass(frozen=True, slots=True)
class Approval:
    project_id: str
    request_id: str
    county_code: str
    kind: str
    department: str
    document_ref: str
    granted_on: date


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    first_year: int
    last_year: int | None
    origin_weight: int
    destination_weight: int


@dataclass(frozen=True, slots=True)
class Agreement:
    agreement_id: str
    version: int
    effective_from: date
    county_code: str
    enterprise: str
    origin: str  # township:<code>
    destination: str  # park:<id>
    local_shares_bp: dict[str, int]
    schedule: tuple[ScheduleStep, ...]
    start: date
    end: date
    remainder_to: str
    guaranteed_minimum_fen: int | None
    statistics_weights: tuple[int, int] | None
    project_id: str | None
    signed_on: date


@dataclass(frozen=True, slots=True)
class TaxReceipt:
    receipt_id: str
    enterprise_credit_code: str
    county_code: str
    month: str  # YYYY-MM, the tax period
    tax_kind: str  # VAT | CIT
    amount: int  # fen
    corrects: str | None
    reported_on: date


@dataclass(frozen=True, slots=True)
class Price:
    county_code: str
    asset: str
    unit: str
    price_fen: int
    effective_from: date


@dataclass
class CountySummary:
    """What the per-county extras need from the enterprise pass (small: a few numbers and the
    relocated enterprises)."""

    county_code: str
    enterprises: int = 0
    released: dict[str, int] = field(default_factory=lambda: {a: 0 for a in ASSETS})
    reusable: dict[str, int] = field(default_factory=lambda: {a: 0 for a in ASSETS})  # after retirement
    closures: int = 0
    relocations: list[EnterpriseRecord] = field(default_factory=list)

    def add(self, rec: EnterpriseRecord) -> None:
        self.enterprises += 1
        if rec.disposition == "close":
            self.closures += 1
        elif rec.disposition == "relocate":
            self.relocations.append(rec)
        for rel in rec.releases:
            self.released[rel.asset] += rel.amount
            retired = -(-rel.amount * RETIRE_SHARE_BP[rel.asset] // 10_000)  # ceil: conservative
            self.reusable[rel.asset] += rel.amount - retired
