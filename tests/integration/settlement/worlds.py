"""Seeded random settlement worlds — agreements with amendments and minimums, receipts in instalments, late ones and
corrections, quota allocations (reclaimed lots, no park), buy-backs, statistics — and loading one into a
settlement database the way intake stores facts."""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from services.settlement.domain import (
    CIT,
    VAT,
    BuyBack,
    ConsumedLot,
    QuotaAllocation,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
    StatisticsReport,
    TaxReceipt,
)
from services.settlement.domain.periods import Period, month_from_index, month_index
from services.settlement.storage.inputs import InputsRepository

CST = timezone(timedelta(hours=8))
FIRST, LAST = month_index(date(2025, 1, 1)), month_index(date(2026, 3, 1))  # months facts belong to


def at(d: date, hour: int = 12) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=CST)


@dataclass
class World:
    county: str
    policy: SettlementPolicy
    agreements: list = field(default_factory=list)
    receipts: list = field(default_factory=list)
    allocations: list = field(default_factory=list)
    buybacks: list = field(default_factory=list)
    statistics: list = field(default_factory=list)

    def county_receipts(self) -> list[TaxReceipt]:
        """The receipts of enterprises with an agreement in the county: the only ones the database path reads
        (another enterprise's receipts make no line, and are not counted as unmatched)."""
        enterprises = {a.enterprise for a in self.agreements}
        return [r for r in self.receipts if r.enterprise in enterprises]


