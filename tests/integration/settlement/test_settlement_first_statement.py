"""The county's first statement takes the facts of months before its period that were recorded by then — a receipt,
an allocation, a buy-back, a statistics report — as ``history.placement`` says: no earlier statement took them, and
once it is finalized they were received before the cut-off, so no later statement would. Through the service's
storage path (facts narrowed by SQL, ``storage.inputs.in_scope``), on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date, datetime

from services.settlement.domain import (
    VAT,
    BuyBack,
    ConsumedLot,
    LineKind,
    QuotaAllocation,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementHistory,
    SettlementPolicy,
    StatisticsReport,
    TaxReceipt,
    compute_statement,
    finalize,
)
from services.settlement.domain.periods import Period
from services.settlement.statement_runs import StatementRuns
from tests.integration.settlement.support import new_county
from tests.integration.settlement.worlds import World, at, load


def early_world(county: str) -> World:
    """Facts of January and February 2025, all recorded before the first statement (2025-03) is finalized, and one
    of March."""
    E, T = f"E{county}", f"township:{county}101"
    w = World(county, SettlementPolicy(policy_id="POL", version=1, county=county, compensation_bp=3000,
                                       township_weight=4, park_weight=3, fund_weight=3))
    w.agreements.append(RevenueSharingAgreement(
        agreement_id=f"AG{county}", version=1, effective_from=date(2023, 1, 1), enterprise=E, origin=T,
        destination="park:P1", local_shares_bp={VAT: 5000}, schedule=(ScheduleStep(1, None, 6, 4),),
        start=date(2023, 1, 1), end=date(2027, 12, 31), remainder_to="park:P1", statistics_weights=(1, 1)))
    jan = Period.parse("2025-01")
    w.receipts += [
        TaxReceipt(receipt_id=f"early-{county}", enterprise=E, month=jan, tax_kind=VAT, amount_fen=1_000_000,
                   received_at=at(date(2025, 2, 10))),
        TaxReceipt(receipt_id=f"own-{county}", enterprise=E, month=Period.parse("2025-03"), tax_kind=VAT,
                   amount_fen=2_000_000, received_at=at(date(2025, 4, 2))),
    ]
    w.statistics.append(StatisticsReport(report_id=f"va-{county}", enterprise=E, month=jan, measure="value_added",
                                         amount_fen=500, received_at=at(date(2025, 2, 10))))
    w.allocations.append(QuotaAllocation(
        allocation_id=f"REQ{county}:LAND", project_id="PRJ1", asset="LAND", amount_units=10, price="1.00",
        amount_due_fen=1_000_000, destination="park:P1", lots=(ConsumedLot(f"L1-{county}", E, T, 10),),
        allocated_on=date(2025, 2, 28), received_at=at(date(2025, 3, 1), 9)))
    w.buybacks.append(BuyBack(buyback_id=f"buyback:LB-{county}", enterprise=E, lot_id=f"LB-{county}",
                              amount_fen=48_000, agreed_on=date(2025, 2, 20), received_at=at(date(2025, 2, 21))))
    return w


def in_memory(w: World, label: str, as_of: datetime, history: SettlementHistory):
    return compute_statement(w.county, Period.parse(label), agreements=w.agreements, policy=w.policy, as_of=as_of,
                             receipts=w.receipts, allocations=w.allocations, buybacks=w.buybacks,
                             statistics=w.statistics, finalized_prior=history)


def test_the_first_statement_takes_the_earlier_months_facts_and_no_later_one_takes_them_again(runtime):
    county = new_county()
    w = early_world(county)
    load(runtime, w)
    march_cut, april_cut = at(date(2025, 4, 5)), at(date(2025, 5, 5))

    march = StatementRuns(runtime, now=lambda: march_cut).finalize(county, "2025-03", "test").statement
    expected, _ = finalize(in_memory(w, "2025-03", march_cut, SettlementHistory.empty()))
    assert (march.content_hash, march.lines) == (expected.content_hash, expected.lines)
    by_kind = {}
    for ln in march.lines:
        by_kind.setdefault(ln.kind, set()).update(ln.sources)
    # January's receipt as an adjustment (local 500,000 -> 6:4 -> 300,000), February's proceeds, buy-back, statistic
    (early,) = [ln for ln in march.lines if f"early-{county}" in ln.sources]
    assert (early.kind, early.adjusts, early.month, early.amount_fen) == (
        LineKind.ADJUSTMENT, LineKind.REVENUE_SHARE, "2025-01", 300_000)
    assert f"REQ{county}:LAND" in by_kind[LineKind.COMPENSATION] & by_kind[LineKind.PROCEEDS_SHARE]
    assert f"buyback:LB-{county}" in by_kind[LineKind.BUYBACK]
    assert f"va-{county}" in by_kind[LineKind.STATISTICS_SHARE]
    assert sum(ln.amount_fen for ln in march.lines if ln.allocation_id) == 1_000_000

    # April: received before March's cut-off, none of them again
    april = StatementRuns(runtime, now=lambda: april_cut).finalize(county, "2025-04", "test").statement
    again, _ = finalize(in_memory(w, "2025-04", april_cut, SettlementHistory.empty().after(expected)))
    assert (april.content_hash, april.lines) == (again.content_hash, again.lines) and april.lines == ()
