"""Review of the pool's rules on a real database (SQLite and PostgreSQL), the use cases called directly, every event
written to the real outbox (the event store replay folds) and the ledger's answers given by hand: lots and their
retired share, rounds at their boundaries, lots drawn by allocations, the pool identity, and replay of it all."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.quota.application import assessment_facts, intake, requests, rounds
from services.quota.application.expiry import expire_request
from services.quota.application.ledger_answers import on_ledger_outcome
from services.quota.application.pool import county_pool
from services.quota.application.tx import Tx
from services.quota.domain.policy import PoolPolicy
from services.quota.replay import rebuild
from services.quota.storage import request_store
from services.quota.storage import tables as T
from services.quota.storage.counties import save_policy
from shared.contracts.assessment import ProjectEvaluated
from shared.contracts.ledger import TransferPending, TransferPosted
from shared.db import Database
from shared.outbox import Outbox
from tests.integration.quota.harness import credit_code
from tests.integration.quota.test_quota_application import db  # noqa: F401 - the migrated database fixture

C = "320612"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
KIND = {"COD": "environmental_impact", "SO2": "environmental_impact", "ENERGY": "energy_review", "LAND": "land_use"}
DEPT = {"COD": "ecology", "SO2": "ecology", "ENERGY": "development_reform"}


class Book:
    """One county on a fresh database; each use case one committed transaction writing the real outbox."""

    def __init__(self, db: Database, **policy):
        self.db, self.now = db, T0
        self.outbox = Outbox(T.messaging["outbox"], "quota")
        self.run(lambda tx: save_policy(tx.session, PoolPolicy(C, **policy), "test", tx.now))

    def run(self, use_case, now: datetime | None = None):
        with Session(self.db.engine) as s:
            out = use_case(Tx(s, now or self.now, lambda e, subject: self.outbox.add(s, e, subject=subject)))
            s.commit()
        return out

    def evaluate(self, project_id: str, project_class: str = "A", tax: str = "150000.00") -> None:
        self.run(lambda tx: assessment_facts.project_evaluated(tx, ProjectEvaluated(
            project_id=project_id, applicant_credit_code=credit_code(C, 9999), county_code=C, park_id="park-1",
            admitted=True, land="10.0000", investment_per_mu="3000000.00", tax_per_mu=tax, industry_code="C39",
            project_class=project_class, policy_hash="h")))

    def release(self, rid: str, asset: str, amount: str, on: str, serial: int = 1, reason: str = "upgrade_savings"):
        return self.run(lambda tx: intake.submit_release(tx, dict(
            release_id=rid, enterprise_credit_code=credit_code(C, serial), township_code=f"{C}1{serial:02d}",
            county_code=C, asset=asset, amount=amount, reason=reason, basis="free", document_ref="doc",
            released_on=on), department=DEPT[asset], submitted_by="test"))

    def reclaim(self, pid: str, area: str, on: str) -> None:
        self.run(lambda tx: intake.register_reclamation_project(tx, dict(
            project_id=pid, county_code=C, township_code=f"{C}150", area=area, registered_on="2023-01-01"), "test"))
        self.run(lambda tx: intake.accept_reclamation_project(tx, pid, date.fromisoformat(on), None, "doc"))

    def _rows(self, purpose: str, state: str = "asked", **where) -> list:
        q = select(T.ledger_transfers).where((T.ledger_transfers.c.purpose == purpose)
                                             & (T.ledger_transfers.c.state == state))
        for k, v in where.items():
            q = q.where(T.ledger_transfers.c[k] == v)
        with Session(self.db.engine) as s:
            return s.execute(q.order_by(T.ledger_transfers.c.transfer_id)).all()

    def _answer(self, kind, r, now: datetime | None = None) -> str:
        return self.run(lambda tx: on_ledger_outcome(tx, kind(
            transfer_id=r.transfer_id, debit_account=r.debit_account, credit_account=r.credit_account, asset=r.asset,
            amount="1", code="x", at=self.now)), now)

    def book(self, *lot_ids: str) -> None:
        """The ledger posts the intake of these lots (all asked so far when none is named)."""
        for r in self._rows("intake"):
            if not lot_ids or r.lot_id in lot_ids:
                self._answer(TransferPosted, r)

    def request(self, rid: str, pid: str, now: datetime | None = None, **lines: str):
        return self.run(lambda tx: requests.open_quota_request(tx, {
            "request_id": rid, "project_id": pid, "county_code": C,
            "lines": [{"asset": a, "amount": n} for a, n in lines.items()]}, "test"), now)

    def round(self, now: datetime | None = None) -> rounds.RoundRun:
        return self.run(lambda tx: rounds.run_round(tx, C, "test"), now)

    def pending(self, rid: str, now: datetime | None = None) -> None:
        for r in self._rows("reserve", request_id=rid):
            self._answer(TransferPending, r, now)

    def approve(self, pid: str, asset: str = "COD", now: datetime | None = None) -> None:
        self.run(lambda tx: requests.approval_granted(tx, pid, KIND[asset], "doc", T0.date()), now)

    def state(self, rid: str) -> tuple[str, str | None]:
        with Session(self.db.engine) as s:
            req = request_store.load_request(s, rid)
        return req.state.value, req.reason

    def figures(self, asset: str) -> tuple[int, ...]:
        with Session(self.db.engine) as s:
            f = county_pool(s, C).figures[asset]
        return f.released, f.retired, f.allocated, f.reserved, f.available

    def table(self, t) -> list:
        with Session(self.db.engine) as s:
            return s.execute(select(t)).all()


def test_a_mixed_history_keeps_the_pool_identity_traces_every_unit_and_replays_to_the_same_state(db):
    """Awkward amounts and shares, lots dated out of arrival order, a reclamation, a held release, one allocation over
    several lots, a refusal, a cancel (twice), an expiry, a reservation left standing and a request left waiting."""
    book = Book(db, retire_share_bp={"COD": 3333, "SO2": 2000, "LAND": 777},
                price_fen_per_unit={"COD": 1_234_567, "LAND": 333})
    book.release("REL-3", "COD", "0.0001", "2024-02-03", serial=3)  # one unit: retired whole (ceil)
    book.release("REL-2", "COD", "3.3337", "2024-02-02", serial=2)
    book.release("REL-1", "COD", "2.0003", "2024-01-15", serial=1)  # arrives last, dated first: FIFO takes it first
    book.release("REL-H", "COD", "5", "2024-01-01", serial=4, reason="closure")  # held: its exit is not known
    book.release("REL-S", "SO2", "0.0007", "2024-01-10", serial=5)
    book.reclaim("GX-1", "1.2345", "2024-01-20")
    book.book()
    lots = {r.lot_id: r for r in book.table(T.lots)}
    # released = retired + pooled exactly; retired = ceil(amount * share), never less than the policy says
    assert {k: (r.amount, r.retired, r.remaining) for k, r in lots.items()} == {
        "release:REL-3": (1, 1, 0), "release:REL-2": (33337, 11112, 22225), "release:REL-1": (20003, 6667, 13336),
        "release:REL-S": (7, 2, 5), "reclamation:GX-1": (12345, 960, 11385)}
    assert book.figures("COD") == (53341, 17780, 0, 0, 35561)

    for p in ("P1", "P2", "P3", "P4", "P5", "P6"):
        book.evaluate(p, project_class="B" if p == "P6" else "A")
    book.request("Q1", "P1", COD="2.5", LAND="1.1385")  # the whole reclamation lot's reusable part
    book.request("Q2", "P2", COD="100")  # more than the pool: refused whole, the others still served
    book.request("Q3", "P3", COD="0.3")
    book.request("Q4", "P4", COD="0.1")
    run = book.round()
    assert [(d.request_id, d.outcome.value) for d in run.result.decisions] == [
        ("Q1", "granted"), ("Q2", "insufficient"), ("Q3", "granted"), ("Q4", "granted")]
    assert run.result.decisions[1].shortfalls[0].available == 35561 - 25000
    for q in ("Q1", "Q3", "Q4"):
        book.pending(q)
    book.approve("P1", "COD")
    book.approve("P1", "LAND")
    assert book.state("Q1") == ("allocated", None)
    book.run(lambda tx: requests.cancel_request(tx, "Q3", "withdrawn"))
    assert not book.run(lambda tx: requests.cancel_request(tx, "Q3", "again")).changed  # released once only
    later = T0 + timedelta(days=61)  # past Q4's reservation deadline (60 days)
    assert book.run(lambda tx: expire_request(tx, "Q4", C), later)
    book.approve("P4", "COD", now=later)  # confirming after expiry allocates nothing
    assert book.state("Q4") == ("expired", "deadline_passed")
    book.request("Q5", "P5", COD="1")
    book.round()
    book.pending("Q5")  # left reserved
    book.request("Q6", "P6", COD="1")  # left waiting

    # FIFO by lot date: REL-1 (2024-01-15) before REL-2; REL-3 had nothing left to give
    used = [(c.request_id, c.lot_id, c.amount) for c in book.table(T.consumptions)]
    assert sorted(used) == [("Q1", "reclamation:GX-1", 11385), ("Q1", "release:REL-1", 13336),
                            ("Q1", "release:REL-2", 11664)]
    lots = {r.lot_id: r for r in book.table(T.lots)}
    taken = defaultdict(int)
    for _, lot_id, n in used:
        taken[lot_id] += n
    for lot_id, r in lots.items():  # every allocated unit traces back to a booked lot
        assert r.amount - r.retired - r.remaining == taken[lot_id], lot_id
        assert r.ledger_state == "booked"
    assert book.figures("COD") == (53341, 17780, 25000, 10000, 561)
    assert book.figures("LAND") == (12345, 960, 11385, 0, 0)
    assert book.figures("SO2") == (7, 2, 0, 0, 5)

    report = rebuild(db)
    assert report.equal, "\n".join(map(str, report.differences))
    assert report.rows["pool"] >= 3 and report.events_applied == report.events_read > 0


def test_a_request_due_exactly_when_a_round_runs_is_expired_and_its_quota_goes_to_the_next(db):
    book = Book(db, request_wait_seconds=3600)
    book.release("REL-1", "COD", "1.25", "2024-02-01")
    book.book()
    book.evaluate("P-first", project_class="A")
    book.evaluate("P-next", project_class="B")
    book.request("Q-first", "P-first", COD="1")
    book.request("Q-next", "P-next", now=T0 + timedelta(seconds=1), COD="1")
    run = book.round(now=T0 + timedelta(seconds=3600))  # Q-first's deadline, to the microsecond
    assert run.expired_before == ("Q-first",)
    assert [(d.request_id, d.outcome.value) for d in run.result.decisions] == [("Q-next", "granted")]
    assert book.state("Q-first") == ("expired", "deadline_passed")


def test_an_approval_at_the_reservation_deadline_comes_too_late_and_one_just_before_it_allocates(db):
    book = Book(db, reservation_timeout_seconds=600)
    book.release("REL-1", "COD", "2.5", "2024-02-01")
    book.book()
    for p in ("P1", "P2"):
        book.evaluate(p)
    book.request("Q1", "P1", COD="1")
    book.request("Q2", "P2", COD="1")
    book.round()
    book.pending("Q1")
    book.pending("Q2")
    deadline = T0 + timedelta(seconds=600)
    book.approve("P1", now=deadline - timedelta(microseconds=1))
    book.approve("P2", now=deadline)
    assert (book.state("Q1"), book.state("Q2")) == (("allocated", None), ("expired", "deadline_passed"))
    assert book.figures("COD") == (25000, 5000, 10000, 0, 10000)
    assert [c.request_id for c in book.table(T.allocations)] == ["Q1"]


def test_a_lot_the_ledger_has_not_booked_is_neither_granted_nor_drawn_even_when_oldest(db):
    book = Book(db, retire_share_bp={})
    book.release("REL-new", "ENERGY", "5", "2024-02-01")
    book.book()
    book.release("REL-old", "ENERGY", "5", "2023-12-01")  # awaiting the ledger
    book.evaluate("P1")
    book.evaluate("P2")
    book.request("Q1", "P1", ENERGY="6")
    book.request("Q2", "P2", ENERGY="5")
    run = book.round()
    assert [(d.request_id, d.outcome.value) for d in run.result.decisions] == [
        ("Q1", "insufficient"), ("Q2", "granted")]
    book.pending("Q2")
    book.approve("P2", "ENERGY")
    assert [(c.lot_id, c.amount) for c in book.table(T.consumptions)] == [("release:REL-new", 5000)]
    book.book("release:REL-old")
    assert book.figures("ENERGY") == (10000, 0, 5000, 0, 5000)
