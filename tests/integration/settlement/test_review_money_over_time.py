"""Review of settlement's money over time (tests first): facts that arrive late, are corrected (corrections of
corrections), amended agreements, stepped splits, guaranteed minimums and their top-ups, quota allocations and
buy-backs arriving late or twice, monthly, quarterly and yearly periods closed in order. The invariant: over all
finalized statements each party is paid exactly what the final facts say it is owed, to the fen, whatever the
order and timing in which the facts arrived.

Facts go in through ``intake`` (the path HTTP, import and Kafka share: corrections resolved against the stored
original, re-sends recognised) with the service clock set to the moment they arrive; statements are drafted and
finalized with ``StatementRuns(now=...)``. On SQLite and PostgreSQL."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import pytest

from services.settlement import clock, intake
from services.settlement.domain import (
    CIT,
    VAT,
    AgreementBook,
    LineKind,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
)
from services.settlement.domain.export import yuan
from services.settlement.domain.periods import Period, month_from_index, month_index
from services.settlement.domain.proceeds import PolicyBook, split_proceeds
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.inputs import InputsRepository, allocations_of
from services.settlement.storage.statements import StatementsRepository
from shared.china_time import CST
from shared.contracts.quota import BuybackOwed, ConsumedLotOut, QuotaAllocated
from shared.contracts.settlement import TaxReceiptReported
from tests.integration.settlement.support import credit_code, new_county


def at(y: int, m: int, d: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, second, tzinfo=CST)


# -- the county ----------------------------------------------------------------------------------------------

def _county(runtime, *, minimum_fen: int = 20_000_000,
            policies: tuple = ((3000, 4, 3, 3, None), (2500, 5, 3, 2, date(2026, 1, 1)))) -> SimpleNamespace:
    """E left township T for park P: VAT 50 % (45 % from 2025-07 by amendment v2), CIT 40 % local, 6:4 in agreement
    year 1 then 5:5, remainder to P, a guaranteed minimum for T per year (the destination tops up).
    E2 left township T2 for P: CIT 40 %, 5:5, remainder to T2, a minimum topped up by the county fund.
    E3 has no agreement (its receipts are unmatched)."""
    C = new_county()
    E, E2, E3 = credit_code(C, 1), credit_code(C, 2), credit_code(C, 3)
    T, T2, P = f"township:{C}101", f"township:{C}102", f"park:P{C}"
    FUND = f"county:{C}/fund"
    steps = (ScheduleStep(1, 1, 6, 4), ScheduleStep(2, None, 5, 5))
    agreements = [
        RevenueSharingAgreement(agreement_id=f"AG{C}", version=1, effective_from=date(2025, 1, 1), enterprise=E,
                                origin=T, destination=P, local_shares_bp={VAT: 5000, CIT: 4000}, schedule=steps,
                                start=date(2025, 1, 1), end=date(2027, 12, 31), remainder_to=P,
                                guaranteed_minimum_fen=minimum_fen),
        RevenueSharingAgreement(agreement_id=f"AG{C}", version=2, effective_from=date(2025, 7, 1), enterprise=E,
                                origin=T, destination=P, local_shares_bp={VAT: 4500, CIT: 4000}, schedule=steps,
                                start=date(2025, 1, 1), end=date(2027, 12, 31), remainder_to=P,
                                guaranteed_minimum_fen=minimum_fen),
        RevenueSharingAgreement(agreement_id=f"AG2{C}", version=1, effective_from=date(2025, 1, 1), enterprise=E2,
                                origin=T2, destination=P, local_shares_bp={CIT: 4000},
                                schedule=(ScheduleStep(1, None, 5, 5),), start=date(2025, 1, 1),
                                end=date(2027, 12, 31), remainder_to=T2, guaranteed_minimum_fen=minimum_fen // 3,
                                minimum_payer=FUND),
    ]
    book_policies = []
    with runtime.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        for v, (bp, tw, pw, fw, eff) in enumerate(policies, 1):
            p = SettlementPolicy(policy_id="POL", version=v, county=C, compensation_bp=bp, township_weight=tw,
                                 park_weight=pw, fund_weight=fw, effective_from=eff)
            repo.add_policy(p, "test", at(2024, 12, 1))
            book_policies.append(p)
        for a in agreements:
            repo.add_agreement(a, C, "test", at(2024, 12, 1))
        for code in (E, E2, E3):
            repo.remember_enterprise(code, "assessment", at(2024, 12, 1), county=C)
    return SimpleNamespace(C=C, E=E, E2=E2, E3=E3, T=T, T2=T2, P=P, FUND=FUND, agreements=agreements,
                           book=AgreementBook(agreements), policies=PolicyBook(book_policies))


def _amend(runtime, w, base: RevenueSharingAgreement, when: datetime, **changes) -> RevenueSharingAgreement:
    """An amendment recorded through the registry (closed-period and overlap checks) at ``when``."""
    from dataclasses import fields
    from services.settlement.agreement_registry import record_version

    terms = {f.name: getattr(base, f.name) for f in fields(base) if f.init and f.name != "version"}
    terms["local_shares_bp"] = dict(terms["local_shares_bp"])
    terms.update(changes)
    with runtime.db.sessions() as s, s.begin():
        agreement, _, created = record_version(s, terms, w.C, version=None, amendment=True, by="test", now=when)
    assert created
    w.agreements.append(agreement)
    w.book = AgreementBook(w.agreements)
    return agreement


def _set_clock(monkeypatch, when: datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: when)


def _receipt(runtime, rid: str, enterprise: str, month: str, fen: int, tax: str, corrects: str | None = None):
    ev = TaxReceiptReported(receipt_id=rid, enterprise_credit_code=enterprise, month=month, tax_kind=tax,
                            amount=yuan(fen), corrects=corrects)
    with runtime.db.sessions() as s, s.begin():
        return intake.record_tax_receipt(s, ev, channel="http")[1]


def _allocation_event(w, aid: int, on: date, due_fen: int, lots: list[tuple[str, str, str]]) -> QuotaAllocated:
    """lots: (credit code, township code, amount)."""
    C = w.C
    outs = [ConsumedLotOut(lot_id=f"L{aid}-{i}-{C}", source_kind="release", source_ref=code, township_code=tship,
                           amount=amount, amount_due="0.00") for i, (code, tship, amount) in enumerate(lots)]
    total = sum(int(a.replace(".", "")) for _, _, a in lots)
    return QuotaAllocated(request_id=f"REQ{aid}-{C}", project_id=f"PRJ{aid}-{C}", county_code=C, asset="LAND",
                          amount=f"{total // 10_000}.{total % 10_000:04d}", price_per_unit="1.00",
                          amount_due=yuan(due_fen), park_id=f"P{C}", allocated_on=on, lots=outs)


def _allocate(runtime, ev: QuotaAllocated, event_id: str) -> bool:
    with runtime.db.sessions() as s, s.begin():
        return intake.record_allocation(s, ev, event_id=event_id)


def _buyback(runtime, w, lot: str, enterprise: str, fen: int, occurred: datetime, event_id: str) -> bool:
    ev = BuybackOwed(lot_id=lot, county_code=w.C, enterprise_credit_code=enterprise, township_code=f"{w.C}101",
                     asset="LAND", amount="1.0000", amount_due=yuan(fen))
    with runtime.db.sessions() as s, s.begin():
        return intake.record_buyback(s, ev, event_id=event_id, occurred_at=occurred)


# -- reading what the finalized statements paid ------------------------------------------------------------------

def _finalized_lines(runtime, C: str) -> list:
    with runtime.db.sessions() as s:
        repo = StatementsRepository(s)
        out = []
        for h in repo.finalized_headers(C):
            out += list(repo.stream_lines(C, h.period))
        return out


def _finalized_nets(runtime, C: str) -> dict[str, int]:
    """Per party, the sum of its nets over all finalized statements, from the stored totals."""
    nets: dict[str, int] = defaultdict(int)
    with runtime.db.sessions() as s:
        repo = StatementsRepository(s)
        for h in repo.finalized_headers(C):
            for t in repo.totals(C, h.period):
                nets[t.party] += t.receivable_fen - t.payable_fen
    return {p: n for p, n in nets.items() if n}


def _nets_of_lines(lines) -> dict[str, int]:
    nets: dict[str, int] = defaultdict(int)
    for ln in lines:
        if ln.kind.is_money:
            nets[ln.payee] += ln.amount_fen
            nets[ln.payer] -= ln.amount_fen
    return {p: n for p, n in nets.items() if n}


# -- what the final facts say ------------------------------------------------------------------------------------

def _expected(w, receipts: list[dict], first_closed: Period, last_closed: Period, runtime):
    """Per party net, per (agreement, tax, month) origin share and per (agreement, year) top-up, computed from the
    final facts at once: receipts not replaced by a correction, every allocation and buy-back recorded."""
    replaced = {r["corrects"] for r in receipts if r["corrects"]}
    final = defaultdict(int)
    for r in receipts:
        if r["rid"] not in replaced:
            final[(r["enterprise"], r["tax"], r["month"])] += r["fen"]
    nets: dict[str, int] = defaultdict(int)
    shares: dict[tuple, int] = defaultdict(int)
    for (ent, tax, label), total in final.items():
        m = Period.parse(label)
        if m.start > last_closed.end:
            continue
        a = w.book.resolve(ent, tax, m)
        if a is None:
            continue
        share = a.origin_share(tax, m, total)
        shares[(a.agreement_id, tax, label)] += share
        nets[a.origin] += share
        nets[a.destination] -= share
    topups: dict[tuple, int] = {}
    for agreement_id in w.book.agreement_ids():
        for v in w.book.versions(agreement_id):
            for year in range(1, v.years + 1):
                first, last = v.year_months(year, w.book.final_month(agreement_id))
                if w.book.governing(agreement_id, last) is not v or v.guaranteed_minimum_fen is None:
                    continue
                if not (first_closed.start <= last.start and last.end <= last_closed.end):
                    continue
                got = sum(x for (aid, _, label), x in shares.items()
                          if aid == agreement_id and first.start <= Period.parse(label).start <= last.start)
                due = max(0, v.guaranteed_minimum_fen - got)
                topups[(agreement_id, year)] = due
                nets[v.origin] += due
                nets[v.topup_payer] -= due
    with runtime.db.sessions() as s:
        repo = InputsRepository(s)
        everything = Period.year(2099)
        far = at(2099, 1, 1)
        allocations = list(allocations_of(repo.allocation_rows(w.C, everything, None, far)))
        buybacks = list(repo.stream_buybacks(w.C, everything, None, far))
    for a in allocations:
        if a.allocated_on > last_closed.end:
            continue
        sp = split_proceeds(a, w.policies.version_in_force(a.allocated_on))
        project = f"project:{a.project_id}"
        for code, fen in sp.compensation.items():
            nets[f"enterprise:{code}"] += fen
            nets[project] -= fen
        for party, fen in sp.shares.items():
            nets[party] += fen
            nets[project] -= fen
    for b in buybacks:
        if b.agreed_on > last_closed.end:
            continue
        nets[f"enterprise:{b.enterprise}"] += b.amount_fen
        nets[w.FUND] -= b.amount_fen
    return {p: n for p, n in nets.items() if n}, {k: v for k, v in shares.items() if v}, topups


def _paid_by_key(w, lines) -> tuple[dict, dict]:
    paid: dict[tuple, int] = defaultdict(int)
    topups: dict[tuple, int] = defaultdict(int)
    for ln in lines:
        if ln.kind is LineKind.REVENUE_SHARE or ln.adjusts is LineKind.REVENUE_SHARE:
            a = w.book.governing(ln.agreement_id, Period.parse(ln.month))
            paid[(ln.agreement_id, ln.tax_kind, ln.month)] += ln.amount_fen if ln.payee == a.origin else -ln.amount_fen
        if ln.kind is LineKind.GUARANTEED_MINIMUM_TOPUP or ln.adjusts is LineKind.GUARANTEED_MINIMUM_TOPUP:
            a = w.book.governing(ln.agreement_id, Period.parse(ln.month))
            topups[(ln.agreement_id, ln.agreement_year)] += ln.amount_fen if ln.payee == a.origin else -ln.amount_fen
    return {k: v for k, v in paid.items() if v}, dict(topups)


# -- the property: same final facts, arrival orders and timings drawn at random ------------------------------------

CHAIN = ["2025-01", "2025-02", "2025-03", "2025-Q2", "2025-Q3", "2025-10", "2025-11", "2025-12", "2026-Q1",
         "2026-Q2", "2026-Q3", "2026-Q4", "2027"]


def _world_timeline(w, rnd: random.Random):
    """(when, order, label, action) of every arrival and every draft/finalization; the receipts as facts."""
    events: list[tuple] = []
    receipts: list[dict] = []
    n = 0
    for idx in range(month_index(date(2025, 1, 1)), month_index(date(2026, 6, 1)) + 1):
        m = month_from_index(idx)
        for ent, tax in ((w.E, VAT), (w.E, CIT), (w.E2, CIT), (w.E3, VAT)):
            for _ in range(rnd.choice((0, 1, 1, 2))):
                n += 1
                arrive = datetime.combine(m.start, datetime.min.time(), CST) + timedelta(
                    days=rnd.randint(1, 150), minutes=rnd.randint(0, 24 * 60 - 1), seconds=30)
                if arrive.hour == 10 and arrive.minute == 0:
                    arrive += timedelta(minutes=1)
                chain = [dict(rid=f"r{n}-{w.C}", enterprise=ent, tax=tax, month=m.label,
                              fen=rnd.randint(1, 400_000_000), corrects=None, at=arrive)]
                while rnd.random() < 0.35:  # a correction (of the newest), possibly after its month was closed
                    last = chain[-1]
                    n += 1
                    chain.append(dict(rid=f"c{n}-{w.C}", enterprise=ent, tax=tax, month=m.label,
                                      fen=rnd.choice((0, rnd.randint(1, 400_000_000), last["fen"] + rnd.randint(-3, 3))),
                                      corrects=last["rid"], at=last["at"] + timedelta(days=rnd.randint(0, 120),
                                                                                       minutes=rnd.randint(1, 600))))
                    chain[-1]["fen"] = max(0, chain[-1]["fen"])
                receipts += chain
    for r in receipts:
        events.append((r["at"], 1, f"receipt {r['rid']}", ("receipt", r)))
    codes = [w.E, w.E2, w.E3]
    for k in range(6):
        on = date(2025, 1, 1) + timedelta(days=rnd.randint(0, 540))
        lots = [(rnd.choice(codes), f"{w.C}10{rnd.randint(1, 3)}", f"{rnd.randint(1, 9)}.{rnd.randint(0, 9999):04d}")
                for _ in range(rnd.randint(1, 3))]
        ev = _allocation_event(w, k, on, rnd.randint(1, 10**9), lots)
        first = datetime.combine(on, datetime.min.time(), CST) + timedelta(days=rnd.randint(0, 100), hours=rnd.randint(0, 23),
                                                                           minutes=7, seconds=30)
        events.append((first, 1, f"allocation {k}", ("allocation", ev, f"ev-a{k}-{w.C}")))
        # the same allocation sent again (another event id), some time later
        events.append((first + timedelta(days=rnd.randint(1, 90)), 1, f"allocation {k} again",
                       ("allocation", ev, f"ev-a{k}b-{w.C}")))
    for k in range(4):
        occurred = at(2025, 1, 1) + timedelta(days=rnd.randint(0, 540), hours=rnd.randint(0, 10))
        lot = f"BL{k}-{w.C}"
        ent, fen = rnd.choice(codes), rnd.randint(1, 10**8)
        arrive = occurred + timedelta(days=rnd.randint(0, 60), minutes=13, seconds=30)
        events.append((arrive, 1, f"buy-back {k}", ("buyback", lot, ent, fen, occurred, f"ev-b{k}-{w.C}")))
        events.append((arrive + timedelta(days=rnd.randint(1, 90)), 1, f"buy-back {k} again",
                       ("buyback", lot, ent, fen, occurred, f"ev-b{k}b-{w.C}")))
    # an amendment recorded while 2026-Q2 is open, from 2026-05 on: 4:6 from agreement year 2, another minimum
    events.append((at(2026, 4, 20, 9), 0, "amendment v3", ("amend", dict(
        effective_from=date(2026, 5, 1), schedule=(ScheduleStep(1, 1, 6, 4), ScheduleStep(2, None, 4, 6)),
        guaranteed_minimum_fen=w.agreements[1].guaranteed_minimum_fen * 2 // 3))))
    for label in CHAIN:
        p = Period.parse(label)
        close = at(p.end.year, p.end.month, p.end.day, 10) + timedelta(days=rnd.randint(3, 25))
        events.append((close - timedelta(days=1), 0, f"draft {label}", ("draft", label)))
        events.append((close, 0, f"finalize {label}", ("finalize", label)))
    events.sort(key=lambda e: (e[0], e[1]))
    return events, receipts


def _play(runtime, monkeypatch, w, events) -> None:
    for when, _, what, action in events:
        _set_clock(monkeypatch, when)
        kind = action[0]
        if kind == "receipt":
            r = action[1]
            assert _receipt(runtime, r["rid"], r["enterprise"], r["month"], r["fen"], r["tax"], r["corrects"]), what
        elif kind == "allocation":
            _allocate(runtime, action[1], action[2])
        elif kind == "buyback":
            _, lot, ent, fen, occurred, event_id = action
            _buyback(runtime, w, lot, ent, fen, occurred, event_id)
        elif kind == "amend":
            _amend(runtime, w, w.agreements[1], when, **action[1])
        elif kind == "draft":
            runs = StatementRuns(runtime, now=lambda: when)
            first = runs.draft(w.C, action[1], "test").statement.content_hash
            # a re-run with nothing new recorded gives the same statement, whatever the clock says meanwhile
            again = StatementRuns(runtime, now=lambda: when + timedelta(minutes=5)).draft(w.C, action[1], "test")
            assert again.statement.content_hash == first, f"{what}: a re-run draft changed its hash"
        else:
            StatementRuns(runtime, now=lambda: when).finalize(w.C, action[1], "test")


@pytest.mark.parametrize("seed,minimum", [(11, 20_000_000), (2027, 1_500_000_000), (5, 1_500_000_000)])
def test_every_fen_is_paid_once_whatever_the_arrival_order_and_timing(runtime, monkeypatch, seed, minimum):
    """Receipts, instalments, corrections and corrections of corrections of two shared enterprises (a stepped
    split, an amendment from 2025-07, a minimum topped up by the park for one and by the county fund for the
    other) and of one unshared enterprise; allocations and buy-backs, each sent twice; arriving from one day to
    months after their month, across thirteen monthly, quarterly and yearly closes, each drafted twice first.
    Summed over the finalized statements, each party's net is what the final facts say, to the fen; each month's
    origin share and each year's top-up too; every statement's nets sum to zero."""
    w = _county(runtime, minimum_fen=minimum)
    rnd = random.Random(seed)
    events, receipts = _world_timeline(w, rnd)
    _play(runtime, monkeypatch, w, events)

    lines = _finalized_lines(runtime, w.C)
    with runtime.db.sessions() as s:
        repo = StatementsRepository(s)
        assert [h.period for h in repo.finalized_headers(w.C)] == CHAIN
        for h in repo.finalized_headers(w.C):
            assert sum(t.receivable_fen - t.payable_fen for t in repo.totals(w.C, h.period)) == 0, h.period
    nets, shares, topups = _expected(w, receipts, Period.parse(CHAIN[0]), Period.parse(CHAIN[-1]), runtime)
    paid, paid_topups = _paid_by_key(w, lines)
    assert paid == shares
    assert {k: v for k, v in paid_topups.items() if v} == {k: v for k, v in topups.items() if v}
    assert _nets_of_lines(lines) == _finalized_nets(runtime, w.C) == nets


# -- targeted cases ------------------------------------------------------------------------------------------------

def _simple_county(runtime, *, minimum_fen: int | None = None) -> SimpleNamespace:
    """E left T for P: VAT 50 % local, 6:4, remainder to P, from 2025-01 to 2027-12; one policy."""
    C = new_county()
    E, T, P = credit_code(C, 1), f"township:{C}101", f"park:P{C}"
    a = RevenueSharingAgreement(agreement_id=f"AG{C}", version=1, effective_from=date(2025, 1, 1), enterprise=E,
                                origin=T, destination=P, local_shares_bp={VAT: 5000},
                                schedule=(ScheduleStep(1, None, 6, 4),), start=date(2025, 1, 1),
                                end=date(2027, 12, 31), remainder_to=P, guaranteed_minimum_fen=minimum_fen)
    with runtime.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        repo.add_policy(SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=3000, township_weight=4,
                                         park_weight=3, fund_weight=3), "test", at(2024, 12, 1))
        repo.add_agreement(a, C, "test", at(2024, 12, 1))
        repo.remember_enterprise(E, "assessment", at(2024, 12, 1), county=C)
    return SimpleNamespace(C=C, E=E, T=T, P=P, FUND=f"county:{C}/fund", agreements=[a], book=AgreementBook([a]))


@pytest.mark.parametrize("skew", [timedelta(0), timedelta(milliseconds=-250)],
                         ids=["same-instant", "intake-clock-250ms-behind"])
def test_a_late_receipt_recorded_right_after_a_cutoff_is_settled_by_the_next_statement(runtime, monkeypatch, skew):
    """The cut-off lock makes an intake wait for a finalization and read its clock afterwards; the receipt then
    belongs to the next statement. But the next statement takes an earlier month's fact only if its received_at is
    strictly after the cut-off: a clock that reads the same instant (coarse clock) or a little earlier (NTP step, a
    second service instance whose clock lags) files the receipt before the cut-off, and no statement ever takes
    it — a late receipt lost because its month is closed."""
    w = _simple_county(runtime)
    cutoff = at(2025, 2, 5, 10)
    _set_clock(monkeypatch, at(2025, 2, 2))
    _receipt(runtime, f"r1-{w.C}", w.E, "2025-01", 1_000_000, VAT)
    StatementRuns(runtime, now=lambda: cutoff).finalize(w.C, "2025-01", "test")
    # committed after the finalization (it waited for the cut-off lock), its clock read then
    _set_clock(monkeypatch, cutoff + skew)
    assert _receipt(runtime, f"r2-{w.C}", w.E, "2025-01", 2_000_000, VAT)
    StatementRuns(runtime, now=lambda: at(2025, 3, 5, 10)).finalize(w.C, "2025-02", "test")
    StatementRuns(runtime, now=lambda: at(2025, 4, 5, 10)).finalize(w.C, "2025-03", "test")

    # 3,000,000 of VAT in January: local 1,500,000, T's 6/10 = 900,000
    assert _finalized_nets(runtime, w.C) == {w.T: 900_000, w.P: -900_000}


def test_an_amendment_may_not_restart_the_years_of_an_agreement_with_a_minimum(runtime, monkeypatch):
    """An amendment from 2026-01 restarting the agreement's years (new start 2026-01, same minimum of 10,000.00 a
    year) was taken. Year 1 of the first terms (2025) fell short by 7,000.00 and was topped up at its close; year 1 of
    the new terms (2026) fell short by 4,000.00. Top-ups are remembered by (agreement, year number), so the 2026
    top-up was computed as 4,000.00 minus the 7,000.00 "already settled" for year 1: the origin paid 3,000.00 back
    instead of receiving 4,000.00. Such an amendment is now refused (agreement_start_changed): the county ends the
    agreement and records a new one; the first terms' year keeps its top-up."""
    from services.settlement.domain import AgreementError

    w = _simple_county(runtime, minimum_fen=1_000_000)
    _set_clock(monkeypatch, at(2025, 4, 2))
    _receipt(runtime, f"r1-{w.C}", w.E, "2025-03", 1_000_000, VAT)  # T: 300,000 of 2025's minimum 1,000,000
    for label, when in (("2025-Q1", at(2025, 4, 5, 10)), ("2025-Q2", at(2025, 7, 5, 10)),
                        ("2025-Q3", at(2025, 10, 5, 10))):
        StatementRuns(runtime, now=lambda when=when: when).finalize(w.C, label, "test")
    with pytest.raises(AgreementError) as refused:
        _amend(runtime, w, w.agreements[0], at(2025, 12, 1), effective_from=date(2026, 1, 1), start=date(2026, 1, 1))
    assert refused.value.reason == "agreement_start_changed"
    StatementRuns(runtime, now=lambda: at(2026, 1, 5, 10)).finalize(w.C, "2025-Q4", "test")

    _, topups = _paid_by_key(w, _finalized_lines(runtime, w.C))
    assert topups == {(f"AG{w.C}", 1): 700_000}
    assert _finalized_nets(runtime, w.C) == {w.T: 300_000 + 700_000, w.P: -(300_000 + 700_000)}
