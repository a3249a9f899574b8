"""Statements computed by hand (numbers in the comments), one rule at a time."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.settlement.domain import (
    CIT,
    VAT,
    LineKind,
    ScheduleStep,
    SettlementHistory,
    StatementError,
    StatisticsReport,
    compute_statement,
    finalize,
)
from services.settlement.domain.periods import Period
from settlement_factories import COUNTY, FUND, P1, T1, T2, agreement, allocation, at, policy, receipt


def money_lines(st, kind=None):
    return [ln for ln in st.lines if ln.kind.is_money and (kind is None or ln.kind is kind)]


def test_step_from_6_4_to_5_5_inside_a_quarter_and_two_taxes():
    # Agreement starts 2023-02: years 1-3 (to 2026-01) split 6:4, year 4 from 2026-02 splits 5:5.
    a = agreement(start=date(2023, 2, 1), effective_from=date(2023, 2, 1))
    receipts = [
        # Jan VAT 1,000,003: local floor(500,001.5) = 500,001; 6:4 -> origin floor(300,000.6) = 300,000
        receipt("r1", "2026-01", 1_000_003, at(2026, 2, 10)),
        # Jan CIT 100,001: local floor(40,000.4) = 40,000; 6:4 -> origin 24,000
        receipt("r2", "2026-01", 100_001, at(2026, 2, 11), tax=CIT),
        # Feb VAT in two instalments, 777,779 in all: local 388,889; 5:5 -> origin 194,444 (remainder 1 to park)
        receipt("r3", "2026-02", 500_000, at(2026, 3, 10)),
        receipt("r4", "2026-02", 277_779, at(2026, 3, 12)),
        # Mar CIT 1,234,567: local floor(493,826.8) = 493,826; 5:5 -> origin 246,913
        receipt("r5", "2026-03", 1_234_567, at(2026, 4, 10), tax=CIT),
    ]
    st = compute_statement(COUNTY, Period.parse("2026-Q1"), agreements=[a], policy=policy(), as_of=at(2026, 4, 15),
                           receipts=receipts)
    got = [(ln.month, ln.tax_kind, ln.amount_fen, ln.payer, ln.payee, ln.sources) for ln in st.lines]
    assert got == [
        ("2026-01", CIT, 24_000, P1, T1, ("r2",)),
        ("2026-01", VAT, 300_000, P1, T1, ("r1",)),
        ("2026-02", VAT, 194_444, P1, T1, ("r3", "r4")),
        ("2026-03", CIT, 246_913, P1, T1, ("r5",)),
    ]
    assert all(ln.kind is LineKind.REVENUE_SHARE and ln.agreement_id == "A1" for ln in st.lines)
    assert st.total_for(T1).receivable_fen == 765_357
    assert st.total_for(P1).net_fen == -765_357
    assert sum(t.net_fen for t in st.totals) == 0
    # the settled figures the next statement will need
    assert {(m.month.label, m.tax_kind): (m.tax_fen, m.origin_share_fen) for m in st.settled_months} == {
        ("2026-01", CIT): (100_001, 24_000),
        ("2026-01", VAT): (1_000_003, 300_000),
        ("2026-02", VAT): (777_779, 194_444),
        ("2026-03", CIT): (1_234_567, 246_913),
    }


def test_amendment_applies_from_its_effective_date():
    v1 = agreement()
    v2 = agreement(version=2, effective_from=date(2026, 2, 1), schedule=(ScheduleStep(1, None, 7, 3),))
    receipts = [receipt("j", "2026-01", 1_000_000, at(2026, 2, 5)), receipt("f", "2026-02", 1_000_000, at(2026, 3, 5))]
    st = compute_statement(COUNTY, Period.parse("2026-Q1"), agreements=[v2, v1], policy=policy(), as_of=at(2026, 4, 1),
                           receipts=receipts)
    # Jan: v1, year 4 (5:5) of 500,000 -> 250,000 ; Feb: v2 7:3 -> 350,000
    assert [(ln.month, ln.agreement_version, ln.amount_fen) for ln in st.lines] == [
        ("2026-01", 1, 250_000), ("2026-02", 2, 350_000)]


def test_guaranteed_minimum_topup_only_in_the_period_closing_the_year():
    a = agreement(agreement_id="A2", start=date(2025, 1, 1), effective_from=date(2025, 1, 1), end=date(2026, 12, 31),
                  local_shares_bp={VAT: 5000}, schedule=(ScheduleStep(1, None, 6, 4),), guaranteed_minimum_fen=1_000_000)
    receipts = [
        receipt("q1", "2025-03", 1_000_000, at(2025, 4, 10)),  # local 500,000 -> origin 300,000
        receipt("q3", "2025-09", 500_001, at(2025, 10, 10)),  # local 250,000 -> origin 150,000
    ]
    history = SettlementHistory.empty()
    statements = []
    for q, close in (("2025-Q1", at(2025, 4, 20)), ("2025-Q2", at(2025, 7, 20)), ("2025-Q3", at(2025, 10, 20)),
                     ("2025-Q4", at(2026, 1, 20))):
        st = compute_statement(COUNTY, Period.parse(q), agreements=[a], policy=policy(), as_of=close,
                               receipts=receipts, finalized_prior=history)
        st, _ = finalize(st)
        history = history.after(st)
        statements.append(st)
    assert [ln.amount_fen for ln in statements[0].lines] == [300_000]
    assert statements[1].lines == ()
    assert [ln.amount_fen for ln in statements[2].lines] == [150_000]
    # year 1 total 450,000 < 1,000,000: the park tops up 550,000 in the statement holding 2025-12
    (topup,) = statements[3].lines
    assert (topup.kind, topup.payer, topup.payee, topup.amount_fen, topup.agreement_year, topup.month) == (
        LineKind.GUARANTEED_MINIMUM_TOPUP, P1, T1, 550_000, 1, "2025-12")
    assert history.topup("A2", 1) == 550_000

    # a late December receipt for year 1 (after Q4 was finalized) raises the share and lowers the top-up
    late = receipt("late", "2025-12", 200_000, at(2026, 2, 1))  # local 100,000 -> origin 60,000
    st = compute_statement(COUNTY, Period.parse("2026-Q1"), agreements=[a], policy=policy(), as_of=at(2026, 4, 20),
                           receipts=receipts + [late], finalized_prior=history)
    got = sorted((ln.kind, ln.adjusts, ln.payer, ln.payee, ln.amount_fen) for ln in st.lines)
    assert got == sorted([
        (LineKind.ADJUSTMENT, LineKind.REVENUE_SHARE, P1, T1, 60_000),
        (LineKind.ADJUSTMENT, LineKind.GUARANTEED_MINIMUM_TOPUP, T1, P1, 60_000),  # top-up now 490,000: 60,000 back
    ])
    assert st.total_for(T1).net_fen == 0


def test_minimum_payer_can_be_the_county_fund():
    a = agreement(start=date(2025, 1, 1), effective_from=date(2025, 1, 1), end=date(2025, 12, 31),
                  schedule=(ScheduleStep(1, None, 6, 4),), guaranteed_minimum_fen=1_000, minimum_payer=FUND)
    st = compute_statement(COUNTY, Period.parse("2025"), agreements=[a], policy=policy(), as_of=at(2026, 1, 5))
    assert [(ln.payer, ln.payee, ln.amount_fen) for ln in st.lines] == [(FUND, T1, 1_000)]


def test_compensation_across_lots_of_several_enterprises_with_exact_remainder():
    alloc = allocation("AL1", 1_000_001, [("L1", "E1", T1, 3000), ("L2", "E2", T1, 3000), ("L3", "E3", T2, 1000)])
    st = compute_statement(COUNTY, Period.parse("2026-02"), agreements=[], policy=policy(), as_of=at(2026, 3, 1),
                           allocations=[alloc])
    comp = {ln.payee: ln.amount_fen for ln in money_lines(st, LineKind.COMPENSATION)}
    # compensation floor(1,000,001 x 30%) = 300,000; 3:3:1 -> 128,571 / 128,571 / 42,857 (299,999);
    # the 1 fen left goes to the largest contributor, E1 and E2 tie -> the smaller credit code, E1
    assert comp == {"enterprise:E1": 128_572, "enterprise:E2": 128_571, "enterprise:E3": 42_857}
    shares = {ln.payee: ln.amount_fen for ln in money_lines(st, LineKind.PROCEEDS_SHARE)}
    # rest 700,001 by township 4 x units, park 3 x 7000, fund 3 x 7000 = 24000 : 4000 : 21000 : 21000
    # -> 240,000 / 40,000 / 210,000 / 210,000 (+1 remainder to the fund)
    assert shares == {T1: 240_000, T2: 40_000, P1: 210_000, FUND: 210_001}
    assert st.total_for("project:PRJ1").payable_fen == 1_000_001
    assert all(ln.payer == "project:PRJ1" and ln.allocation_id == "AL1" for ln in st.lines)
    e1 = next(ln for ln in st.lines if ln.payee == "enterprise:E1")
    assert e1.sources == ("AL1", "L1")
    assert st.compensation_payable() == comp


def test_buyback_is_paid_by_the_county_fund():
    from services.settlement.domain import BuyBack

    b = BuyBack(buyback_id="B1", enterprise="E9", lot_id="L9", amount_fen=12_345, agreed_on=date(2026, 2, 3),
                received_at=at(2026, 2, 3))
    st = compute_statement(COUNTY, Period.parse("2026-02"), agreements=[], policy=policy(), as_of=at(2026, 3, 1),
                           buybacks=[b])
    (ln,) = st.lines
    assert (ln.kind, ln.payer, ln.payee, ln.amount_fen, ln.sources) == (LineKind.BUYBACK, FUND, "enterprise:E9", 12_345,
                                                                         ("B1", "L9"))


def test_statistics_are_shared_but_not_money():
    from services.settlement.domain import StatisticsReport

    a = agreement(statistics_weights=(3, 7))
    rep = StatisticsReport(report_id="S1", enterprise="E1", month=Period.parse("2026-01"), measure="value_added",
                           amount_fen=1_000_001, received_at=at(2026, 2, 1))
    st = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 2),
                           statistics=[rep], receipts=[receipt("r", "2026-01", 100, at(2026, 2, 1))])
    stat = [ln for ln in st.lines if ln.kind is LineKind.STATISTICS_SHARE]
    assert [(ln.payer, ln.payee, ln.amount_fen, ln.measure) for ln in stat] == [(P1, T1, 300_000, "value_added")]
    # only the revenue line (100 -> local 50 -> 5:5 -> 25) is money
    assert [(t.party, t.net_fen) for t in st.totals] == [(P1, -25), (T1, 25)]
    assert [(s.party, s.gained, s.ceded) for s in st.statistics_totals] == [(P1, 0, 300_000), (T1, 300_000, 0)]


def test_corrections_after_finalization_become_adjustments_in_the_next_period():
    a = agreement()  # 2026 is year 4: 5:5
    r1 = receipt("r1", "2026-01", 1_000_000, at(2026, 2, 3))
    jan = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                            receipts=[r1])
    jan, postings = finalize(jan)
    assert [ln.amount_fen for ln in jan.lines] == [250_000]
    assert [(p.debit_account, p.credit_account, p.amount_fen, p.transfer_id) for p in postings] == [
        (f"{P1}/CNY", f"{T1}/CNY", 250_000, "settlement:320623:2026-01:L00001")]
    h1 = SettlementHistory.empty().after(jan)

    # r2 replaces r1 with 1,200,001: share floor(600,000.5)=600,000 -> 300,000; 50,000 more than settled
    r2 = receipt("r2", "2026-01", 1_200_001, at(2026, 2, 20), corrects="r1", replaced=1_000_000)
    feb_own = receipt("f1", "2026-02", 10, at(2026, 3, 2))  # local 5 -> 2 / 3 (remainder to park)
    feb = compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=policy(), as_of=at(2026, 3, 5),
                            receipts=[r1, r2, feb_own], finalized_prior=h1)
    assert [(ln.kind, ln.month, ln.payer, ln.payee, ln.amount_fen, ln.sources) for ln in feb.lines] == [
        (LineKind.REVENUE_SHARE, "2026-02", P1, T1, 2, ("f1",)),
        (LineKind.ADJUSTMENT, "2026-01", P1, T1, 50_000, ("r2",)),
    ]
    feb, _ = finalize(feb)
    h2 = h1.after(feb)
    assert h2.month("A1", VAT, Period.parse("2026-01")).origin_share_fen == 300_000

    # r3 lowers it to 900,000: share 225,000, so the township gives back 75,000
    r3 = receipt("r3", "2026-01", 900_000, at(2026, 3, 10), corrects="r2", replaced=1_200_001)
    mar = compute_statement(COUNTY, Period.parse("2026-03"), agreements=[a], policy=policy(), as_of=at(2026, 4, 5),
                            receipts=[r1, r2, r3, feb_own], finalized_prior=h2)
    assert [(ln.kind, ln.payer, ln.payee, ln.amount_fen) for ln in mar.lines] == [(LineKind.ADJUSTMENT, T1, P1, 75_000)]

    # the January statement recomputed as it was finalized is unchanged by everything that came later
    again = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=jan.as_of,
                              receipts=[r3, feb_own, r2, r1])
    assert again.content_hash == jan.content_hash


def test_correction_inside_the_same_draft_just_replaces():
    a = agreement()
    r1 = receipt("r1", "2026-01", 1_000_000, at(2026, 2, 3))
    r2 = receipt("r2", "2026-01", 1_200_001, at(2026, 2, 4), corrects="r1", replaced=1_000_000)
    st = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                           receipts=[r2, r1])
    assert [(ln.kind, ln.amount_fen, ln.sources) for ln in st.lines] == [(LineKind.REVENUE_SHARE, 300_000, ("r1", "r2"))]


def test_late_original_receipt_lands_in_the_first_open_period():
    a = agreement()
    jan = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5))
    jan, postings = finalize(jan)
    assert jan.lines == () and postings == ()
    h = SettlementHistory.empty().after(jan)
    late = receipt("late", "2026-01", 400, at(2026, 2, 6))
    feb = compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=policy(), as_of=at(2026, 3, 5),
                            receipts=[late], finalized_prior=h)
    (ln,) = feb.lines
    assert (ln.kind, ln.adjusts, ln.month, ln.amount_fen) == (LineKind.ADJUSTMENT, LineKind.REVENUE_SHARE, "2026-01", 100)


def test_events_outside_the_statement_are_skipped_and_unmatched_counted():
    a = agreement()
    receipts = [
        receipt("next-month", "2026-02", 100, at(2026, 3, 1)),
        receipt("after-as-of", "2026-01", 100, at(2026, 2, 9)),
        receipt("no-agreement", "2026-01", 100, at(2026, 2, 1), enterprise="E404"),
        receipt("untaxed-kind", "2026-01", 100, at(2026, 2, 1), tax="PIT"),
    ]
    st = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                           receipts=receipts)
    assert st.lines == () and st.unmatched_receipts == 2


def test_statement_refusals():
    a = agreement()
    jan = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5))
    h = SettlementHistory.empty().after(finalize(jan)[0])
    with pytest.raises(StatementError) as e:
        compute_statement(COUNTY, Period.parse("2026-03"), agreements=[a], policy=policy(), as_of=at(2026, 4, 5),
                          finalized_prior=h)
    assert e.value.reason == "previous_period_not_closed"
    with pytest.raises(StatementError) as e:
        compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 4, 5),
                          finalized_prior=h)
    assert e.value.reason == "period_already_closed"
    with pytest.raises(StatementError) as e:
        compute_statement("320999", Period.parse("2026-02"), agreements=[a], policy=policy(), as_of=at(2026, 3, 5))
    assert e.value.reason == "policy_for_other_county"
    with pytest.raises(StatementError) as e:
        draft = compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=policy(), as_of=at(2026, 2, 20),
                                  finalized_prior=h)
        finalize(draft)
    assert e.value.reason == "period_not_ended"
    with pytest.raises(StatementError) as e:
        finalize(finalize(compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=policy(),
                                            as_of=at(2026, 3, 2), finalized_prior=h))[0])
    assert e.value.reason == "already_finalized"
    with pytest.raises(StatementError) as e:
        compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                          receipts=[receipt("r", "2026-01", 5, at(2026, 2, 1)), receipt("r", "2026-01", 5, at(2026, 2, 1))])
    assert e.value.reason == "duplicate_input"
    with pytest.raises(StatementError) as e:
        compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                          receipts=[receipt("r", "2026-01", 5, at(2026, 2, 1), corrects="r0")])
    assert e.value.reason == "correction_not_resolved"
    with pytest.raises(StatementError) as e:  # a correction whose original never reached the history
        compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=policy(), as_of=at(2026, 3, 5),
                          finalized_prior=h,
                          receipts=[receipt("r", "2026-01", 5, at(2026, 2, 10), corrects="r0", replaced=100)])
    assert e.value.reason == "negative_month_total"
    with pytest.raises(StatementError) as e:
        compute_statement(COUNTY, Period.parse("2026-02"), agreements=[], policy=policy(), as_of=at(2026, 3, 5),
                          allocations=[allocation("X", 10, [("L1", "E1", T1, 5), ("L1", "E2", T1, 5)])])
    assert e.value.reason == "duplicate_lot"


def test_source_cap_keeps_memory_bounded_without_changing_the_hash():
    a = agreement()
    receipts = [receipt(f"r{i:04d}", "2026-01", 100 + i, at(2026, 2, 1)) for i in range(300)]
    full = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                             receipts=receipts, max_sources_per_line=None)
    capped = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                               receipts=iter(receipts), max_sources_per_line=5)
    assert capped.content_hash == full.content_hash
    (ln,) = capped.lines
    assert ln.sources == ("r0000", "r0001", "r0002", "r0003", "r0004") and ln.source_count == 300
    assert len(full.lines[0].sources) == 300


@pytest.mark.parametrize("cap", [None, 0, 1, 2, 100])
def test_a_fact_given_twice_is_refused_whatever_the_source_cap(cap):
    # a cap keeps only the smallest ids of a line: the repeat must be found all the same, not summed twice
    receipts = [receipt(f"r{i}", "2026-01", 1_000_000, at(2026, 2, 5)) for i in range(1, 4)]
    reports = [StatisticsReport(report_id=f"s{i}", enterprise="E1", month=Period.parse("2026-01"), measure="value_added",
                                amount_fen=100, received_at=at(2026, 2, 5)) for i in range(1, 4)]
    a = agreement(statistics_weights=(1, 1))
    for given in (dict(receipts=receipts + [receipts[-1]]), dict(statistics=reports + [reports[-1]])):
        with pytest.raises(StatementError) as e:
            compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 10),
                              max_sources_per_line=cap, **given)
        assert e.value.reason == "duplicate_input" and ("r3" in str(e.value) or "s3" in str(e.value))


def test_a_period_has_ended_once_its_last_day_is_over_in_china():
    a = agreement()

    def march(as_of):
        return compute_statement(COUNTY, Period.parse("2026-03"), agreements=[a], policy=policy(), as_of=as_of)

    # 00:30 on 1 April in Tokyo is 23:30 on 31 March in China: March has not ended
    with pytest.raises(StatementError) as e:
        finalize(march(datetime(2026, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=9)))))
    assert e.value.reason == "period_not_ended"
    # 16:30 on 31 March in UTC is 00:30 on 1 April in China: it has
    final, _ = finalize(march(datetime(2026, 3, 31, 16, 30, tzinfo=timezone.utc)))
    assert final.status == "finalized"


MINIMUM_A = dict(agreement_id="A", start=date(2023, 1, 1), local_shares_bp={VAT: 5000},
                 schedule=(ScheduleStep(1, None, 6, 4),), guaranteed_minimum_fen=1_000_000)


@pytest.mark.parametrize("v1_end, v2_end, year_end", [
    (date(2025, 6, 30), date(2027, 12, 31), "2025-12"),  # v2 extends: year 3 runs to 2025-12, not v1's 2025-06
    (date(2025, 12, 31), date(2025, 6, 30), "2025-06"),  # v2 shortens: year 3 ends 2025-06, not v1's 2025-12
])
def test_a_late_receipt_corrects_the_topup_of_a_year_an_amendment_resized(v1_end, v2_end, year_end):
    # the late month (2025-02) is governed by v1; its agreement year ends where v2, in force then, says
    v1 = agreement(version=1, effective_from=date(2023, 1, 1), end=v1_end, **MINIMUM_A)
    v2 = agreement(version=2, effective_from=date(2025, 4, 1), end=v2_end, **MINIMUM_A)
    receipts = [receipt("r1", "2025-03", 1_000_000, at(2025, 4, 10))]  # origin 300,000 in year 3
    history = SettlementHistory.empty()
    for label, cut in (("2025-Q1", at(2025, 4, 20)), ("2025-Q2", at(2025, 7, 20)), ("2025-Q3", at(2025, 10, 20)),
                       ("2025-Q4", at(2026, 1, 20))):
        st, _ = finalize(compute_statement(COUNTY, Period.parse(label), agreements=[v1, v2], policy=policy(),
                                           as_of=cut, receipts=receipts, finalized_prior=history))
        history = history.after(st)
        if st.period.contains(Period.parse(year_end)):
            (topup,) = [ln for ln in st.lines if ln.kind is LineKind.GUARANTEED_MINIMUM_TOPUP]
            assert (topup.month, topup.agreement_year, topup.amount_fen) == (year_end, 3, 700_000)
    assert history.topup("A", 3) == 700_000

    late = receipt("late", "2025-02", 200_000, at(2026, 2, 1))  # local 100,000 -> origin +60,000 for year 3
    st = compute_statement(COUNTY, Period.parse("2026-Q1"), agreements=[v1, v2], policy=policy(),
                           as_of=at(2026, 4, 20), receipts=receipts + [late], finalized_prior=history)
    got = sorted((ln.adjusts, ln.payer, ln.payee, ln.amount_fen, ln.month) for ln in st.lines)
    assert got == sorted([
        (LineKind.REVENUE_SHARE, P1, T1, 60_000, "2025-02"),
        (LineKind.GUARANTEED_MINIMUM_TOPUP, T1, P1, 60_000, year_end),  # top-up now 640,000: 60,000 back
    ])
    assert {(t.agreement_id, t.agreement_year, t.amount_fen) for t in st.settled_topups} == {("A", 3, 640_000)}
