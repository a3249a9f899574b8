"""Statistics follow rounding rule 6 like tax: a month's statistic reported across several statement periods is
attributed as the split of its total, whatever the order and the periods in which its reports arrived. Each
finalized statement leaves what it settled per (agreement, measure, month) in the history; a later statement's
``statistics_share`` line for that month is ``origin_statistics(prior total + late amount) - prior part``."""
from __future__ import annotations

import os
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.settlement.domain import (
    LineKind,
    SettlementHistory,
    StatisticsReport,
    compute_statement,
    finalize,
)
from services.settlement.domain.periods import Period
from services.settlement.domain.rounding import two_way_part
from settlement_factories import COUNTY, P1, T1, agreement, at, policy

JAN = Period.parse("2026-01")
EXAMPLES = int(os.environ.get("SETTLEMENT_EXAMPLES", "40"))


def report(rid: str, amount: int, received, *, month: Period = JAN, measure: str = "value_added") -> StatisticsReport:
    return StatisticsReport(report_id=rid, enterprise="E1", month=month, measure=measure, amount_fen=amount,
                            received_at=received)


def chain(agreements, reports, periods):
    """Statements of ``periods`` (label, cut-off) finalized one after the other over the same reports."""
    history, out = SettlementHistory.empty(), []
    for label, cutoff in periods:
        st_ = compute_statement(COUNTY, Period.parse(label), agreements=agreements, policy=policy(), as_of=cutoff,
                                statistics=reports, finalized_prior=history)
        final, postings = finalize(st_)
        assert postings == ()  # statistics are never money
        history = history.after(final)
        out.append(final)
    return out, history


def attributed(statements, party: str, measure: str = "value_added", month: str = "2026-01") -> int:
    """What ``party`` gained minus what it ceded of ``measure`` for ``month``, summed over the statements."""
    n = 0
    for s in statements:
        for ln in s.lines:
            if ln.kind is LineKind.STATISTICS_SHARE and ln.measure == measure and ln.month == month:
                n += (ln.amount_fen if ln.payee == party else 0) - (ln.amount_fen if ln.payer == party else 0)
    return n


def test_a_late_report_of_a_settled_month_tops_up_to_the_split_of_the_total():
    # weights 1:2, remainder to the origin: 10 -> 4, 20 -> 7 (not 4 + 4)
    a = agreement(statistics_weights=(1, 2), remainder_to=T1)
    reports = [report("S1", 10, at(2026, 2, 1)), report("S2", 10, at(2026, 2, 10))]  # S2 after January's cut-off

    (jan, feb), history = chain([a], reports, [("2026-01", at(2026, 2, 5)), ("2026-02", at(2026, 3, 5))])
    (together,), _ = chain([a], reports, [("2026-01", at(2026, 2, 20))])

    assert attributed([together], T1) == two_way_part(20, 1, 2, True) == 7
    assert attributed([jan, feb], T1) == 7
    assert attributed([jan, feb], P1) == -7
    (late,) = feb.lines
    assert (late.kind, late.payer, late.payee, late.amount_fen, late.month, late.measure, late.sources) == (
        LineKind.STATISTICS_SHARE, P1, T1, 3, "2026-01", "value_added", ("S2",))
    assert late.adjusts is None  # a statistics line, not a money adjustment
    assert [(t.party, t.gained, t.ceded) for t in feb.statistics_totals] == [(P1, 0, 3), (T1, 3, 0)]
    # what the history holds: the month's statistic and the origin's part of it, as settled so far
    (settled,) = history.statistics.values()
    assert (settled.agreement_id, settled.measure, settled.month, settled.total, settled.origin_part) == (
        "A1", "value_added", JAN, 20, 7)
    assert history.months == {}  # tax history is untouched


def test_the_remainder_to_the_destination_is_also_exact_and_measures_are_apart():
    # weights 2:1, remainder to the destination: 10 -> 6, 20 -> 13 (not 6 + 6)
    a = agreement(statistics_weights=(2, 1), remainder_to=P1)
    reports = [report("S1", 10, at(2026, 2, 1)), report("O1", 10, at(2026, 2, 1), measure="output"),
               report("S2", 10, at(2026, 3, 10)), report("S3", 5, at(2026, 4, 3), month=Period.parse("2026-02"))]
    statements, _ = chain([a], reports, [("2026-01", at(2026, 2, 5)), ("2026-02", at(2026, 3, 5)),
                                         ("2026-03", at(2026, 4, 5))])
    assert attributed(statements, T1) == 13
    assert attributed(statements, T1, measure="output") == 6
    assert attributed(statements, T1, month="2026-02") == two_way_part(5, 2, 1, False) == 3


def test_a_rerun_of_a_finalized_period_over_its_history_gives_the_same_statement():
    a = agreement(statistics_weights=(1, 2), remainder_to=T1)
    reports = [report("S1", 10, at(2026, 2, 1)), report("S2", 10, at(2026, 2, 10)), report("S3", 1, at(2026, 3, 20))]
    (jan, feb), _ = chain([a], reports, [("2026-01", at(2026, 2, 5)), ("2026-02", at(2026, 3, 5))])
    again = compute_statement(COUNTY, feb.period, agreements=[a], policy=policy(), as_of=feb.as_of, statistics=reports,
                              finalized_prior=SettlementHistory.empty().after(jan))
    assert (again.content_hash, again.lines, again.settled_statistics) == (
        feb.content_hash, feb.lines, feb.settled_statistics)


MONTHS = [Period.parse(label) for label in ("2026-01", "2026-02")]
PERIODS = [("2026-01", at(2026, 2, 5)), ("2026-02", at(2026, 3, 5)), ("2026-03", at(2026, 4, 5))]


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.tuples(st.integers(0, 9), st.integers(0, 9)).filter(lambda w: sum(w) > 0),
       to_origin=st.booleans(),
       reports=st.lists(st.tuples(st.sampled_from(MONTHS), st.sampled_from(["value_added", "output"]),
                                  st.integers(0, 10**6), st.integers(0, 2)), min_size=1, max_size=12),
       periods=st.integers(2, 3))
def test_the_origin_gets_the_split_of_the_total_however_reports_are_spread_over_periods(weights, to_origin, reports,
                                                                                     periods):
    """Reports of a month received in 2-3 successive statement periods (their own and the next ones): summed over
    the statements, the origin gets exactly the split of the month's total, and every line is positive."""
    a = agreement(statistics_weights=weights, remainder_to=T1 if to_origin else P1)
    cutoffs = PERIODS[:periods]
    facts, totals = [], {}
    for i, (m, measure, amount, in_period) in enumerate(reports):
        own = MONTHS.index(m)
        k = min(own + in_period, periods - 1)  # received before the cut-off of statement k (own month's or later)
        received = at(cutoffs[k][1].year, cutoffs[k][1].month, 1) if k == own else at(
            cutoffs[k - 1][1].year, cutoffs[k - 1][1].month, cutoffs[k - 1][1].day + 1)
        facts.append(report(f"S{i:02d}", amount, received, month=m, measure=measure))
        totals[(m.label, measure)] = totals.get((m.label, measure), 0) + amount
    statements, history = chain([a], facts, cutoffs)
    assert all(ln.amount_fen > 0 for s in statements for ln in s.lines)
    for (label, measure), total in totals.items():
        expected = two_way_part(total, *weights, to_origin)
        assert attributed(statements, T1, measure, label) == expected
        assert attributed(statements, P1, measure, label) == -expected
        settled = history.statistics[("A1", measure, label)]
        assert (settled.total, settled.origin_part) == (total, expected)

