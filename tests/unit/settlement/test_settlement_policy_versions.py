"""The settlement policy has a period of validity: each version splits the proceeds of the allocations made from its
``effective_from`` on (``PolicyBook``, the model of ``AgreementBook.version_in_force``), so a statement does not
depend on when it is drafted, and a later version never reaches back into the allocations of earlier months."""
from __future__ import annotations

from datetime import date

import pytest

from services.settlement.domain import (
    LineKind,
    PolicyBook,
    ProceedsError,
    SettlementHistory,
    StatementError,
    compute_statement,
    finalize,
    split_proceeds,
)
from services.settlement.domain.periods import Period
from settlement_factories import COUNTY, P1, T1, T2, allocation, at, policy

V1 = policy(policy_id="TZBF-2026", compensation_bp=3000, township_weight=4, park_weight=3, fund_weight=3)
V2 = policy(policy_id="TZBF-2027", version=2, effective_from=date(2027, 1, 1), compensation_bp=5000, township_weight=1,
            park_weight=1, fund_weight=8)
DEC = allocation("REQ-DEC:LAND", 1_000_000, [("L1", "E1", T1, 7), ("L2", "E2", T2, 3)], on=date(2026, 12, 10))
NOV = allocation("REQ-NOV:LAND", 2_000_003, [("L3", "E3", T1, 5)], on=date(2026, 11, 30))
JAN = allocation("REQ-JAN:LAND", 999_999, [("L4", "E1", T2, 4), ("L5", None, T1, 1)], on=date(2027, 1, 1))


def proceeds(st) -> dict[str, dict[str, int]]:
    """allocation -> payee -> fen, over compensation and proceeds-share lines."""
    out: dict[str, dict[str, int]] = {}
    for ln in st.lines:
        if ln.kind in (LineKind.COMPENSATION, LineKind.PROCEEDS_SHARE):
            out.setdefault(ln.allocation_id, {})[ln.payee] = ln.amount_fen
    return out


def split(alloc, pol) -> dict[str, int]:
    """What ``split_proceeds`` makes of it, as lines would carry it (a zero part makes no line)."""
    parts = split_proceeds(alloc, pol)
    return {k: v for k, v in {**{f"enterprise:{k}": v for k, v in parts.compensation.items()}, **parts.shares}.items()
            if v}


def test_a_version_for_a_later_period_does_not_change_a_redrafted_earlier_period():
    """2026-12 drafted on 2027-01-05, after the county set its 2027 policy: December's allocation keeps the 2026
    split, the statement its hash and the version it names."""
    dec = Period.parse("2026-12")
    before = compute_statement(COUNTY, dec, agreements=[], policy=V1, as_of=at(2027, 1, 2), allocations=[DEC])
    after = compute_statement(COUNTY, dec, agreements=[], policy=[V1, V2], as_of=at(2027, 1, 5), allocations=[DEC])
    assert (after.content_hash, after.lines, after.totals) == (before.content_hash, before.lines, before.totals)
    assert proceeds(after) == {DEC.allocation_id: split(DEC, V1)} != {DEC.allocation_id: split(DEC, V2)}
    assert (after.policy_id, after.policy_version) == ("TZBF-2026", 1)
    # and January's statement splits January's allocation by the 2027 version
    jan = compute_statement(COUNTY, Period.parse("2027-01"), agreements=[], policy=PolicyBook([V1, V2]),
                            as_of=at(2027, 2, 2), allocations=[DEC, JAN],
                            finalized_prior=SettlementHistory.empty().after(finalize(after)[0]))
    assert proceeds(jan) == {JAN.allocation_id: split(JAN, V2)}
    assert (jan.policy_id, jan.policy_version) == ("TZBF-2027", 2)


def test_each_allocation_is_split_by_the_version_in_force_on_its_day():
    """A quarter spanning a change: November's allocation by v1, December's by v2 (in force from 2026-12-01); the
    header names the version in force on the quarter's last day. A late November allocation taken by the next
    quarter is still split by v1."""
    v2 = policy(version=2, effective_from=date(2026, 12, 1), compensation_bp=0, township_weight=0, park_weight=1,
                fund_weight=1)
    q4 = compute_statement(COUNTY, Period.parse("2026-Q4"), agreements=[], policy=[v2, V1], as_of=at(2027, 1, 5),
                           allocations=[NOV, DEC])
    assert proceeds(q4) == {NOV.allocation_id: split(NOV, V1), DEC.allocation_id: split(DEC, v2)}
    assert split(NOV, V1) != split(NOV, v2) and split(DEC, V1) != split(DEC, v2)
    assert sum(ln.amount_fen for ln in q4.lines) == NOV.amount_due_fen + DEC.amount_due_fen
    assert q4.policy_version == 2

    late = allocation("REQ-LATE:LAND", 555_555, [("L6", "E2", T1, 2)], on=date(2026, 11, 3), received=at(2027, 1, 20))
    closed, _ = finalize(q4)
    q1 = compute_statement(COUNTY, Period.parse("2027-Q1"), agreements=[], policy=[V1, v2], as_of=at(2027, 4, 5),
                           allocations=[NOV, DEC, late], finalized_prior=SettlementHistory.empty().after(closed))
    assert proceeds(q1) == {late.allocation_id: split(late, V1)}
    assert all(ln.month == "2026-11" for ln in q1.lines)


