"""Quota contracts: department intake (``countypool.intake.quota``) and the pool's events
(``countypool.quota.events``). Amounts are decimal strings in the asset's unit; money in CNY."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import topics
from shared.contracts.types import DecimalStr, Identifier, SourceIdentifier
from shared.envelope import Event, register

ReleaseReason = Literal["closure", "relocation", "bankruptcy", "upgrade_savings"]
ApprovalKind = Literal["environmental_impact", "energy_review", "land_use"]


class _Intake(Event):
    topic = topics.INTAKE_QUOTA
    aggregate_type = "release"


@register
class QuotaReleaseSubmitted(_Intake):
    """A department releases quota freed by an enterprise (scope publish:QuotaReleaseSubmitted:<ASSET>)."""

    name = "QuotaReleaseSubmitted"
    release_id: SourceIdentifier
    enterprise_credit_code: str = Field(min_length=18, max_length=18)
    township_code: str
    county_code: str
    asset: Identifier
    amount: DecimalStr
    reason: ReleaseReason
    basis: Literal["free", "paid"]
    buyback_price_per_unit: DecimalStr | None = Field(default=None, description="CNY per asset unit, when paid")
    document_ref: str = Field(min_length=1, max_length=200)
    released_on: date


@register
class ReclamationAccepted(_Intake):
    """自然资源和规划局 accepts (验收) a 增减挂钩 reclamation project: its land enters the pool."""

    name = "ReclamationAccepted"
    aggregate_type = "reclamation"
    project_id: SourceIdentifier
    accepted_area: DecimalStr | None = Field(default=None, description="亩; defaults to the registered area")
    accepted_on: date
    document_ref: str = Field(default="", max_length=200)


@register
class ApprovalGranted(_Intake):
    """环评 / 能评 / 用地 approval of a project: confirms its reservation of that asset family."""

    name = "ApprovalGranted"
    aggregate_type = "project"
    project_id: Identifier
    kind: ApprovalKind
    document_ref: str = Field(default="", max_length=200)
    granted_on: date


# Added later, so events written before it read True (what settlement did with them then).
EARNS_COMPENSATION = (
    "whether the lot's units earn 腾退补偿 for the enterprise that freed them: true for a release by an enterprise "
    "that closed, relocated or went bankrupt; false for quota an enterprise saved by upgrading (upgrade_savings: it "
    "stays) and for reclaimed land (no enterprise). Settlement compensates by it.")


class _Out(Event):
    topic = topics.QUOTA_EVENTS
    aggregate_type = "lot"


@register
class QuotaReleased(_Out):
    name = "QuotaReleased"
    aggregate_type = "release"
    release_id: str
    enterprise_credit_code: str
    township_code: str
    county_code: str
    asset: str
    amount: DecimalStr
    reason: str
    basis: str
    status: Literal["accepted", "pending_verification", "rejected"]
    status_reason: str = ""
    # Added later (optional, so earlier events stay valid): the rest of the release, for replay.
    department: str | None = None
    buyback_price_per_unit: DecimalStr | None = Field(default=None, description="CNY per asset unit, when paid")
    document_ref: str | None = None
    released_on: date | None = None


@register
class LotCreated(_Out):
    name = "LotCreated"
    lot_id: str
    county_code: str
    asset: str
    amount: DecimalStr
    retired: DecimalStr
    source_kind: Literal["release", "reclamation"]
    source_ref: str = Field(description="enterprise credit code or reclamation project id")
    township_code: str
    dated: date
    basis: str
    buyback_price_per_unit: DecimalStr | None = None
    earns_compensation: bool = Field(default=True, description=EARNS_COMPENSATION)


@register
class QuotaRetired(_Out):
    name = "QuotaRetired"
    lot_id: str
    county_code: str
    asset: str
    amount: DecimalStr


@register
class BuybackOwed(_Out):
    """Paid rights taken back: the county owes the enterprise (settlement pays it)."""

    name = "BuybackOwed"
    lot_id: str
    county_code: str
    enterprise_credit_code: str
    township_code: str
    asset: str
    amount: DecimalStr
    amount_due: DecimalStr = Field(description="CNY")


class _RequestEvent(_Out):
    aggregate_type = "quota-request"
    request_id: str
    project_id: str
    county_code: str


class RequestLineOut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    asset: str
    amount: DecimalStr
    approval_kind: ApprovalKind


@register
class QuotaRequested(_RequestEvent):
    name = "QuotaRequested"
    lines: list[RequestLineOut]


@register
class QuotaReserved(_RequestEvent):
    name = "QuotaReserved"
    lines: list[RequestLineOut]
    expires_at: datetime | None = None


@register
class QuotaRequestRejected(_RequestEvent):
    name = "QuotaRequestRejected"
    reason: str


class ConsumedLotOut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lot_id: str
    source_kind: str
    source_ref: str
    township_code: str
    amount: DecimalStr
    amount_due: DecimalStr = Field(description="CNY share of the line's amount due")
    earns_compensation: bool = Field(default=True, description=EARNS_COMPENSATION)


@register
class QuotaAllocated(_RequestEvent):
    """A reservation confirmed: the lots consumed, the price and the amount due (有偿使用)."""

    name = "QuotaAllocated"
    asset: str
    amount: DecimalStr
    price_per_unit: DecimalStr = Field(description="CNY per asset unit")
    amount_due: DecimalStr = Field(description="CNY")
    park_id: str | None = None
    lots: list[ConsumedLotOut]
    allocated_on: date


@register
class QuotaReservationExpired(_RequestEvent):
    name = "QuotaReservationExpired"
    reason: str = Field(default="", description="deadline_passed (our clock) or ledger_expired")


@register
class QuotaReservationCancelled(_RequestEvent):
    name = "QuotaReservationCancelled"
    reason: str = ""


@register
class QuotaRequestExpired(_RequestEvent):
    """A request that waited for an allocation round past the policy's wait: it never held quota."""

    name = "QuotaRequestExpired"
    reason: str = ""
