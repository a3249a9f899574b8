"""Content hashes pinned: a world touching every kind of line (an amendment, a guaranteed minimum paid by the park
and one paid by the county fund, late receipts, a correction of a settled month, instalments, reclaimed land, a
project outside any park, a late allocation, a buy-back, statistics), finalized over three quarters with different
source caps. The hashes are those the statement code gave before it was rewritten for speed (summing per month,
lines handed out in order, one-pass tally): same inputs, same hash — finance compares them across runs."""
from __future__ import annotations

from datetime import date

from services.settlement.domain import (
    CIT,
    VAT,
    BuyBack,
    ScheduleStep,
    SettlementHistory,
    StatisticsReport,
    compute_statement,
    finalize,
)
from services.settlement.domain.periods import Period
from settlement_factories import COUNTY, FUND, T1, T2, agreement, allocation, at, policy, receipt

PINNED = {  # quarter: (content hash, lines)
    "2025-Q1": ("ce287db6f9a8ed6d67d8778b70a8f274b613c037e108273e8aa0b2651e46a693", 16),
    "2025-Q2": ("2d6033eef6627dfc69dcaff6461439427e62f21fc846b903790cd4f237ef65cc", 15),
    "2025-Q3": ("ca9f5962c707f8b4b9db0aa6f41fba1e2e44b0b4a95b99f40ebe37d1e3cdeb0e", 1),
}


def golden_world() -> dict:
    a1 = dict(start=date(2024, 7, 1), end=date(2027, 6, 30), guaranteed_minimum_fen=90_000_000, statistics_weights=(3, 7))
    agreements = [
        agreement(effective_from=date(2024, 7, 1), schedule=(ScheduleStep(1, 1, 6, 4), ScheduleStep(2, None, 5, 5)), **a1),
        agreement(version=2, effective_from=date(2025, 5, 1), schedule=(ScheduleStep(1, None, 7, 3),), remainder_to=T1, **a1),
        agreement(agreement_id="B2", enterprise="E2", origin=T2, destination="park:P2", local_shares_bp={VAT: 3333},
                  schedule=(ScheduleStep(1, None, 1, 2),), start=date(2025, 1, 1), effective_from=date(2025, 1, 1),
                  end=date(2026, 12, 31), remainder_to=T2, guaranteed_minimum_fen=5_000_000, minimum_payer=FUND),
    ]
    receipts = [
        receipt("r01", "2025-01", 10_000_001, at(2025, 2, 10)), receipt("r02", "2025-01", 3_333_333, at(2025, 2, 11), tax=CIT),
        receipt("r03", "2025-02", 777_777, at(2025, 3, 3)), receipt("r04", "2025-02", 222_223, at(2025, 3, 4)),
        receipt("r05", "2025-03", 5_000_000, at(2025, 4, 2), enterprise="E2"),
        receipt("r06", "2025-03", 99, at(2025, 4, 2), tax="PIT"),
        receipt("r07", "2025-02", 1_000_000, at(2025, 4, 20)),  # late for Q1: an adjustment in Q2
        receipt("r08", "2025-01", 9_000_000, at(2025, 5, 2), corrects="r01", replaced=10_000_001),  # a settled month
        receipt("r09", "2025-05", 12_345_679, at(2025, 6, 5)),
        receipt("r10", "2025-06", 8_000_000, at(2025, 7, 3), enterprise="E2"),
        receipt("r11", "2025-06", 4_000_000, at(2025, 7, 3), tax=CIT), receipt("r12", "2025-07", 1, at(2025, 8, 1)),
        receipt("r13", "2025-04", 2_000_000, at(2025, 8, 9), enterprise="E2"),  # late for Q2
        receipt("r14", "2025-08", 6_000_000, at(2025, 9, 2), enterprise="E9"),  # no agreement
    ]
    allocations = [
        allocation("REQ1:LAND", 1_000_001, [("L1", "E7", T1, 3000), ("L2", "E8", T1, 3000), ("L3", "E3", T2, 1000)],
                   on=date(2025, 2, 10)),
        allocation("REQ2:LAND", 500_000, [("L4", None, T2, 2), ("L5", "E7", T1, 6)], on=date(2025, 3, 31),
                   destination=None, project="PRJ2"),
        allocation("REQ3:LAND", 123_456_789, [("L6", "E8", T2, 5)], on=date(2025, 5, 5), destination=T2, project="PRJ3"),
        allocation("AAA:LAND", 7, [("L7", "E3", T1, 1)], on=date(2025, 3, 1), received=at(2025, 4, 25)),  # late
    ]
    buybacks = [BuyBack(buyback_id="buyback:L9", enterprise="E9", lot_id="L9", amount_fen=12_345,
                        agreed_on=date(2025, 6, 3), received_at=at(2025, 6, 3))]
    statistics = [
        StatisticsReport(report_id="S1", enterprise="E1", month=Period.parse("2025-01"), measure="value_added",
                         amount_fen=1_000_001, received_at=at(2025, 2, 1)),
        StatisticsReport(report_id="S2", enterprise="E1", month=Period.parse("2025-04"), measure="output",
                         amount_fen=5_000_000, received_at=at(2025, 5, 1)),
    ]
    return dict(agreements=agreements, receipts=receipts, allocations=allocations, buybacks=buybacks,
                statistics=statistics)


def run_quarters(policies) -> dict:
    """quarter: (content hash, lines, policy version named), each quarter finalized before the next."""
    w = golden_world()
    history = SettlementHistory.empty()
    got = {}
    for label, cutoff, cap in (("2025-Q1", at(2025, 4, 15), None), ("2025-Q2", at(2025, 7, 15), 1),
                               ("2025-Q3", at(2025, 10, 15), 1000)):
        st = compute_statement(COUNTY, Period.parse(label), policy=policies, as_of=cutoff, finalized_prior=history,
                               max_sources_per_line=cap, **w)
        got[label] = (st.content_hash, len(st.lines), st.policy_version)
        st, _ = finalize(st)
        history = history.after(st)
    return got


def test_content_hashes_are_those_pinned():
    assert {q: (h, n) for q, (h, n, _) in run_quarters(policy()).items()} == PINNED


def test_a_later_policy_version_changes_no_pinned_hash():
    """The county changes its policy from 2025-10, after the world's last allocation: the statements of the earlier
    quarters are the pinned ones, whenever drafted. From 2025-04 instead: Q1 is unchanged — its late allocation of
    March (taken by Q2) is split as Q1 would have split it — and only Q2's May allocation changes."""
    later = policy(version=2, effective_from=date(2025, 10, 1), compensation_bp=9000, township_weight=1, park_weight=0,
                   fund_weight=0)
    assert run_quarters([policy(), later]) == {q: (h, n, 1) for q, (h, n) in PINNED.items()}
    april = policy(version=2, effective_from=date(2025, 4, 1), compensation_bp=9000, township_weight=1, park_weight=0,
                   fund_weight=0)
    got = run_quarters([policy(), april])
    assert got["2025-Q1"] == (*PINNED["2025-Q1"], 1)
    assert got["2025-Q2"][0] != PINNED["2025-Q2"][0] and got["2025-Q2"][2] == 2
    assert got["2025-Q3"] == (*PINNED["2025-Q3"], 2)  # no allocation in Q3
