"""Statistics follow rounding rule 6 through the service: a finalization stores, per agreement, measure and month, the
statistic and the origin's part it settled (table ``settled_statistics``), and the next
statement reads them back, so a month whose reports arrive across two periods is attributed as the split of its
total — the same lines and hash as ``compute_statement`` in memory, a draft re-run giving the same hash. On SQLite
and PostgreSQL."""
from __future__ import annotations

from datetime import date

from sqlalchemy import text

from services.settlement.domain import (
    VAT,
    LineKind,
    RevenueSharingAgreement,
    ScheduleStep,
    SettledStatistic,
    SettlementHistory,
    SettlementPolicy,
    StatisticsReport,
    TaxReceipt,
    compute_statement,
    finalize,
)
from services.settlement.domain.periods import Period
from services.settlement.domain.rounding import two_way_part
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.statements import StatementsRepository
from tests.integration.settlement.support import new_county
from tests.integration.settlement.worlds import World, at, load

JAN = Period.parse("2025-01")


def split_world(county: str) -> World:
    """Value added of January 2025 reported 10 before January's cut-off and 10 after it; weights 1:2 with the
    remainder to the origin (10 -> 4, 20 -> 7); a VAT receipt of the same month, whose history shares the table."""
    E, T = f"E{county}", f"township:{county}101"
    w = World(county, SettlementPolicy(policy_id="POL", version=1, county=county, compensation_bp=3000,
                                       township_weight=4, park_weight=3, fund_weight=3))
    w.agreements.append(RevenueSharingAgreement(
        agreement_id=f"AG{county}", version=1, effective_from=date(2023, 1, 1), enterprise=E, origin=T,
        destination="park:P1", local_shares_bp={VAT: 5000}, schedule=(ScheduleStep(1, None, 6, 4),),
        start=date(2023, 1, 1), end=date(2027, 12, 31), remainder_to=T, statistics_weights=(1, 2)))
    w.receipts.append(TaxReceipt(receipt_id=f"vat-{county}", enterprise=E, month=JAN, tax_kind=VAT,
                                 amount_fen=1_000_000, received_at=at(date(2025, 2, 1))))
    w.statistics += [
        StatisticsReport(report_id=f"va1-{county}", enterprise=E, month=JAN, measure="value_added", amount_fen=10,
                         received_at=at(date(2025, 2, 1))),
        StatisticsReport(report_id=f"va2-{county}", enterprise=E, month=JAN, measure="value_added", amount_fen=10,
                         received_at=at(date(2025, 2, 10))),
    ]
    return w


def in_memory(w: World, label: str, as_of, history: SettlementHistory):
    return compute_statement(w.county, Period.parse(label), agreements=w.agreements, policy=w.policy, as_of=as_of,
                             receipts=w.receipts, statistics=w.statistics, finalized_prior=history)


def test_a_month_reported_across_two_periods_is_attributed_as_the_split_of_its_total(runtime):
    county = new_county()
    w = split_world(county)
    load(runtime, w)
    T = f"township:{county}101"
    jan_cut, feb_cut = at(date(2025, 2, 5)), at(date(2025, 3, 5))

    jan = StatementRuns(runtime, now=lambda: jan_cut).finalize(county, "2025-01", "test").statement
    expected_jan, _ = finalize(in_memory(w, "2025-01", jan_cut, SettlementHistory.empty()))
    assert (jan.content_hash, jan.lines, jan.settled_statistics) == (
        expected_jan.content_hash, expected_jan.lines, expected_jan.settled_statistics)
    with runtime.db.sessions() as s:
        rows = s.execute(text("SELECT tax_kind, tax_fen, origin_share_fen, settled_in FROM settled_months "
                              "WHERE county_code = :c ORDER BY tax_kind"), {"c": county}).all()
        stats = s.execute(text("SELECT measure, month, total, origin_part, settled_in FROM settled_statistics "
                               "WHERE county_code = :c"), {"c": county}).all()
        history = StatementsRepository(s).load_history(county)
    assert [tuple(r) for r in rows] == [("VAT", 1_000_000, 300_000, "2025-01")]
    assert [tuple(r) for r in stats] == [("value_added", "2025-01", 10, 4, "2025-01")]
    assert list(history.statistics.values()) == [SettledStatistic(f"AG{county}", "value_added", JAN, 10, 4)]
    assert [m.tax_kind for m in history.months.values()] == [VAT]

    feb_runs = StatementRuns(runtime, now=lambda: feb_cut)
    draft = feb_runs.draft(county, "2025-02", "test").statement
    assert feb_runs.draft(county, "2025-02", "test").statement.content_hash == draft.content_hash
    feb = feb_runs.finalize(county, "2025-02", "test", expected_hash=draft.content_hash).statement
    expected_feb, _ = finalize(in_memory(w, "2025-02", feb_cut, SettlementHistory.empty().after(expected_jan)))
    assert (feb.content_hash, feb.lines, feb.settled_statistics) == (
        expected_feb.content_hash, expected_feb.lines, expected_feb.settled_statistics)
    (late,) = feb.lines
    assert (late.kind, late.payee, late.month, late.amount_fen, late.sources) == (
        LineKind.STATISTICS_SHARE, T, "2025-01", 3, (f"va2-{county}",))

    # summed over both statements, the origin has exactly the split of January's total (7), not 4 + 4
    gained = sum(ln.amount_fen for st in (jan, feb) for ln in st.lines
                 if ln.kind is LineKind.STATISTICS_SHARE and ln.payee == T and ln.month == "2025-01")
    assert gained == two_way_part(20, 1, 2, True) == 7
    with runtime.db.sessions() as s:
        history = StatementsRepository(s).load_history(county)
    assert list(history.statistics.values()) == [SettledStatistic(f"AG{county}", "value_added", JAN, 20, 7)]
