"""Settlement contracts: tax receipts from 税务局 (``countypool.intake.settlement``) and what settlement
publishes (``countypool.settlement.events``). Money in CNY decimal strings."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.contracts import topics
from shared.contracts.types import DecimalStr, Identifier
from shared.envelope import Event, register


@register
class TaxReceiptReported(Event):
    """Tax one enterprise paid for one month and tax kind (税务局). One of an enterprise settlement does not know yet
    (neither the register's EnterpriseRegistered, an agreement nor a quota lot has named it) waits for it, listed at
    GET /v1/waiting-inputs, and is taken in when it becomes known; it is not dead-lettered unknown_enterprise."""

    name = "TaxReceiptReported"
    topic = topics.INTAKE_SETTLEMENT
    aggregate_type = "enterprise"

    receipt_id: Identifier
    enterprise_credit_code: str = Field(min_length=18, max_length=18)
    month: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", examples=["2026-03"])
    # 40 at most, as HTTP takes it and settlement stores it (Identifier's own 200 would win over a Field limit)
    tax_kind: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[^\s\x00-\x1f\x7f]+$")] = Field(
        examples=["VAT", "CIT"])
    amount: DecimalStr = Field(description="CNY paid")
    corrects: Identifier | None = Field(default=None, description="receipt id this one replaces")


@register
class StatisticsReported(Event):
    """A statistic of one enterprise and month (value added, output in CNY) that agreements may share (统计分成). Of an
    enterprise not known yet, it waits for it as a TaxReceiptReported does."""

    name = "StatisticsReported"
    topic = topics.INTAKE_SETTLEMENT
    aggregate_type = "enterprise"

    report_id: Identifier
    enterprise_credit_code: str = Field(min_length=18, max_length=18)
    month: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", examples=["2026-03"])
    measure: Literal["value_added", "output"]
    amount: DecimalStr = Field(description="CNY")


class _Out(Event):
    topic = topics.SETTLEMENT_EVENTS
    aggregate_type = "statement"


# Totals travel in the statement events only up to this many rows: a county-year names ~10^5 parties, which would
# take the message past Kafka's 1 MB limit. A finalized statement's party totals are in its TransfersRequested.
TOTALS_IN_EVENT_MAX = 1000


class StatementPartyTotal(BaseModel):
    """A party's money in one statement: what it receives and what it pays (net = receivable - payable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    party: str
    receivable: DecimalStr
    payable: DecimalStr


class StatementStatisticsTotal(BaseModel):
    """A party's statistics in one statement (not money): what it gains and what it cedes, per measure."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    party: str
    measure: str
    gained: DecimalStr
    ceded: DecimalStr


_TOTALS_NOTE = f"null when there are more than {TOTALS_IN_EVENT_MAX} rows (message size) or in an older event"


@register
class SettlementDrafted(_Out):
    name = "SettlementDrafted"
    statement_id: str
    county_code: str
    period: str
    content_hash: str
    line_count: int
    total: DecimalStr
    # optional since v1 was first published: the rest of the statement summary, for replay and dashboards
    as_of: datetime | None = None
    policy_id: str | None = None
    policy_version: int | None = None
    unmatched_receipts: int | None = None
    party_totals: list[StatementPartyTotal] | None = Field(
        default=None, description=f"every party's money totals; {_TOTALS_NOTE}")
    statistics_totals: list[StatementStatisticsTotal] | None = Field(
        default=None, description=f"statistics totals; {_TOTALS_NOTE}")


@register
class SettlementFinalized(_Out):
    name = "SettlementFinalized"
    statement_id: str
    county_code: str
    period: str
    content_hash: str
    line_count: int
    total: DecimalStr
    finalized_at: datetime
    # optional since v1 was first published (party totals: see the statement's TransfersRequested, one per line)
    policy_id: str | None = None
    policy_version: int | None = None
    unmatched_receipts: int | None = None
    statistics_totals: list[StatementStatisticsTotal] | None = Field(
        default=None, description=f"statistics totals; {_TOTALS_NOTE}")


@register
class AdjustmentRecorded(_Out):
    name = "AdjustmentRecorded"
    statement_id: str
    county_code: str
    period: str
    adjusts_period: str
    amount: DecimalStr
    sources: list[str]
    # optional since v1 was first published: which line, who pays whom, for which agreement and figure
    line_no: int | None = None
    payer: str | None = None
    payee: str | None = None
    agreement_id: str | None = None
    tax_kind: str | None = None
    adjusts: str | None = Field(default=None, description="kind of figure corrected: revenue_share, guaranteed_minimum_topup")