def world(seed: int, county: str) -> World:
    rng = random.Random(seed)
    towns = [f"township:{county}{i}" for i in (101, 102, 103)]
    parks = ["park:P1", "park:P2"]
    fund = f"county:{county}/fund"
    w = World(county, SettlementPolicy(policy_id="POL", version=1, county=county, compensation_bp=rng.randint(0, 10_000),
                                       township_weight=rng.randint(0, 5), park_weight=rng.randint(1, 5),
                                       fund_weight=rng.randint(0, 5)))
    enterprises = [f"E{county}{i}" for i in range(rng.randint(2, 6))]
    for i, ent in enumerate(enterprises[:-1]):  # the last one has no agreement
        start_idx = rng.randint(month_index(date(2023, 1, 1)), month_index(date(2025, 6, 1)))
        length = rng.randint(12, 60)
        start, end = month_from_index(start_idx).start, month_from_index(start_idx + length - 1).end
        split_at = rng.randint(1, (length - 1) // 12 + 1)
        schedule = (ScheduleStep(1, split_at, rng.randint(0, 9), rng.randint(1, 9)),
                    ScheduleStep(split_at + 1, None, rng.randint(1, 9), rng.randint(0, 9)))
        taxes = rng.choice([{VAT: 5000}, {CIT: 4000}, {VAT: 5000, CIT: 4000}, {VAT: rng.randint(0, 10_000), CIT: 3}])
        origin, destination = rng.choice(towns), rng.choice(parks)
        terms = dict(agreement_id=f"AG{county}-{i}", enterprise=ent, origin=origin, destination=destination, start=start, end=end,
                     local_shares_bp=taxes, guaranteed_minimum_fen=rng.choice([None, rng.randint(0, 50_000_000)]),
                     statistics_weights=rng.choice([None, (3, 7)]))
        w.agreements.append(RevenueSharingAgreement(version=1, effective_from=start, schedule=schedule,
                                                    remainder_to=rng.choice([origin, destination]),
                                                    minimum_payer=rng.choice([None, fund]), **terms))
        if rng.random() < 0.4:
            effective = month_from_index(rng.randint(start_idx + 1, start_idx + length - 1)).start
            w.agreements.append(RevenueSharingAgreement(
                version=2, effective_from=effective, schedule=(ScheduleStep(1, None, rng.randint(1, 9), rng.randint(0, 9)),),
                remainder_to=destination, **terms))
    chains: list[list[TaxReceipt]] = []
    for k in range(rng.randint(5, 60)):
        if chains and rng.random() < 0.2:  # a correction of the newest receipt of a chain
            last = rng.choice(chains)[-1]
            r = TaxReceipt(receipt_id=f"c{county}-{k:03d}", enterprise=last.enterprise, month=last.month, tax_kind=last.tax_kind,
                           amount_fen=rng.randint(0, 10**8), corrects=last.receipt_id, replaced_amount_fen=last.amount_fen,
                           received_at=last.received_at + timedelta(hours=rng.randint(1, 24 * 90)))
            next(c for c in chains if c[-1] is last).append(r)
            w.receipts.append(r)
            continue
        m = month_from_index(rng.randint(FIRST, LAST))
        ent, tax = rng.choice(enterprises), rng.choice([VAT, CIT, "PIT"])
        for j in range(rng.choice([1, 1, 2, 3])):  # instalments of one month
            r = TaxReceipt(receipt_id=f"r{county}-{k:03d}-{j}", enterprise=ent, month=m, tax_kind=tax, amount_fen=rng.randint(1, 10**8),
                           received_at=at(m.end) + timedelta(hours=rng.randint(1, 24 * 200)))
            chains.append([r])
            w.receipts.append(r)
    for k in range(rng.randint(0, 10)):
        lots = tuple(ConsumedLot(f"L{k}-{j}", rng.choice([*enterprises, None]), rng.choice(towns), rng.randint(1, 10**6))
                     for j in range(rng.randint(1, 4)))
        on = month_from_index(rng.randint(FIRST, LAST)).start + timedelta(days=rng.randint(0, 27))
        w.allocations.append(QuotaAllocation(
            allocation_id=f"{rng.choice(['REQ', 'AL', 'Z'])}{county}-{k}:LAND", project_id=f"PRJ{k % 3}", asset="LAND",
            amount_units=sum(x.units for x in lots), price="1.00", amount_due_fen=rng.randint(0, 10**9),
            destination=rng.choice([None, *parks, towns[0]]), lots=lots, allocated_on=on,
            received_at=at(on) + timedelta(hours=rng.randint(0, 24 * 100))))
    for k in range(rng.randint(0, 3)):
        on = month_from_index(rng.randint(FIRST, LAST)).start + timedelta(days=rng.randint(0, 27))
        w.buybacks.append(BuyBack(buyback_id=f"buyback:LB{county}-{k}", enterprise=rng.choice(enterprises), lot_id=f"LB{county}-{k}",
                                  amount_fen=rng.randint(1, 10**7), agreed_on=on, received_at=at(on) + timedelta(days=rng.randint(0, 60))))
    for k in range(rng.randint(0, 12)):
        m = month_from_index(rng.randint(FIRST, LAST))
        w.statistics.append(StatisticsReport(report_id=f"S{county}-{k}", enterprise=rng.choice(enterprises), month=m,
                                             measure=rng.choice(["value_added", "output"]), amount_fen=rng.randint(0, 10**9),
                                             received_at=at(m.end) + timedelta(hours=rng.randint(1, 24 * 200))))
    return w


def load(runtime, w: World) -> None:
    """Store the facts as intake would have (received_at as given, even later than today's statements)."""
    now = datetime.now(CST)
    with runtime.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        repo.add_policy(w.policy, "test", now)
        for a in w.agreements:
            repo.add_agreement(a, w.county, "test", now)
        for r in w.receipts:
            repo.add_receipt(r, "http", None)
        for r in w.statistics:
            repo.add_statistics(r, "http")
        for a in w.allocations:
            repo.add_allocation(a, w.county, a.allocation_id.split(":")[0], str(uuid.uuid4()))
        for b in w.buybacks:
            repo.add_buybacks([(b, w.county, str(uuid.uuid4()))])


QUARTERS = [Period.parse(label) for label in ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2026-Q1")]
