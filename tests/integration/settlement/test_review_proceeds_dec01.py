"""Review of settlement's quota proceeds and compensation as the county finance office (财政局) reads them (tests
first): allocations (QuotaAllocated) and buy-backs (BuybackOwed) recorded as quota's events are recorded
(``intake.record_allocation`` / ``intake.record_buyback``, the Kafka handlers' calls), statements drafted and
finalized with a chosen clock (``StatementRuns(now=...)``), read back through the stored rows the finance API
answers from; on SQLite and PostgreSQL.

The county: policy 30 % compensation, the rest township 4 : park 3 : fund 3."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.settlement import clock, intake
from services.settlement.policy_registry import record_policy
from services.settlement.domain import LineKind, ProceedsError, SettlementPolicy
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage import tables
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.statements import StatementsRepository
from shared.contracts.quota import BuybackOwed, ConsumedLotOut, QuotaAllocated
from tests.integration.settlement.support import FINANCE, credit_code, new_county
from tests.support.services import running_service
from tests.unit.settlement.settlement_factories import at


def _policy(runtime, C: str) -> None:
    with runtime.db.sessions() as s, s.begin():
        InputsRepository(s).add_policy(SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=3000,
                                                        township_weight=4, park_weight=3, fund_weight=3),
                                       "test", at(2025, 1, 1))


def _lot(C: str, n: int, amount: str, enterprise: str, township: str = "101") -> ConsumedLotOut:
    return ConsumedLotOut(lot_id=f"L{n}-{C}", source_kind="release", source_ref=enterprise,
                          township_code=f"{C}{township}", amount=amount, amount_due="0.00")


def _allocated(C: str, request: str, due: str, lots: list[ConsumedLotOut], on: date) -> QuotaAllocated:
    total = sum(int(x.amount.replace(".", "")) for x in lots)  # lots at 4 decimals, as quota sends LAND
    return QuotaAllocated(request_id=request, project_id=f"PRJ-{C}", county_code=C, asset="LAND",
                          amount=f"{total // 10_000}.{total % 10_000:04d}", price_per_unit="1.00", amount_due=due,
                          park_id=f"P{C}", allocated_on=on, lots=lots)


def _record_allocation(runtime, ev: QuotaAllocated, event_id: str) -> bool:
    return runtime.transaction(lambda uow: intake.record_allocation(uow.session, ev, event_id=event_id))


def _record_buyback(runtime, ev: BuybackOwed, event_id: str, occurred: datetime) -> bool:
    return runtime.transaction(lambda uow: intake.record_buyback(uow.session, ev, event_id=event_id,
                                                                 occurred_at=occurred))


@pytest.fixture
def received(monkeypatch):
    """Set the intake clock (``received_at`` of what is recorded next)."""
    def set_to(when: datetime) -> None:
        monkeypatch.setattr(clock, "now", lambda: when)
    return set_to


# -- huge amounts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["allocations", "buybacks"])
def test_proceeds_past_a_trillion_yuan_are_refused_or_the_county_still_drafts(runtime, received, kind):
    """Receipts above one trillion yuan (10^14 fen) are refused ``amount_implausible`` because, once recorded, such
    figures add up past what a statement's totals hold (BIGINT) and every draft of the county fails until they are
    corrected — and facts are never corrected or withdrawn. Allocations and buy-backs take any amount up to 2^63-1 fen:
    two of 5e16 yuan each (5e18 fen, each below MAX_UNITS) were both recorded, the county's statement then sums
    1e19 fen in ``money_total_fen`` and the receivables of the fund / project past 2^63-1, and no draft of the county
    can be written again. Either such a figure is refused at the door (a ProceedsError, the dead letter's reason) or
    the county can still draft its statement."""
    C = new_county()
    _policy(runtime, C)
    E1, E2 = credit_code(C, 1), credit_code(C, 2)
    huge = "50000000000000000.00"  # 5e16 yuan = 5e18 fen < 2^63-1 = 9.22e18
    received(at(2025, 1, 20))
    recorded = []
    for n, E in ((1, E1), (2, E2)):
        try:
            if kind == "allocations":
                ev = _allocated(C, f"REQ{n}-{C}", huge, [_lot(C, n, "1.0000", E)], date(2025, 1, 15))
                recorded.append(_record_allocation(runtime, ev, f"ev{n}-{C}"))
            else:
                ev = BuybackOwed(lot_id=f"L{n}-{C}", county_code=C, enterprise_credit_code=E,
                                 township_code=f"{C}101", asset="LAND", amount="1.0000", amount_due=huge)
                recorded.append(_record_buyback(runtime, ev, f"ev{n}-{C}", at(2025, 1, 15)))
        except ProceedsError as refused:  # refused at the door: what the dead letter would say
            assert refused.reason, refused
    # whatever was taken, January can still be drafted and finalized, to the fen
    st = StatementRuns(runtime, now=lambda: at(2025, 2, 3)).finalize(C, "2025-01", "test").statement
    money = [ln for ln in st.lines if ln.kind.is_money]
    assert sum(t.net_fen for t in st.totals) == 0
    assert sum(ln.amount_fen for ln in money) == sum(t.receivable_fen for t in st.totals)
    assert len({ln.allocation_id or ln.sources for ln in money}) <= len(recorded)


# -- what an enterprise is shown as owed ------------------------------------------------------------------------

def test_a_draft_from_a_replica_whose_clock_runs_ahead_does_not_show_finalized_compensation_again(runtime, received):
    """Nothing closed yet: replica B (clock 10 minutes ahead) drafts February, which takes January's allocation as a
    late one (the first statement takes every earlier month's facts). Then replica A finalizes January at its own
    12:00 — the county lock orders the two, B's draft was computed before the finalization. The finalization drops
    "every draft computed before its cut-off", but tells them by ``as_of <= cut-off``: B's draft says 12:10 and stays.
    The enterprise's compensation read then shows January's 300,000.00 finalized and the same 300,000.00 again as
    owed in February's draft (and the project's position pays the allocation twice), until someone re-runs February.
    Every draft stored before a finalization was computed against the history before it, whatever its clock said."""
    C = new_county()
    _policy(runtime, C)
    E = credit_code(C, 1)
    received(at(2025, 1, 20))
    assert _record_allocation(runtime, _allocated(C, f"REQ-{C}", "1000000.00", [_lot(C, 1, "10.0000", E)],
                                                  date(2025, 1, 15)), f"ev-{C}")
    cutoff = at(2025, 2, 5)
    StatementRuns(runtime, now=lambda: cutoff + timedelta(minutes=10)).draft(C, "2025-02", "replica-b")
    jan = StatementRuns(runtime, now=lambda: cutoff).finalize(C, "2025-01", "replica-a").statement
    (comp,) = [ln for ln in jan.lines if ln.kind is LineKind.COMPENSATION]
    assert comp.amount_fen == 30_000_000  # floor(100,000,000 fen * 3000 / 10000)

    with runtime.db.sessions() as s:
        repo = StatementsRepository(s)
        paid = repo.lines_to_payee(f"enterprise:{E}", (LineKind.COMPENSATION.value, LineKind.BUYBACK.value), C)
        project = repo.party_totals_by_period(C, f"project:PRJ-{C}")
    # the compensation once (January, finalized); the project pays the allocation once
    assert [(r.period, r.status, r.amount_fen) for r in paid] == [("2025-01", "finalized", 30_000_000)]
    assert sum(r.payable_fen for r in project) == 100_000_000


# -- guard: a late allocation after a policy change, read and posted as finalized -----------------------------------

def test_a_late_allocation_is_split_by_its_own_months_version_once_and_read_and_posted_as_finalized(
        db_url, kafka_bootstrap, received):
    """January is finalized under version 1 (30 %, 4:3:3); version 2 (50 %, 2:4:4) takes effect on 1 February. A
    January allocation arriving after January's cut-off is settled in February, split by version 1 (its day's), a
    February allocation by version 2; March takes neither again. The enterprise's compensation read and the party
    positions are the finalized lines, to the fen, and the ledger is asked for one transfer per money line with the
    line's payer, payee and amount."""
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (runtime, api):
        C = new_county()
        E1, E2 = credit_code(C, 1), credit_code(C, 2)
        T1, T2, P, FUND, PRJ = f"township:{C}101", f"township:{C}102", f"park:P{C}", f"county:{C}/fund", f"project:PRJ-{C}"

        def put(now, bp, tw, pw, fw, effective_from=None):
            return runtime.transaction(lambda uow: record_policy(
                uow.session, C, policy_id="POL", compensation_bp=bp, township_weight=tw, park_weight=pw,
                fund_weight=fw, effective_from=effective_from, by="test", now=now))

        def allocate(req, on, when):
            received(when)
            lots = [_lot(C, 1, "7.0000", E1), _lot(C, 2, "3.0000", E2, township="102")]
            assert _record_allocation(runtime, _allocated(C, req, "1000000.00", lots, on), f"ev-{req}")

        put(at(2025, 1, 1), 3000, 4, 3, 3)
        allocate(f"A-{C}", date(2025, 1, 10), at(2025, 1, 12))
        jan = StatementRuns(runtime, now=lambda: at(2025, 2, 3)).finalize(C, "2025-01", "test").statement
        put(at(2025, 2, 4), 5000, 2, 4, 4, date(2025, 2, 1))
        allocate(f"B-{C}", date(2025, 1, 25), at(2025, 2, 6))  # January's, after January's cut-off
        allocate(f"C-{C}", date(2025, 2, 10), at(2025, 2, 11))
        feb = StatementRuns(runtime, now=lambda: at(2025, 3, 3)).finalize(C, "2025-02", "test").statement
        mar = StatementRuns(runtime, now=lambda: at(2025, 3, 10)).draft(C, "2025-03", "test").statement

        def parts(st, aid):
            return {(ln.kind.value, ln.payee, ln.month): ln.amount_fen for ln in st.lines if ln.allocation_id == aid}

        # version 1 on 100,000,000 fen: compensation 30,000,000 = E1 7/10 21,000,000 + E2 3/10 9,000,000; the rest
        # 70,000,000 by 4x7 : 4x3 : 3x10 : 3x10 = 28:12:30:30 -> 19,600,000 / 8,400,000 / 21,000,000 / 21,000,000
        v1 = lambda m: {("compensation", f"enterprise:{E1}", m): 21_000_000,
                        ("compensation", f"enterprise:{E2}", m): 9_000_000,
                        ("proceeds_share", T1, m): 19_600_000, ("proceeds_share", T2, m): 8_400_000,
                        ("proceeds_share", P, m): 21_000_000, ("proceeds_share", FUND, m): 21_000_000}
        # version 2: compensation 50,000,000 = 35,000,000 + 15,000,000; the rest 50,000,000 by 2x7 : 2x3 : 4x10 : 4x10
        # = 14:6:40:40 -> 7,000,000 / 3,000,000 / 20,000,000 / 20,000,000
        v2 = {("compensation", f"enterprise:{E1}", "2025-02"): 35_000_000,
              ("compensation", f"enterprise:{E2}", "2025-02"): 15_000_000,
              ("proceeds_share", T1, "2025-02"): 7_000_000, ("proceeds_share", T2, "2025-02"): 3_000_000,
              ("proceeds_share", P, "2025-02"): 20_000_000, ("proceeds_share", FUND, "2025-02"): 20_000_000}
        assert parts(jan, f"A-{C}:LAND") == v1("2025-01")
        assert parts(feb, f"B-{C}:LAND") == v1("2025-01") and parts(feb, f"C-{C}:LAND") == v2
        assert parts(jan, f"B-{C}:LAND") == {} and parts(feb, f"A-{C}:LAND") == {}
        assert [ln for ln in mar.lines if ln.allocation_id] == []

        # the compensation read: exactly the finalized lines, nothing owed in drafts
        r = api.get(f"/v1/enterprises/{E1}/compensation", params={"county": C}, headers=FINANCE)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert Decimal(doc["finalized_total"]) * 100 == 21_000_000 + 21_000_000 + 35_000_000
        assert Decimal(doc["draft_total"]) == 0
        # positions: the project pays three allocations, once each
        r = api.get(f"/v1/counties/{C}/parties/{PRJ}/position", headers=FINANCE)
        assert r.status_code == 200, r.text
        assert Decimal(r.json()["finalized_net"]) * 100 == -3 * 100_000_000
        for st in (jan, feb):
            for t in st.totals:
                r = api.get(f"/v1/counties/{C}/parties/{t.party}/position", headers=FINANCE)
                (row,) = [p for p in r.json()["periods"] if p["period"] == st.period.label]
                assert (Decimal(row["receivable"]) * 100, Decimal(row["payable"]) * 100) == (
                    t.receivable_fen, t.payable_fen), t

        # the ledger postings: one per money line, its parties' CNY accounts and its amount
        with runtime.db.sessions() as s:
            lp = tables.ledger_postings
            for st in (jan, feb):
                rows = s.execute(select(lp).where(lp.c.county_code == C, lp.c.period == st.period.label)).all()
                assert sorted((r.line_no, r.debit_account, r.credit_account, r.amount_fen) for r in rows) == [
                    (ln.line_no, f"{ln.payer}/CNY", f"{ln.payee}/CNY", ln.amount_fen) for ln in st.lines if ln.kind.is_money]
        # finalizing again answers the finalized statement and asks for nothing more
        again = StatementRuns(runtime, now=lambda: at(2025, 3, 20)).finalize(C, "2025-02", "test")
        assert again.statement is None and again.header.content_hash == feb.content_hash
        with runtime.db.sessions() as s:
            n = s.execute(select(lp).where(lp.c.county_code == C, lp.c.period == "2025-02")).all()
        assert len(n) == sum(1 for ln in feb.lines if ln.kind.is_money)
