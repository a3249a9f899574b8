"""Request and response bodies of the quota API (/v1). Amounts are decimal strings in the asset's unit
(t, tce, 亩), money in CNY; never floats."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.quota import EARNS_COMPENSATION, ApprovalGranted, ApprovalKind, QuotaReleaseSubmitted
from shared.contracts.types import DecimalStr, Identifier, SafeId, SourceIdentifier, at_most

# The HTTP intake takes exactly the Kafka intake's schema, so a department sends the same document either way.
ReleaseIn = QuotaReleaseSubmitted
ApprovalIn = ApprovalGranted



class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    reason: str
    field: str | None = None
    detail: str = ""


# -- policy ------------------------------------------------------------------------------------------
class PriorityIn(_In):
    # bounded lists: pydantic builds one error per bad item before any handler runs (500,000 items, ~600 MB)
    keys: list[Literal["project_class", "strategic_industry", "tax_per_mu", "arrival"]] | None = Field(default=None, max_length=8)
    class_order: list[str] | None = Field(default=None, max_length=100)
    strategic_industries: list[str] | None = Field(default=None, max_length=2000)


class PolicyIn(_In):
    """A county's pool policy; every field left out takes the default (Nantong/Jiangsu)."""

    retire_share_bp: Annotated[dict[str, int], at_most(100)] | None = Field(
        default=None, examples=[{"COD": 2000}], max_length=100,
        description="share retired per asset, basis points. Replaces the whole map: an asset left out of a map "
                    "given here retires nothing (left out altogether: the defaults, 20 % of each emission). GET "
                    "the policy, change it, PUT it back to change one asset.")
    prices: Annotated[dict[str, DecimalStr], at_most(100)] | None = Field(
        default=None, examples=[{"COD": "12000.00"}], max_length=100, description="county price list, CNY per asset unit (有偿使用)")
    reservation_timeout_seconds: int | None = Field(default=None, gt=0)
    request_wait_seconds: int | None = Field(default=None, gt=0)
    consumption_order: Literal["fifo", "township_order"] | None = None
    township_order: list[str] | None = Field(default=None, max_length=2000)
    verification: Literal["hold", "accept", "reject"] | None = None
    priority: PriorityIn | None = None


class PolicyOut(BaseModel):
    county_code: str
    version: int
    updated_at: datetime
    updated_by: str
    retire_share_bp: dict[str, int]
    prices: dict[str, str]
    reservation_timeout_seconds: int
    request_wait_seconds: int
    consumption_order: str
    township_order: list[str]
    verification: str
    department_assets: dict[str, list[str]]
    priority: dict


# -- releases and reclamation ------------------------------------------------------------------------
class ReleaseOut(BaseModel):
    release_id: str
    county_code: str
    enterprise_credit_code: str
    township_code: str
    asset: str
    amount: str
    reason: str
    basis: str
    buyback_price_per_unit: str | None
    document_ref: str
    released_on: date
    department: str
    status: str
    status_reason: str
    lot_id: str | None


class ReclamationIn(_In):
    project_id: SourceIdentifier
    county_code: str
    township_code: str
    area: DecimalStr = Field(description="亩 registered")
    registered_on: date | None = None


class ReclamationAcceptanceIn(_In):
    accepted_on: date
    accepted_area: DecimalStr | None = Field(default=None, description="亩; defaults to the registered area")
    document_ref: str = Field(default="", max_length=200)  # as the contract and the column hold it


class ReclamationOut(BaseModel):
    project_id: str
    county_code: str
    township_code: str
    area: str
    registered_on: date
    state: str
    accepted_on: date | None
    accepted_area: str | None
    lot_id: str | None


# -- requests ------------------------------------------------------------------------------------------
class RequestLineIn(_In):
    asset: Identifier
    amount: DecimalStr
    approval_kind: ApprovalKind | None = Field(default=None, description="defaults to the asset's confirming approval")


class QuotaRequestIn(_In):
    request_id: SafeId
    project_id: SafeId
    county_code: str
    lines: list[RequestLineIn] = Field(min_length=1, max_length=20)


class CancelIn(_In):
    reason: str = Field(default="cancelled", max_length=200)


class RequestLineOut(BaseModel):
    asset: str
    amount: str
    approval_kind: str
    reserved: bool = Field(description="the ledger holds this line for the request now (reserving or reserved)")


