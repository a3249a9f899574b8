"""Properties over generated worlds: agreements, receipts with late arrivals and corrections, allocations, and a
chain of quarterly statements finalized one after the other at random cut-offs."""
from __future__ import annotations

import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.settlement.domain import (
    CIT,
    VAT,
    AgreementBook,
    LineKind,
    ScheduleStep,
    SettlementHistory,
    StatementLine,
    compute_statement,
    finalize,
    split_proceeds,
)
from services.settlement.domain.periods import Period, month_from_index, month_index
from services.settlement.domain.rounding import basis_point_part, local_retained
from settlement_factories import COUNTY, FUND, T1, T2, agreement, allocation, at, policy, receipt

# SETTLEMENT_EXAMPLES=1000 for a longer search; no example database, so a run leaves nothing behind
EXAMPLES = int(os.environ.get("SETTLEMENT_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
QUARTERS = [Period.parse(f"{y}-Q{q}") for y in (2025, 2026, 2027) for q in (1, 2, 3, 4)]
FIRST_MONTH = month_index(date(2025, 1, 1))
LAST_RECEIPT_MONTH = month_index(date(2026, 3, 1))
ENTERPRISES = ("E1", "E2", "E3", "E4")  # E4 has no agreement
PARKS = ("park:P1", "park:P2")


@dataclass
class World:
    agreements: list = field(default_factory=list)
    receipts: list = field(default_factory=list)
    allocations: list = field(default_factory=list)
    cutoffs: list = field(default_factory=list)


@st.composite
def worlds(draw) -> World:
    w = World()
    for i, ent in enumerate(ENTERPRISES[:3]):
        start_idx = draw(st.integers(month_index(date(2023, 1, 1)), month_index(date(2025, 6, 1))))
        length = draw(st.integers(12, 60))
        start = month_from_index(start_idx).start
        end = month_from_index(start_idx + length - 1).end
        years = (length - 1) // 12 + 1
        split_at = draw(st.integers(1, max(1, years)))
        w1, w2 = draw(st.tuples(st.integers(0, 9), st.integers(1, 9))), draw(st.tuples(st.integers(1, 9), st.integers(0, 9)))
        schedule = (ScheduleStep(1, split_at, *w1), ScheduleStep(split_at + 1, None, *w2))
        taxes = draw(st.sampled_from([{VAT: 5000}, {CIT: 4000}, {VAT: 5000, CIT: 4000},
                                      {VAT: draw(st.integers(0, 10_000)), CIT: draw(st.integers(0, 10_000))}]))
        origin = (T1, T2)[i % 2]
        destination = draw(st.sampled_from(PARKS))
        minimum = draw(st.one_of(st.none(), st.integers(0, 50_000_000)))
        base = agreement(agreement_id=f"AG{i}", enterprise=ent, origin=origin, destination=destination, start=start,
                         effective_from=start, end=end, local_shares_bp=taxes, schedule=schedule,
                         remainder_to=draw(st.sampled_from([origin, destination])), guaranteed_minimum_fen=minimum)
        w.agreements.append(base)
        if draw(st.booleans()):  # an amendment with a new split from some month on
            eff_idx = draw(st.integers(start_idx + 1, start_idx + length - 1)) if length > 1 else start_idx + 1
            new = draw(st.tuples(st.integers(1, 9), st.integers(0, 9)))
            w.agreements.append(agreement(agreement_id=f"AG{i}", version=2, enterprise=ent, origin=origin,
                                          destination=destination, start=start, end=end,
                                          effective_from=month_from_index(eff_idx).start, local_shares_bp=taxes,
                                          schedule=(ScheduleStep(1, None, *new),), remainder_to=destination,
                                          guaranteed_minimum_fen=minimum))
    chains: list[list] = []  # each chain: its receipts, newest last
    n = draw(st.integers(0, 25))
    for k in range(n):
        if chains and draw(st.integers(0, 3)) == 0:
            chain = draw(st.sampled_from(chains))
            last = chain[-1]
            r = receipt(f"c{k}", last.month.label, draw(st.integers(0, 10**8)),
                        last.received_at + timedelta(hours=draw(st.integers(1, 24 * 90))), tax=last.tax_kind,
                        enterprise=last.enterprise, corrects=last.receipt_id, replaced=last.amount_fen)
            chain.append(r)
        else:
            m = month_from_index(draw(st.integers(FIRST_MONTH, LAST_RECEIPT_MONTH)))
            received = at(m.end.year, m.end.month, m.end.day) + timedelta(hours=draw(st.integers(1, 24 * 365)))
            r = receipt(f"r{k}", m.label, draw(st.integers(1, 10**8)), received,
                        tax=draw(st.sampled_from([VAT, CIT, "PIT"])), enterprise=draw(st.sampled_from(ENTERPRISES)))
            chains.append([r])
        w.receipts.append(r)
    for k in range(draw(st.integers(0, 4))):
        lots = [(f"L{k}-{j}", draw(st.sampled_from(ENTERPRISES)), draw(st.sampled_from([T1, T2])), draw(st.integers(1, 10**6)))
                for j in range(draw(st.integers(1, 4)))]
        on = date(2025, 1, 1) + timedelta(days=draw(st.integers(0, 500)))
        w.allocations.append(allocation(f"AL{k}", draw(st.integers(0, 10**9)), lots, on=on,
                                        received=at(on.year, on.month, on.day) + timedelta(hours=draw(st.integers(0, 24 * 100)))))
    for q in QUARTERS:
        d = q.end + timedelta(days=draw(st.integers(1, 40)))
        w.cutoffs.append(at(d.year, d.month, d.day, 9))
    return w


def run_chain(w: World, shuffle: random.Random | None = None):
    """Compute and finalize every quarter in order; returns [(statement, history before it)]."""
    history = SettlementHistory.empty()
    out = []
    for q, cutoff in zip(QUARTERS, w.cutoffs):
        receipts, allocations, agreements = list(w.receipts), list(w.allocations), list(w.agreements)
        if shuffle:
            for xs in (receipts, allocations, agreements):
                shuffle.shuffle(xs)
        stmt = compute_statement(COUNTY, q, agreements=agreements, policy=policy(), as_of=cutoff, receipts=receipts,
                                 allocations=allocations, finalized_prior=history)
        stmt, postings = finalize(stmt)
        assert len(postings) == sum(1 for ln in stmt.lines if ln.kind.is_money)
        out.append((stmt, history))
        history = history.after(stmt)
    return out, history


@SETTINGS
@given(worlds())
def test_nets_sum_to_zero_and_parts_sum_to_wholes(w):
    chain, _ = run_chain(w)
    book = AgreementBook(w.agreements)
    allocated = defaultdict(int)
    for stmt, _ in chain:
        # handed out in order, kind by kind: the order is the one the sort key defines, numbered from 1
        assert list(stmt.lines) == sorted(stmt.lines, key=StatementLine.sort_key)
        assert [ln.line_no for ln in stmt.lines] == list(range(1, len(stmt.lines) + 1))
        assert sum(t.net_fen for t in stmt.totals) == 0
        assert all(ln.amount_fen > 0 for ln in stmt.lines)
        assert sum(t.receivable_fen for t in stmt.totals) == sum(ln.amount_fen for ln in stmt.lines if ln.kind.is_money)
        for ln in stmt.lines:
            if ln.allocation_id:
                allocated[ln.allocation_id] += ln.amount_fen
        for m in stmt.settled_months:  # the origin never gets more than the local retained part
            a = book.governing(m.agreement_id, m.month)
            assert 0 <= m.origin_share_fen <= local_retained(m.tax_fen, a.local_shares_bp[m.tax_kind])
    for alloc in w.allocations:
        assert allocated[alloc.allocation_id] == alloc.amount_due_fen


@SETTINGS
@given(worlds(), st.randoms(use_true_random=False))
def test_same_hash_whatever_the_input_order(w, rnd):
    plain, _ = run_chain(w)
    shuffled, _ = run_chain(w, shuffle=rnd)
    assert [s.content_hash for s, _ in plain] == [s.content_hash for s, _ in shuffled]


@SETTINGS
@given(worlds())
def test_a_finalized_period_does_not_change_after_later_inputs(w):
    chain, _ = run_chain(w)
    for stmt, history_before in chain:
        # recomputed with everything known at the end (later receipts, corrections, allocations) as of its cut-off
        again = compute_statement(COUNTY, stmt.period, agreements=w.agreements, policy=policy(), as_of=stmt.as_of,
                                  receipts=w.receipts, allocations=w.allocations, finalized_prior=history_before)
        assert again.content_hash == stmt.content_hash
        assert again.lines == stmt.lines


@SETTINGS
@given(worlds())
def test_late_receipts_and_corrections_settle_exactly_the_share_of_the_final_totals(w):
    """Whatever arrived late or was corrected, once everything is in, the origin has received (summing revenue
    lines and adjustments over all statements) exactly its share of each month's final tax total, and each
    closed year's top-up is exactly the shortfall against the minimum."""
    chain, _ = run_chain(w)
    book = AgreementBook(w.agreements)
    known = [r for r in w.receipts if r.received_at <= w.cutoffs[-1]]  # what the last statement could see
    replaced = {r.corrects for r in known if r.corrects}
    final_tax = defaultdict(int)
    for r in known:
        if r.receipt_id not in replaced:
            final_tax[(r.enterprise, r.tax_kind, r.month.label)] += r.amount_fen
    expected = defaultdict(int)
    for (ent, tax, label), total in final_tax.items():
        a = book.resolve(ent, tax, Period.parse(label))
        if a is not None:
            expected[(a.agreement_id, tax, label)] = a.origin_share(tax, Period.parse(label), total)
    paid = defaultdict(int)
    topups = defaultdict(int)
    for stmt, _ in chain:
        for ln in stmt.lines:
            if ln.kind is LineKind.REVENUE_SHARE or ln.adjusts is LineKind.REVENUE_SHARE:
                a = book.governing(ln.agreement_id, Period.parse(ln.month))
                sign = 1 if ln.payee == a.origin else -1
                paid[(ln.agreement_id, ln.tax_kind, ln.month)] += sign * ln.amount_fen
            if ln.kind is LineKind.GUARANTEED_MINIMUM_TOPUP or ln.adjusts is LineKind.GUARANTEED_MINIMUM_TOPUP:
                a = book.governing(ln.agreement_id, Period.parse(ln.month))
                sign = 1 if ln.payee == a.origin else -1
                topups[(ln.agreement_id, ln.agreement_year)] += sign * ln.amount_fen
    assert {k: v for k, v in paid.items() if v} == {k: v for k, v in expected.items() if v}
    last_end = month_index(QUARTERS[-1].end)
    for agreement_id in book.agreement_ids():
        for v in book.versions(agreement_id):
            for year in range(1, v.years + 1):
                first, last = v.year_months(year, book.final_month(agreement_id))
                if book.governing(agreement_id, last) is not v or v.guaranteed_minimum_fen is None:
                    continue
                if not (FIRST_MONTH <= month_index(last.start) <= last_end):
                    continue
                share = sum(x for (aid, _, label), x in expected.items()
                            if aid == agreement_id and first.start <= Period.parse(label).start <= last.start)
                assert topups[(agreement_id, year)] == max(0, v.guaranteed_minimum_fen - share)


@settings(max_examples=5 * EXAMPLES, deadline=None, database=None)
@given(
    due=st.integers(0, 10**12),
    bp=st.integers(0, 10_000),
    weights=st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)).filter(lambda t: sum(t) > 0),
    lots=st.lists(st.tuples(st.sampled_from(ENTERPRISES), st.sampled_from([T1, T2]), st.integers(1, 10**7)),
                  min_size=1, max_size=8),
)
def test_proceeds_parts_sum_to_the_amount_due(due, bp, weights, lots):
    alloc = allocation("AL", due, [(f"L{i}", e, t, u) for i, (e, t, u) in enumerate(lots)])
    parts = split_proceeds(alloc, policy(compensation_bp=bp, township_weight=weights[0], park_weight=weights[1],
                                         fund_weight=weights[2]))
    assert sum(parts.compensation.values()) == basis_point_part(due, bp)
    assert sum(parts.compensation.values()) + sum(parts.shares.values()) == due
    assert all(v >= 0 for v in list(parts.compensation.values()) + list(parts.shares.values()))
    assert FUND in parts.shares