def test_the_version_in_force_follows_effective_from_as_for_agreements():
    v3 = policy(version=3, effective_from=date(2027, 7, 1), compensation_bp=100)
    book = PolicyBook([v3, V1, V2])
    assert book.versions() == (V1, V2, v3) and book.latest == v3
    assert [book.version_in_force(d).version for d in (date(2000, 1, 1), date(2026, 12, 31), date(2027, 1, 1),
                                                       date(2027, 6, 30), date(2027, 7, 1), date(2040, 1, 1))] == \
        [1, 1, 2, 2, 3, 3]
    dated = PolicyBook([policy(effective_from=date(2026, 1, 1))])
    assert dated.version_in_force(date(2025, 12, 31)) is None and dated.version_in_force(date(2026, 1, 1)).version == 1
    # versions recorded before they had a period of validity: each replaced the one before from the beginning
    legacy = PolicyBook([policy(), policy(version=2, compensation_bp=1), policy(version=3, compensation_bp=2)])
    assert legacy.version_in_force(date(2000, 1, 1)).version == 3


def test_a_version_may_take_effect_before_versions_recorded_earlier():
    """It was refused version_order: a county whose first version took effect after an allocation it must settle
    could add no version before it, and every draft of that county stayed 409 policy_missing."""
    v3 = policy(version=3, effective_from=date(2026, 6, 1), compensation_bp=1)
    book = PolicyBook([V1, V2, v3])  # V1 from the beginning, V2 from 2027, v3 (recorded last) from June 2026
    assert [book.version_in_force(d).version for d in (date(2026, 5, 31), date(2026, 6, 1), date(2026, 12, 31),
                                                       date(2027, 1, 1))] == [1, 3, 3, 2]
    same_day = PolicyBook([V1, V2, policy(version=3, effective_from=date(2027, 1, 1), compensation_bp=2)])
    assert (same_day.version_in_force(date(2027, 1, 1)).version, same_day.version_in_force(date(2026, 12, 1)).version) \
        == (3, 1)  # of two from the same month, the later one
    late_first = PolicyBook([policy(effective_from=date(2025, 3, 1)), policy(version=2, effective_from=date(2025, 2, 1))])
    assert [late_first.version_in_force(date(2025, m, 1)) and late_first.version_in_force(date(2025, m, 1)).version
            for m in (1, 2, 3)] == [None, 2, 1]
    assert late_first.first_effective == date(2025, 2, 1)
    again = PolicyBook([V1, V2, policy(version=3, compensation_bp=3)])  # from the beginning again: replaces V1
    assert [again.version_in_force(d).version for d in (date(2000, 1, 1), date(2027, 1, 1))] == [3, 2]


@pytest.mark.parametrize("versions, reason", [
    ([V1, policy(compensation_bp=1)], "duplicate_version"),
    ([V1, policy(version=2, county="320612", effective_from=date(2027, 1, 1))], "policy_for_other_county"),
    ([], "policy_missing"),
])
def test_inconsistent_versions_are_refused(versions, reason):
    with pytest.raises(ProceedsError) as exc:
        PolicyBook(versions)
    assert exc.value.reason == reason


@pytest.mark.parametrize("effective_from, reason", [
    (date(2027, 1, 15), "effective_from_not_first_of_month"),
    ("2027-01-01", "invalid_date"),
])
def test_effective_from_is_the_first_of_a_month(effective_from, reason):
    with pytest.raises(ProceedsError) as exc:
        policy(effective_from=effective_from)
    assert exc.value.reason == reason


def test_no_version_in_force_is_refused_not_guessed():
    """A county whose first version takes effect in 2027: an allocation of 2026 has no split, and a period before
    2027 no policy to name (as for a county without any policy)."""
    first = policy(effective_from=date(2027, 1, 1))
    with pytest.raises(StatementError) as exc:
        compute_statement(COUNTY, Period.parse("2026-12"), agreements=[], policy=first, as_of=at(2027, 1, 5))
    assert exc.value.reason == "policy_missing"
    with pytest.raises(StatementError) as exc:
        compute_statement(COUNTY, Period.parse("2027-01"), agreements=[], policy=first, as_of=at(2027, 2, 5),
                          allocations=[DEC, JAN])  # DEC is late for 2027-01: the county's first statement takes it
    assert exc.value.reason == "policy_missing" and DEC.allocation_id in str(exc.value)
    st = compute_statement(COUNTY, Period.parse("2027-01"), agreements=[], policy=first, as_of=at(2027, 2, 5),
                           allocations=[JAN])
    assert proceeds(st) == {JAN.allocation_id: split(JAN, first)}


def test_a_single_version_is_in_force_throughout():
    """One version, with or without a period of validity before the facts: the statement is what it always was."""
    q4 = Period.parse("2026-Q4")
    base = compute_statement(COUNTY, q4, agreements=[], policy=V1, as_of=at(2027, 1, 5), allocations=[NOV, DEC])
    for pol in ([V1], PolicyBook([V1]), policy(policy_id="TZBF-2026", effective_from=date(2026, 1, 1))):
        st = compute_statement(COUNTY, q4, agreements=[], policy=pol, as_of=at(2027, 1, 5), allocations=[NOV, DEC])
        assert (st.content_hash, st.lines, st.policy_version) == (base.content_hash, base.lines, 1)
    assert base.totals and {t.party for t in base.totals} >= {P1, f"county:{COUNTY}/fund"}
