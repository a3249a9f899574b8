"""Recording an agreement version races nothing that settles money (PostgreSQL, where each statement of a
transaction reads what is committed by then; SQLite serializes every writer already).

- An amendment recorded while its county's period is being finalized: either the finalization settles the period
  with it, or it is refused (``effective_in_closed_period``) — never committed afterwards with terms for the period
  just finalized, which a later late receipt would then apply to that finalized month (an adjustment re-splitting
  the whole month by the new terms).
- Two agreements sharing the same tax of one enterprise, recorded side by side in two counties: one is refused
  (``overlapping_agreements``) — never both stored, each county then settling the same tax.

Each race is forced: the first transaction stops after its checks and its insert, before committing, while the
second runs; the second must wait for it (the locks in ``storage.locks``)."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest

from services.settlement.agreement_registry import record_version
from services.settlement.domain import VAT, AgreementError, LineKind, ScheduleStep
from services.settlement.domain.periods import Period
from services.settlement.main import build
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.locks import hold_county
from services.settlement.storage.statements import StatementsRepository
from services.settlement.domain import AgreementBook, SettlementPolicy, TaxReceipt
from shared.settings import load_settings
from tests.integration.settlement.support import credit_code, new_county

CST = timezone(timedelta(hours=8))
WAIT = 5  # seconds the second transaction is given to finish while the first is held open


def at(y: int, m: int, d: int, hour: int = 12) -> datetime:
    return datetime(y, m, d, hour, tzinfo=CST)


@pytest.fixture
def pg_runtime(pg_url):
    rt, _ = build(load_settings("settlement", database_url=pg_url, relay_enabled=False, consumer_enabled=False,
                                log_json=False))
    rt.migrate()
    yield rt
    rt.db.dispose()


def terms(agreement_id: str, enterprise: str, county: str, weights: tuple[int, int], effective_from: date) -> dict:
    return dict(agreement_id=agreement_id, effective_from=effective_from, enterprise=enterprise,
                origin=f"township:{county}101", destination=f"park:P{county}", local_shares_bp={VAT: 5000},
                schedule=(ScheduleStep(1, None, *weights),), start=date(2024, 1, 1), end=date(2027, 12, 31),
                remainder_to=f"park:P{county}")


def held_open(rt, work) -> tuple[threading.Thread, threading.Event, threading.Event, dict]:
    """Run ``work(session)`` in a transaction of its own that stays open (uncommitted) until ``go`` is set."""
    done_work, go, out = threading.Event(), threading.Event(), {}

    def run():
        def tx(uow):
            try:
                out["result"] = work(uow.session)
            finally:
                done_work.set()
            assert go.wait(60)

        try:
            rt.transaction(tx)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    assert done_work.wait(30)
    return t, go, done_work, out


def in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_an_amendment_racing_a_finalization_never_re_terms_the_finalized_period(pg_runtime):
    rt, C = pg_runtime, new_county()
    E = credit_code(C, 1)
    with rt.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        repo.add_policy(SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=0, township_weight=1,
                                         park_weight=1, fund_weight=1), "test", at(2024, 1, 1))
    rt.transaction(lambda uow: record_version(uow.session, terms(f"AG{C}", E, C, (6, 4), date(2024, 1, 1)), C,
                                              version=None, amendment=False, by="test", now=at(2024, 1, 1)))
    with rt.db.sessions() as s, s.begin():
        # January: VAT 1,000,000.00 -> local 500,000.00 -> origin 6/10 = 300,000.00 under version 1
        InputsRepository(s).add_receipt(TaxReceipt(receipt_id=f"jan-{C}", enterprise=E, month=Period.parse("2025-01"),
                                                    tax_kind=VAT, amount_fen=100_000_000,
                                                    received_at=at(2025, 2, 2)), "http", None)

    # an amendment from January (5:5), legal while January is open, held uncommitted while January is finalized
    amend, go, _, recorded = held_open(rt, lambda s: record_version(
        s, terms(f"AG{C}", E, C, (5, 5), date(2025, 1, 1)), "", version=None, amendment=True, by="test",
        now=at(2025, 2, 5, 9)))
    final, finalized = in_thread(lambda: StatementRuns(rt, now=lambda: at(2025, 2, 5, 10)).finalize(C, "2025-01", "test"))
    final.join(WAIT)
    go.set()
    amend.join(60)
    final.join(60)
    assert "error" not in finalized, finalized
    if "error" in recorded:  # the finalization went first: the amendment is refused
        assert isinstance(recorded["error"], AgreementError) and recorded["error"].reason == "effective_in_closed_period"

    # the finalized January and the terms now on record agree
    with rt.db.sessions() as s:
        book = AgreementBook(InputsRepository(s).agreements_of_county(C))
        (jan_line,) = StatementsRepository(s).stream_lines(C, "2025-01")
    governing = book.governing(f"AG{C}", Period.parse("2025-01"))
    assert jan_line.agreement_version == governing.version
    assert jan_line.amount_fen == governing.origin_share(VAT, Period.parse("2025-01"), 100_000_000)

    # so a late January receipt of 100.00 moves the origin's share by exactly its own share of the 100.00
    with rt.db.sessions() as s, s.begin():
        InputsRepository(s).add_receipt(TaxReceipt(receipt_id=f"jan-late-{C}", enterprise=E,
                                                   month=Period.parse("2025-01"), tax_kind=VAT, amount_fen=10_000,
                                                   received_at=at(2025, 2, 10)), "http", None)
    feb = StatementRuns(rt, now=lambda: at(2025, 3, 5)).finalize(C, "2025-02", "test").statement
    (adj,) = [ln for ln in feb.lines if ln.kind is LineKind.ADJUSTMENT]
    expected = governing.origin_share(VAT, Period.parse("2025-01"), 100_010_000) - jan_line.amount_fen
    assert (adj.payee, adj.amount_fen) == (f"township:{C}101", expected)  # 30.00 (6:4) or 25.00 (5:5)


def test_two_counties_never_both_share_the_same_tax_of_one_enterprise(pg_runtime):
    rt, X, Y = pg_runtime, new_county(), new_county()
    E = credit_code(X, 2)
    first, go, _, in_x = held_open(rt, lambda s: record_version(
        s, terms(f"AG{X}", E, X, (6, 4), date(2024, 1, 1)), X, version=None, amendment=False, by="test",
        now=at(2025, 1, 2)))
    second, in_y = in_thread(lambda: rt.transaction(lambda uow: record_version(
        uow.session, terms(f"AG{Y}", E, Y, (5, 5), date(2024, 1, 1)), Y, version=None, amendment=False, by="test",
        now=at(2025, 1, 2))))
    second.join(WAIT)
    go.set()
    first.join(60)
    second.join(60)
    assert "error" not in in_x, in_x
    assert isinstance(in_y.get("error"), AgreementError) and in_y["error"].reason == "overlapping_agreements", in_y
    with rt.db.sessions() as s:
        assert [a.agreement_id for a in InputsRepository(s).agreements_of_enterprise(E)] == [f"AG{X}"]


def test_an_amendment_of_an_agreement_recorded_meanwhile_waits_for_its_county(pg_runtime):
    """An amendment whose first read found no agreement (its version 1 was being recorded, uncommitted) held the
    lock of county "" and, reading again once version 1 committed, went on without its real county's lock: a
    finalization of that county running meanwhile could settle the month the amendment re-terms. It now takes the
    county's lock once it knows the county. Here a transaction holding county C's lock (as a draft or finalization
    does) is queued behind version 1's; the amendment must wait for it."""
    rt, C = pg_runtime, new_county()
    E = credit_code(C, 3)
    create, go_create, _, created = held_open(rt, lambda s: record_version(
        s, terms(f"AG{C}", E, C, (6, 4), date(2024, 1, 1)), C, version=None, amendment=False, by="test",
        now=at(2025, 1, 2)))
    amend, amended = in_thread(lambda: rt.transaction(lambda uow: record_version(
        uow.session, terms(f"AG{C}", E, C, (5, 5), date(2025, 1, 1)), "", version=None, amendment=True, by="test",
        now=at(2025, 1, 3))))
    amend.join(1)  # the amendment has read no agreement and waits for the enterprise's lock
    county_go = threading.Event()
    holder, held = in_thread(lambda: rt.transaction(lambda uow: (hold_county(uow.session, C), county_go.wait(60))))
    holder.join(1)  # queued behind version 1 for county C's lock
    go_create.set()
    create.join(60)
    assert "error" not in created, created
    amend.join(WAIT)
    assert amend.is_alive(), f"the amendment went on while county {C}'s lock was held elsewhere: {amended}"
    county_go.set()
    holder.join(60)
    amend.join(60)
    assert "error" not in held and "error" not in amended, (held, amended)
    assert amended["result"][1:] == (C, True)
