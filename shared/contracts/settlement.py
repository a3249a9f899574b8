"""Settlement contracts: tax receipts from 税务局 (``countypool.intake.settlement``) and what settlement
publishes (``countypool.settlement.events``). Money in CNY decimal strings."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts import topics
from shared.contracts.types import DecimalStr, Identifier
from shared.envelope import Event, register


@register
class TaxReceiptReported(Event):
    name = "TaxReceiptReported"
    topic = topics.INTAKE_SETTLEMENT
    aggregate_type = "enterprise"

    receipt_id: Identifier
    enterprise_credit_code: str = Field(min_length=18, max_length=18)
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2026-03"])
    tax_kind: Identifier = Field(examples=["VAT", "CIT"])
    amount: DecimalStr = Field(description="CNY paid")
    corrects: str | None = Field(default=None, description="receipt id this one replaces")


@register
class StatisticsReported(Event):
    """A statistic of one enterprise and month (value added, output in CNY) that agreements may share (统计分成)."""

    name = "StatisticsReported"
    topic = topics.INTAKE_SETTLEMENT
    aggregate_type = "enterprise"

    report_id: Identifier
    enterprise_credit_code: str = Field(min_length=18, max_length=18)
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2026-03"])
    measure: Literal["value_added", "output"]
    amount: DecimalStr = Field(description="CNY")


class _Out(Event):
    topic = topics.SETTLEMENT_EVENTS
    aggregate_type = "statement"


@register
class SettlementDrafted(_Out):
    name = "SettlementDrafted"
    statement_id: str
    county_code: str
    period: str
    content_hash: str
    line_count: int
    total: DecimalStr


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
