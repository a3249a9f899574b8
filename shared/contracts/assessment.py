"""Assessment contracts: department intake (on ``countypool.intake.assessment``) and what the evaluation
system publishes (on ``countypool.assessment.events``). Money in CNY decimal strings, land in 亩."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.contracts import topics
from shared.contracts.types import DecimalStr, Identifier, at_most
from shared.envelope import Event, register

CreditCode = str  # 18 characters, GB 32100; validated by the assessment domain
Disposition = Literal["close", "relocate", "upgrade", "none"]


class _Intake(Event):
    topic = topics.INTAKE_ASSESSMENT
    aggregate_type = "enterprise"


@register
class EnterpriseReported(_Intake):
    """A department reports an enterprise for the register (企业台账)."""

    name = "EnterpriseReported"
    # up to 40 characters as HTTP takes it: a code padded with spaces (a CHAR column) or in full width is normalized
    # and checked by the service (GB 32100), which refuses a bad one invalid_credit_code
    credit_code: CreditCode = Field(min_length=1, max_length=40)
    name_: str = Field(alias="name", min_length=1, max_length=200)
    township_code: str = Field(pattern=r"^[0-9]{9}([0-9]{3})?$")
    in_park: bool = False
    # as HTTP takes them (services/assessment/api/schemas.EnterpriseIn): one body, one outcome on either door
    park_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")  # a park code
    industry_code: str = Field(min_length=1, max_length=10)
    flags: list[Annotated[str, StringConstraints(max_length=60)]] = Field(
        default_factory=list, max_length=50, description="ecological_control_zone, safety_hazard, ...")
    scale: Literal["规上", "规下"] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@register
class IndicatorsReported(_Intake):
    """One department's part of an enterprise's yearly indicators (fields it owns, decimal strings in the
    units of the column names: land 亩, money 元, energy tce, electricity kWh, emissions t)."""

    name = "IndicatorsReported"
    # up to 40 characters as HTTP takes it: a code padded with spaces (a CHAR column) or in full width is normalized
    # and checked by the service (GB 32100), which refuses a bad one invalid_credit_code
    credit_code: CreditCode = Field(min_length=1, max_length=40)
    year: int = Field(ge=1990, le=2200)  # the years HTTP and the import take (services/assessment/domain)
    department: Identifier
    fields: Annotated[dict[str, DecimalStr], at_most(200)] = Field(min_length=1, max_length=200,
                                                                   examples=[{"land": "12.5000", "tax": "1830000.00"}])


class _Out(Event):
    topic = topics.ASSESSMENT_EVENTS
    aggregate_type = "enterprise"


@register
class EnterpriseRegistered(_Out):
    name = "EnterpriseRegistered"
    credit_code: CreditCode
    name_: str = Field(alias="name")
    county_code: str
    township_code: str
    in_park: bool
    park_id: str | None = None
    industry_code: str = ""
    flags: list[str] = Field(default_factory=list, max_length=50)
    scale: Literal["规上", "规下"] | None = Field(
        default=None, description="as the statistics bureau says; null: by policy rule (or an event older than the field)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@register
class IndicatorsRecorded(_Out):
    name = "IndicatorsRecorded"
    credit_code: CreditCode
    year: int
    department: str
    fields: dict[str, DecimalStr]


@register
class IndicatorsWithdrawn(_Out):
    """A department took back figures of its part for an enterprise and year (sent for the wrong enterprise or
    year, or the county's settlement of a disagreement no longer needed). A figure it was the source of falls back
    on the other departments' parts (sourced to the first of them by department name) or is gone; one another
    department gave stays theirs. Readers folding IndicatorsRecorded drop these fields from the department's part."""
    name = "IndicatorsWithdrawn"
    credit_code: CreditCode
    year: int
    department: str
    fields: list[str] = Field(min_length=1)


@register
class AssessmentPolicyChanged(_Out):
    name = "AssessmentPolicyChanged"
    aggregate_type = "policy"
    county_code: str
    year: int
    policy_version: int
    policy_hash: str
    changed_by: str


@register
class EnterpriseAssessed(_Out):
    name = "EnterpriseAssessed"
    run_id: str
    county_code: str
    year: int
    credit_code: CreditCode
    group: str
    score: DecimalStr | None = Field(description="null for class T (not evaluated)")
    class_label: str = Field(examples=["A", "B", "C", "D", "T"])
    rank: int | None = None
    policy_version: int
    policy_hash: str
    breakdown_ref: str = Field(description="GET path of the per-term breakdown")
    recommendation: Disposition
    reasons: list[str] = Field(default_factory=list)


@register
class EvaluationRunMadeCurrent(_Out):
    """The county-year's current evaluation run changed: a new run was created, or an older run was made current
    again (its inputs or policy were requested again, e.g. a correction taken back or a policy version reverted). A
    reinstated run publishes no EnterpriseAssessed again: read its results from the earlier EnterpriseAssessed
    events that carry its run_id, or from GET /v1/evaluations/{run_id}/enterprises. Keyed by the county-year
    ('<county_code>/<year>'), so one county-year's changes arrive in order; the last one names the current run.
    Requesting the current run again publishes nothing."""

    name = "EvaluationRunMadeCurrent"
    aggregate_type = "county-year"
    run_id: str = Field(description="the run now current for the county-year")
    county_code: str
    year: int
    content_hash: str
    policy_version: int
    policy_hash: str
    enterprise_count: int = Field(description="enterprises the run assessed (one EnterpriseAssessed each)")
    class_counts: dict[str, dict[str, int]] = Field(description="enterprises per group and class, as the run has them",
                                                    examples=[{"规上": {"A": 1, "B": 1, "T": 1}, "规下": {"A": 1}}])
    previous_run_id: str | None = Field(description="the run that was current before, null for the county-year's first")
    why: Literal["created", "reinstated"] = Field(
        description="created: a new run (its EnterpriseAssessed events precede this one); reinstated: an existing "
                    "run made current again, whose results are not published again (earlier EnterpriseAssessed "
                    "with its run_id, or GET /v1/evaluations/{run_id}/enterprises)")


@register
class DispositionDecided(_Out):
    name = "DispositionDecided"
    credit_code: CreditCode
    county_code: str
    year: int
    recommended: Disposition
    decided: Disposition
    overridden: bool
    decided_by: str
    decided_at: datetime
    reason: str = ""
    run_id: str | None = Field(default=None, description="the evaluation run whose recommendation was decided on")


@register
class EnterpriseExited(_Out):
    """关闭退出 carried out: its quotas are freed downstream."""

    name = "EnterpriseExited"
    credit_code: CreditCode
    county_code: str
    township_code: str
    effective_on: date
    reason: str = ""
    year: int | None = Field(default=None, description="year of the decision carried out")


@register
class EnterpriseRelocated(_Out):
    """转型转移 carried out: moved from a township into a park; its old quotas are freed downstream."""

    name = "EnterpriseRelocated"
    credit_code: CreditCode
    county_code: str
    from_township_code: str
    to_park_id: str
    effective_on: date
    year: int | None = Field(default=None, description="year of the decision carried out")


class AdmissionFailure(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    message: str
    figure: str | None = None
    threshold: str | None = None
    unit: str | None = None


@register
class ProjectEvaluated(_Out):
    """A new project checked against the admission thresholds; only admitted ones may request quota."""

    name = "ProjectEvaluated"
    aggregate_type = "project"
    project_id: Identifier
    applicant_credit_code: CreditCode
    county_code: str
    park_id: str | None
    admitted: bool
    failures: list[AdmissionFailure] = Field(default_factory=list)
    land: DecimalStr = Field(description="亩")
    investment_per_mu: DecimalStr = Field(description="CNY per 亩")
    tax_per_mu: DecimalStr = Field(description="CNY per 亩 per year")
    industry_code: str = ""
    project_class: str | None = Field(default=None, max_length=20,
                                      description="class of the applicant if assessed (A-D, or the county's label)")
    land_quota_allowed: bool = Field(
        default=True, description="whether the applicant's class may be given construction land: the county's "
                                  "treatment table (domain.md: no new construction land for C, no industrial land "
                                  "for D); an applicant without a class may")
    policy_hash: str
    year: int | None = Field(default=None, description="the county-year whose policy admitted or refused it")
    policy_version: int | None = None
