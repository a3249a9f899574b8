"""Builders for settlement domain tests: short names, explicit numbers."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from services.settlement.domain import (
    CIT,
    VAT,
    ConsumedLot,
    QuotaAllocation,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
    TaxReceipt,
)
from services.settlement.domain.periods import Period

CST = timezone(timedelta(hours=8))
COUNTY = "320623"
T1, T2 = "township:320623101", "township:320623102"
P1 = "park:P1"
FUND = f"county:{COUNTY}/fund"


def at(y: int, m: int, d: int, hour: int = 12) -> datetime:
    return datetime(y, m, d, hour, tzinfo=CST)


def month(label: str) -> Period:
    return Period.parse(label)


def agreement(**over) -> RevenueSharingAgreement:
    fields = dict(
        agreement_id="A1",
        version=1,
        effective_from=date(2023, 1, 1),
        enterprise="E1",
        origin=T1,
        destination=P1,
        local_shares_bp={VAT: 5000, CIT: 4000},
        schedule=(ScheduleStep(1, 3, 6, 4), ScheduleStep(4, None, 5, 5)),
        start=date(2023, 1, 1),
        end=date(2027, 12, 31),
        remainder_to=P1,
    )
    fields.update(over)
    return RevenueSharingAgreement(**fields)


def receipt(rid: str, label: str, amount: int, received: datetime, *, tax: str = VAT, enterprise: str = "E1",
            corrects: str | None = None, replaced: int | None = None) -> TaxReceipt:
    return TaxReceipt(receipt_id=rid, enterprise=enterprise, month=month(label), tax_kind=tax, amount_fen=amount,
                      received_at=received, corrects=corrects, replaced_amount_fen=replaced)


def policy(**over) -> SettlementPolicy:
    fields = dict(policy_id="POL", version=1, county=COUNTY, compensation_bp=3000, township_weight=4, park_weight=3,
                  fund_weight=3)
    fields.update(over)
    return SettlementPolicy(**fields)


def allocation(aid: str, due: int, lots: list[tuple[str, str, str, int]], *, on: date = date(2026, 2, 10),
               received: datetime | None = None, project: str = "PRJ1", destination: str = P1) -> QuotaAllocation:
    consumed = tuple(ConsumedLot(lot, ent, town, units) for lot, ent, town, units in lots)
    return QuotaAllocation(allocation_id=aid, project_id=project, asset="land", amount_units=sum(c.units for c in consumed),
                           price="1.00", amount_due_fen=due, destination=destination, lots=consumed, allocated_on=on,
                           received_at=received or datetime(on.year, on.month, on.day, 18, tzinfo=CST))