class LedgerTransferOut(BaseModel):
    transfer_id: str
    purpose: str
    asset: str
    amount: str
    state: str
    ledger_reason: str | None


class QuotaRequestOut(BaseModel):
    request_id: str
    project_id: str
    county_code: str
    state: str
    reason: str | None
    lines: list[RequestLineOut]
    approvals: list[str]
    requested_at: datetime
    deadline: datetime
    updated_at: datetime | None
    ledger_transfers: list[LedgerTransferOut] = Field(default_factory=list)


class RequestsPage(BaseModel):
    requests: list[QuotaRequestOut]
    next_after: str | None


# -- rounds --------------------------------------------------------------------------------------------
class ShortfallOut(BaseModel):
    asset: str
    requested: str
    available: str


class DecisionOut(BaseModel):
    rank: int
    request_id: str
    outcome: str
    reason: str
    ordered_by: list[list[str]]
    shortfalls: list[ShortfallOut]


class RoundOut(BaseModel):
    round_id: str
    county_code: str
    seq: int
    ran_at: datetime
    ran_by: str
    policy_version: int
    available_before: dict[str, str]
    decisions: list[DecisionOut]
    expired_before: list[str] = Field(default_factory=list, description="requests closed past their deadline "
                                                                        "before deciding")
    withdrawn_before: list[str] = Field(default_factory=list, description="requests closed before deciding: their "
                                                                          "project is no longer admitted")
    reproducible: bool | None = Field(default=None, description="re-running the stored inputs gives these decisions")


# -- queries ---------------------------------------------------------------------------------------
class PoolAssetOut(BaseModel):
    asset: str
    unit: str
    released: str = Field(description="booked in the ledger: retired + allocated + reserved + available")
    retired: str
    allocated: str
    reserved: str
    available: str
    incoming: str = Field(description="lots sent to the ledger, not yet booked")


class PoolOut(BaseModel):
    county_code: str
    assets: list[PoolAssetOut]


class LotOut(BaseModel):
    lot_id: str
    county_code: str
    asset: str
    amount: str
    retired: str
    allocated: str
    remaining: str
    source_kind: str
    source_ref: str
    township_code: str
    dated: date
    basis: str
    buyback_price_per_unit: str | None
    ledger_state: str
    earns_compensation: bool = Field(description=EARNS_COMPENSATION)


class LotsPage(BaseModel):
    lots: list[LotOut]
    next_after: str | None


class ConsumptionOut(BaseModel):
    request_id: str
    project_id: str
    lot_id: str
    asset: str
    amount: str
    amount_due: str
    source_kind: str
    source_ref: str
    township_code: str
    allocated_at: datetime
    earns_compensation: bool = Field(description=EARNS_COMPENSATION)


class AllocationOut(BaseModel):
    request_id: str
    asset: str
    amount: str
    price_per_unit: str
    amount_due: str
    allocated_on: date
    lots: list[ConsumptionOut]


class ProvenanceOut(BaseModel):
    project_id: str
    allocations: list[AllocationOut]
    totals: dict[str, str] = Field(description="allocated per asset = sum of its lot consumptions")


class FreedLotOut(BaseModel):
    lot_id: str
    asset: str
    amount: str
    retired: str
    remaining: str
    went_to: list[ConsumptionOut]


class EnterpriseTrailOut(BaseModel):
    enterprise_credit_code: str
    releases: list[ReleaseOut]
    lots: list[FreedLotOut]


class DifferenceOut(BaseModel):
    asset: str
    figure: str
    ours: str
    ledger: str
    difference: str


class ReconciliationOut(BaseModel):
    county_code: str
    agrees: bool = Field(description="no difference in this reading")
    settled: bool = Field(description="nothing of ours was on its way to or from the ledger while both sides were "
                                      "read (in_flight all stuck, nothing asked or answered meanwhile): a difference "
                                      "is a fault. Not settled after a few readings: the differences may be transfers "
                                      "in flight, and the metric keeps the county's last settled reading")
    in_flight: int = Field(description="our transfers the ledger has not answered yet")
    stuck: int = Field(default=0, description="of in_flight, those unanswered for more than 5 minutes")
    differences: list[DifferenceOut] = Field(description="figure 'intake_refused': lots taken in whose booking the "
                                                         "ledger refused")
    ours: list[PoolAssetOut]


class ApprovalOut(BaseModel):
    project_id: str
    kind: str
    requests: list[dict]
