"""HTTP schemas of the assessment API (pydantic: the OpenAPI document is generated from these).

Figures are decimal strings: land in 亩, money in 元, energy in tce, electricity in kWh, emissions in t,
scores with 4 decimals. Credit codes are checked (GB 32100 check character) by the service, which answers
422 ``invalid_credit_code`` with the problem in ``details``.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.assessment.domain.enterprise import PARK_ID_PATTERN, POLLUTANTS
from services.assessment.domain.policy import AssessmentPolicy
from shared.contracts.assessment import AdmissionFailure
from shared.contracts.types import DecimalStr, Identifier, SafeId, at_most

DispositionName = Literal["close", "relocate", "upgrade", "none"]
CountyCode = Field(pattern=r"^[0-9]{6}$", examples=["320623"])
Year = Field(ge=1990, le=2200, examples=[2023])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- register ------------------------------------------------------------------------------------------

class EnterpriseIn(Strict):
    credit_code: str = Field(min_length=1, max_length=40, examples=["91320623MA1XXXXXXU"])
    name: str = Field(min_length=1, max_length=200)
    township_code: str = Field(pattern=r"^[0-9]{9}([0-9]{3})?$", examples=["320623101"])
    in_park: bool = False
    park_id: str | None = Field(default=None, pattern=PARK_ID_PATTERN, examples=["P01"])
    industry_code: str = Field(min_length=1, max_length=10, examples=["C3311"])
    flags: list[Annotated[str, StringConstraints(max_length=60)]] = Field(
        default_factory=list, max_length=50,
        description="ecological_control_zone, safety_hazard, environmental_hazard, under_two_years, utility, "
                    "backward_equipment, large_environmental_impact (周边环境影响较大), or a county flag such as high_tech")
    scale: Literal["规上", "规下"] | None = None


class EnterpriseOut(Strict):
    credit_code: str
    name: str
    county_code: str
    township_code: str
    in_park: bool
    park_id: str | None
    industry_code: str
    flags: list[str]
    scale: str | None
    status: Literal["active", "exited"]
    revision: int
    registered_at: datetime
    updated_at: datetime
    updated_by: str


class RegisterOut(Strict):
    result: Literal["created", "updated", "unchanged"]
    enterprise: EnterpriseOut


class EnterprisesPage(Strict):
    items: list[EnterpriseOut]
    next_after: str | None = Field(description="pass as `after` for the next page; null at the end")


class IndicatorsIn(Strict):
    credit_code: str = Field(min_length=1, max_length=40)
    year: int = Year
    department: Identifier
    fields: Annotated[dict[str, DecimalStr], at_most(200)] = Field(
        min_length=1, max_length=200, examples=[{"land": "12.5000", "tax": "1830000.00", "emissions.COD": "1.2"}],
        description="land (亩), tax, revenue, value_added, rnd (元), energy (tce), electricity (kWh), employees, "
                    f"emissions.<pollutant> (t); a known pollutant as spelled: {', '.join(POLLUTANTS)}")


class WithdrawalIn(Strict):
    credit_code: str = Field(min_length=1, max_length=40)
    year: int = Year
    department: Identifier
    fields: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] = Field(
        min_length=1, max_length=200, examples=[["land", "emissions.COD"]],
        description="names of figures the department's part holds (as in IndicatorsIn.fields)")


class PartOut(Strict):
    department: str
    figures: dict[str, str]
    received_via: str
    received_by: str
    updated_at: datetime


class IndicatorsOut(Strict):
    credit_code: str
    year: int
    result: Literal["recorded", "unchanged", "withdrawn"] | None = Field(default=None, description="set on POST")
    figures: dict[str, str] = Field(description="merged over the departments")
    sources: dict[str, str] = Field(description="field -> department that gave it")
    parts: list[PartOut]


# -- policies ------------------------------------------------------------------------------------------

class PolicyOut(Strict):
    county_code: str
    year: int
    version: int
    policy_hash: str
    stored: bool = Field(description="false: the shipped default, not yet used (it is stored as version 1 when first used)")
    created_by: str
    created_at: datetime | None
    note: str
    policy: AssessmentPolicy


class PolicyPut(Strict):
    policy: AssessmentPolicy = Field(description="version must be the current version + 1; numbers as decimal strings")
    note: str = Field(default="", max_length=2000)


class PolicyPutOut(Strict):
    changed: bool
    policy: PolicyOut


# -- evaluations ---------------------------------------------------------------------------------------

class EvaluateIn(Strict):
    county_code: str = CountyCode
    year: int = Year


class RunOut(Strict):
    run_id: str
    county_code: str
    year: int
    policy_version: int
    policy_hash: str
    inputs_hash: str
    content_hash: str
    enterprise_count: int
    without_data: int = Field(description="active register entries without figures for the year (not evaluated), "
                                          "counted when the run was last requested")
    class_counts: dict[str, dict[str, int]] = Field(description="group -> class -> count")
    benchmarks: dict[str, dict[str, str]]
    averages: dict[str, dict[str, str]] = Field(description="this year's group averages (next year's relative benchmarks)")
    created_by: str
    created_at: datetime
    last_requested_at: datetime
    current: bool = Field(description="the county-year's current run")


class EvaluateOut(Strict):
    created: bool = Field(description="false: the same inputs and policy gave an existing run (no new events)")
    run: RunOut


class ResultRow(Strict):
    credit_code: str
    group: str
    class_label: str
    score: str | None
    rank: int | None
    recommendation: DispositionName
    breakdown_ref: str


class ResultsPage(Strict):
    items: list[ResultRow]
    next_after: str | None


class TermOut(Strict):
    indicator: str
    name: str
    unit: str
    value: str | None
    benchmark: str
    weight: str
    raw_term: str
    capped_term: str
    status: str


class AdjustmentOut(Strict):
    code: str
    flag: str
    points: str
    description: str


class ScoreOut(Strict):
    subject: str
    group: str
    terms: list[TermOut]
    adjustments: list[AdjustmentOut]
    total: str


class ReasonOut(Strict):
    code: str
    disposition: DispositionName
    detail: str


class RecommendationOut(Strict):
    disposition: DispositionName
    reasons: list[ReasonOut]


class BreakdownOut(Strict):
    run_id: str
    county_code: str
    year: int
    policy_version: int
    policy_hash: str
    credit_code: str
    name: str
    township_code: str
    group: str
    class_label: str
    excluded_by: str | None
    rank: int | None
    score_rank: int | None
    group_size: int | None
    score: ScoreOut | None
    recommendation: RecommendationOut
    treatment: dict[str, Any] | None


class ClusterOut(Strict):
    cluster_id: str
    members: list[str]
    class_label: str = Field(description="by rank bands (the straddling one gets the better class); clusters tied on "
                                         "their published score all get the class of the best placed of them")
    rank: int = Field(description="1..n, unique: published score descending, then cluster id ascending as text")
    score_rank: int = Field(description="competition rank: 1 + how many scored strictly higher (equal scores share it)")
    group_size: int
    score: ScoreOut


class ClusterRankingOut(Strict):
    county_code: str
    year: int
    run_id: str | None = Field(description="the evaluation run whose inputs and policy it ranks, kept with it; null: no "
                                           "run yet (or one made before rankings were kept), ranked from today's "
                                           "figures and policy")
    policy_version: int
    policy_hash: str
    group: str = Field(description="the group whose weights and benchmarks rank the clusters")
    content_hash: str
    clusters: list[ClusterOut]


# -- dispositions and tasks ----------------------------------------------------------------------------

class DecisionIn(Strict):
    credit_code: str = Field(min_length=1, max_length=40)
    year: int = Year
    decided: DispositionName | None = Field(default=None, description="omit to confirm the recommendation")
    decided_by: str = Field(min_length=1, max_length=200, description="who decided, e.g. 县政府常务会议 2024-03-12")
    reason: str = Field(default="", max_length=2000, description="required for an override")
    rectification_deadline: date | None = Field(default=None, description="opens a rectification task when given")


class DecisionOut(Strict):
    id: int
    credit_code: str
    year: int
    county_code: str
    run_id: str
    recommended: DispositionName
    decided: DispositionName
    overridden: bool
    decided_by: str
    recorded_by: str
    decided_at: datetime
    reason: str
    status: Literal["decided", "superseded", "executed"]
    executed_at: datetime | None
    executed_by: str | None
    effective_on: date | None
    to_park_id: str | None
    execution_note: str | None


class DecisionsOut(Strict):
    standing: DecisionOut | None
    history: list[DecisionOut]


class ExecutionIn(Strict):
    effective_on: date
    to_park_id: str | None = Field(default=None, pattern=PARK_ID_PATTERN, description="required for a relocation")
    note: str = Field(default="", max_length=2000)


class TaskIn(Strict):
    task_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^\s]+$",
                                description="your id makes the request idempotent")
    credit_code: str = Field(min_length=1, max_length=40)
    disposition: Literal["close", "relocate", "upgrade"]
    deadline: date
    year: int | None = Field(default=None, ge=1990, le=2200)
    note: str = Field(default="", max_length=2000)


class TaskCloseIn(Strict):
    on: date
    note: str = Field(default="", max_length=2000, description="a cancellation needs a reason")


class TaskOut(Strict):
    id: str
    credit_code: str
    county_code: str
    year: int | None
    decision_id: int | None
    disposition: str
    deadline: date
    status: Literal["open", "done", "cancelled"]
    closed_on: date | None
    note: str = Field(description="what the task orders, as opened")
    closing_note: str = Field(description="how it was closed: the completion's note or the cancellation's reason "
                                          "(empty while open; tasks closed before this field kept it in note)")
    created_by: str
    created_at: datetime
    overdue: bool = Field(description="open past its deadline, as of today (or as_of)")


class TasksPage(Strict):
    items: list[TaskOut]
    next_after: str | None


# -- projects ------------------------------------------------------------------------------------------

class ProjectIn(Strict):
    project_id: SafeId = Field(description="ASCII letters, digits, '.', '_', '-' (it names the project's ledger "
                                           "accounts and settlement party)", examples=["PRJ-320623-2026-0001"])
    applicant_credit_code: str = Field(min_length=1, max_length=40)
    county_code: str = CountyCode
    year: int | None = Field(default=None, ge=1990, le=2200, description="policy year; this year when omitted")
    park_id: str | None = Field(default=None, pattern=PARK_ID_PATTERN, examples=["P01"])
    in_park_or_cluster: bool | None = Field(default=None, description="defaults to: a park_id is given")
    land: DecimalStr = Field(description="亩")
    investment: DecimalStr = Field(description="fixed-asset investment, 元")
    expected_yearly_tax: DecimalStr = Field(description="元 per year")
    energy_need: DecimalStr = Field(default="0", description="tce per year")
    emission_needs: Annotated[dict[str, DecimalStr], at_most(50)] = Field(default_factory=dict, max_length=50,
                                                                          description="pollutant -> t per year")
    industry_code: str = Field(min_length=1, max_length=10)
    two_high: bool = Field(default=False, description="两高: high energy use and high emissions")
    on_safety_or_env_list: bool = False


class ProjectOut(Strict):
    project_id: str
    county_code: str
    year: int
    applicant_credit_code: str
    admitted: bool
    failures: list[AdmissionFailure]
    investment_per_mu: str = Field(description="元/亩, floored to the fen")
    tax_per_mu: str = Field(description="元/亩/年, floored to the fen")
    investment_threshold_per_mu: str
    tax_threshold_per_mu: str
    override_prefix: str | None
    project_class: str | None = Field(description="the applicant's class in its latest evaluation, if any")
    land_quota_allowed: bool = Field(description="whether the class's treatment lets it have construction land "
                                                 "(quota refuses a land line otherwise)")
    listed_in_register: bool = Field(description="the register marks the applicant with a safety or environmental hazard")
    policy_version: int
    policy_hash: str
    application: dict[str, Any]
    evaluated_by: str
    evaluated_at: datetime


# -- imports -------------------------------------------------------------------------------------------

class RowProblemOut(Strict):
    field: str
    column: str | None
    reason: str
    message: str


class BadRowOut(Strict):
    line: int = Field(description="line of the CSV file, or row of the sheet (the header is line 1)")
    credit_code: str | None
    problems: list[RowProblemOut]


class ImportReportOut(Strict):
    kind: Literal["enterprises", "indicators"]
    format: Literal["csv", "xlsx"]
    rows: int
    accepted: int
    rejected: int
    written: bool = Field(description="false when all_or_nothing was asked and a row was bad")
    all_or_nothing: bool
    outcomes: dict[str, int] = Field(description="created/updated/unchanged (enterprises), recorded/unchanged (indicators)")
    ignored_columns: list[str]
    bad_rows: list[BadRowOut]
