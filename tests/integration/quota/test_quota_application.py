"""The quota use cases called directly on a database (SQLite and PostgreSQL), the ledger's answers given by hand:
admission withdrawn, a round after a reservation's deadline, and the key of the ledger commands."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.quota.application import assessment_facts, intake, requests, rounds
from services.quota.application.ledger_answers import on_ledger_outcome
from services.quota.application.pool import county_pool
from services.quota.application.tx import Tx
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.problems import QuotaDomainError
from services.quota.main import MIGRATIONS
from services.quota.storage import request_store
from services.quota.storage import tables as T
from services.quota.storage.counties import save_policy
from shared import migrations
from shared.contracts.assessment import ProjectEvaluated
from shared.contracts.ledger import TransferPending, TransferPosted, TransferRejected, TransfersRequested
from shared.db import Database
from tests.integration.quota.harness import credit_code

COUNTY = "320612"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


class Pool:
    """One county's pool on a fresh database; every use case in its own committed transaction, its events kept
    with their subjects (the Kafka keys)."""

    def __init__(self, db: Database, county: str = COUNTY, **policy):
        self.engine, self.county, self.now = db.engine, county, T0
        self.events: list[tuple[object, str]] = []
        self.run(lambda tx: save_policy(tx.session, PoolPolicy(county, **policy), "test", tx.now))

    def run(self, use_case, now: datetime | None = None):
        with Session(self.engine) as s:
            out = use_case(Tx(s, now or self.now, lambda e, subject: self.events.append((e, subject))))
            s.commit()
        return out

    def evaluate(self, project_id: str, admitted: bool = True) -> None:
        self.run(lambda tx: assessment_facts.project_evaluated(tx, ProjectEvaluated(
            project_id=project_id, applicant_credit_code=credit_code(self.county, 9999), county_code=self.county,
            park_id="park-1", admitted=admitted, land="10.0000", investment_per_mu="3000000.00",
            tax_per_mu="150000.00", industry_code="C39", project_class="A", policy_hash="h")))

    def set_admitted(self, project_id: str, admitted: bool) -> None:
        """The projects row changed without the evaluation's consequences (e.g. written before they existed)."""
        with Session(self.engine) as s:
            s.execute(T.projects.update().where(T.projects.c.project_id == project_id).values(admitted=admitted))
            s.commit()

    def release(self, amount: str, release_id: str = "REL-1", *, reason: str = "upgrade_savings",
                serial: int = 1) -> None:
        """Taken in and booked by the ledger (its answer given here)."""
        self.run(lambda tx: intake.submit_release(tx, dict(
            release_id=release_id, enterprise_credit_code=credit_code(self.county, serial),
            township_code=f"{self.county}100", county_code=self.county, asset="COD", amount=amount,
            reason=reason, basis="free", buyback_price_per_unit=None, document_ref="doc",
            released_on="2024-02-01"), department="ecology", submitted_by="test"))
        with Session(self.engine) as s:
            rows = s.execute(select(T.ledger_transfers).where(T.ledger_transfers.c.purpose == "intake")).all()
        for r in rows:
            self.answer(TransferPosted(transfer_id=r.transfer_id, debit_account=r.debit_account,
                                       credit_account=r.credit_account, asset=r.asset, amount="1",
                                       code="quota_release_intake", at=self.now))

    def request(self, request_id: str, project_id: str, amount: str, now: datetime | None = None):
        return self.run(lambda tx: requests.open_quota_request(tx, {
            "request_id": request_id, "project_id": project_id, "county_code": self.county,
            "lines": [{"asset": "COD", "amount": amount}]}, "test"), now)

    def round(self, now: datetime | None = None) -> rounds.RoundRun:
        return self.run(lambda tx: rounds.run_round(tx, self.county, "test"), now)

    def answer(self, event, now: datetime | None = None) -> str:
        return self.run(lambda tx: on_ledger_outcome(tx, event), now)

    def pending(self, request_id: str, project_id: str, amount: str) -> str:
        """The ledger made the request's reservation."""
        return self.answer(TransferPending(
            transfer_id=f"quota/reserve/{request_id}/COD", debit_account=f"county:{self.county}/pool/COD",
            credit_account=f"project:{project_id}/COD", asset="COD", amount=amount, code="quota_reserve",
            at=self.now))

    def approve(self, project_id: str) -> None:
        self.run(lambda tx: requests.approval_granted(tx, project_id, "environmental_impact", "doc", self.now.date()))

    def state(self, request_id: str) -> tuple[str, str | None]:
        with Session(self.engine) as s:
            req = request_store.load_request(s, request_id)
        return req.state.value, req.reason

    def reserved(self) -> int:
        with Session(self.engine) as s:
            return county_pool(s, self.county).figures["COD"].reserved

    def named(self, *names: str) -> list[tuple[str, str]]:
        return [(type(e).__name__, getattr(e, "request_id", None)) for e, _ in self.events
                if type(e).__name__ in names]

    def commands(self) -> list[tuple[list[str], str]]:
        """(transfer ids, key) of every ledger command sent, in order."""
        return [([t.transfer_id for t in e.transfers], key) for e, key in self.events if isinstance(e, TransfersRequested)]


@pytest.fixture
def db(db_url):
    d = Database(db_url, "quota")
    migrations.upgrade(d, MIGRATIONS)
    yield d
    d.dispose()


def test_an_evaluation_withdrawing_admission_closes_the_projects_open_requests_and_frees_their_quota(db):
    pool = Pool(db)
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    pool.pending("R1", "P1", "6")
    pool.request("R2", "P1", "3")  # waiting for the next round
    assert (pool.state("R1"), pool.reserved()) == (("reserved", None), 60_000)

    pool.evaluate("P1", admitted=False)  # latest wins: no longer admitted
    assert pool.state("R1") == ("cancelled", "project_not_admitted")
    assert pool.state("R2") == ("rejected", "project_not_admitted")
    assert pool.named("QuotaReservationCancelled", "QuotaRequestRejected") == [
        ("QuotaReservationCancelled", "R1"), ("QuotaRequestRejected", "R2")]
    assert pool.commands()[-1][0] == ["quota/void/R1/COD"] and pool.reserved() == 0

    pool.approve("P1")  # the 环评 that would have confirmed R1 allocates nothing
    assert pool.state("R1")[0] == "cancelled" and not pool.named("QuotaAllocated")
    with pytest.raises(QuotaDomainError) as exc:
        pool.request("R3", "P1", "1")
    assert [p.reason for p in exc.value.problems] == ["project_not_admitted"]
    pool.evaluate("P1", admitted=False)  # the same fact again: nothing more
    assert len(pool.named("QuotaReservationCancelled", "QuotaRequestRejected")) == 2


def test_a_round_closes_open_requests_of_projects_no_longer_admitted_before_deciding(db):
    pool = Pool(db)
    for p in ("P1", "P2", "P3"):
        pool.evaluate(p)
    pool.release("10")
    pool.request("R1", "P1", "8")
    pool.round()  # R1 reserving 8 of 10
    pool.request("R2", "P2", "8")
    pool.request("R3", "P3", "1")
    pool.set_admitted("P1", False)
    pool.set_admitted("P3", False)

    run = pool.round()
    assert run.withdrawn_before == ("R1", "R3")
    assert [d.request_id for d in run.result.decisions] == ["R2"]
    assert pool.state("R1") == ("cancelled", "project_not_admitted")  # what it held counts no more
    assert pool.state("R3") == ("rejected", "project_not_admitted")
    assert pool.state("R2") == ("reserving", None)
    assert ["quota/void/R1/COD"] in [ids for ids, _ in pool.commands()]


def test_an_allocation_for_a_project_no_longer_admitted_becomes_its_cancellation(db):
    pool = Pool(db)
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    pool.approve("P1")  # before the ledger's answer: R1 would allocate once reserved
    pool.set_admitted("P1", False)

    pool.pending("R1", "P1", "6")
    assert pool.state("R1") == ("cancelled", "project_not_admitted")
    assert not pool.named("QuotaAllocated")
    sent = [ids for ids, _ in pool.commands()]
    assert ["quota/void/R1/COD"] in sent and ["quota/post/R1/COD"] not in sent


def test_an_approval_for_a_project_no_longer_admitted_does_not_allocate(db):
    pool = Pool(db)
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    pool.pending("R1", "P1", "6")
    pool.set_admitted("P1", False)

    pool.approve("P1")
    assert pool.state("R1") == ("cancelled", "project_not_admitted") and not pool.named("QuotaAllocated")


def test_a_round_after_a_reservation_deadline_does_not_count_that_reservation(db):
    pool = Pool(db, reservation_timeout_seconds=60, request_wait_seconds=86_400)
    pool.evaluate("P1")
    pool.evaluate("P2")
    pool.release("10")
    pool.request("R1", "P1", "8")
    pool.round()  # R1 reserving until now + 60 s; the background expiry has not run
    later = T0 + timedelta(seconds=120)
    pool.request("R2", "P2", "8", now=later)

    run = pool.round(now=later)
    assert run.expired_before == ("R1",)
    assert pool.state("R1") == ("expired", "deadline_passed")
    assert pool.state("R2") == ("reserving", None), run.result
    assert ["quota/void/R1/COD"] in [ids for ids, _ in pool.commands()]


def test_every_ledger_command_moving_a_county_pool_is_keyed_by_that_pool(db):
    """The ledger counts pending debits: R1's void and R2's reserve must reach it in order (one partition)."""
    pool = Pool(db)
    pool.evaluate("P1")
    pool.evaluate("P2")
    pool.release("10")
    pool.request("R1", "P1", "8")
    pool.round()
    pool.pending("R1", "P1", "8")
    pool.run(lambda tx: requests.cancel_request(tx, "R1", "withdrawn"))
    pool.request("R2", "P2", "8")
    pool.round()
    pool.pending("R2", "P2", "8")
    pool.approve("P2")

    sent = pool.commands()
    assert [ids for ids, _ in sent] == [
        ["quota/intake/release:REL-1", "quota/retire/release:REL-1"], ["quota/reserve/R1/COD"],
        ["quota/void/R1/COD"], ["quota/reserve/R2/COD"], ["quota/post/R2/COD"]]
    assert {key for _, key in sent} == {f"county:{COUNTY}/pool"}

    other = Pool(db, "320623")
    other.release("1", "REL-2")
    assert {key for _, key in other.commands()} == {"county:320623/pool"}


def test_quota_an_enterprise_saved_by_upgrading_earns_no_compensation_where_it_is_allocated(db):
    """腾退补偿 is for enterprises that left: the lot of an upgrade (the enterprise stays) says it earns none, in
    LotCreated, in the lots and consumptions it leaves, and on every QuotaAllocated that consumes it (settlement
    compensates by that); a closure's lot earns it."""
    pool = Pool(db, verification="accept")  # the closure taken without waiting for EnterpriseExited
    pool.evaluate("P1")
    pool.release("10", "REL-1", reason="closure", serial=1)
    pool.release("10", "REL-2", reason="upgrade_savings", serial=2)
    pool.request("R1", "P1", "12")  # 8 of each lot is grantable (20 % retired): both are consumed
    pool.round()
    pool.pending("R1", "P1", "12")
    pool.approve("P1")
    assert pool.state("R1")[0] == "allocated"

    created = {e.lot_id: e.earns_compensation for e, _ in pool.events if type(e).__name__ == "LotCreated"}
    assert created == {"release:REL-1": True, "release:REL-2": False}
    [allocated] = [e for e, _ in pool.events if type(e).__name__ == "QuotaAllocated"]
    assert {(c.lot_id, c.source_ref, c.amount, c.earns_compensation) for c in allocated.lots} == {
        ("release:REL-1", credit_code(COUNTY, 1), "8.0000", True),
        ("release:REL-2", credit_code(COUNTY, 2), "4.0000", False)}
    with Session(pool.engine) as s:
        lots = dict(s.execute(select(T.lots.c.lot_id, T.lots.c.earns_compensation)).all())
        used = dict(s.execute(select(T.consumptions.c.lot_id, T.consumptions.c.earns_compensation)).all())
    assert lots == used == {"release:REL-1": True, "release:REL-2": False}


def test_a_post_the_ledger_refused_after_its_hold_expired_is_posted_again(db):
    """The ledger away longer than its hold (a day past our deadline): the allocation's post arrives after the
    reservation expired and is refused. The allocation stood here, the units went back to the pool there, and only
    reconciliation said so. Now the reservation is voided if it still holds and the units are posted pool ->
    project under ids of their own, once; a repost refused too is left to reconciliation."""
    pool = Pool(db)
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "8")
    pool.round()
    pool.pending("R1", "P1", "8")
    pool.approve("P1")
    assert pool.state("R1")[0] == "allocated"
    assert [ids for ids, _ in pool.commands()][-1] == ["quota/post/R1/COD"]

    def refused(transfer_id: str, reason: str):
        return TransferRejected(transfer_id=transfer_id, debit_account=f"county:{COUNTY}/pool/COD",
                                credit_account="project:P1/COD", asset="COD", amount="8", code="quota_allocate",
                                at=pool.now, reason=reason)

    assert pool.answer(refused("quota/post/R1/COD", "pending_transfer_expired")) == "reposted"
    sent = pool.commands()
    assert sent[-1] == (["quota/repost-void/R1/COD", "quota/repost/R1/COD"], f"county:{COUNTY}/pool")
    repost = [e for e, _ in pool.events if isinstance(e, TransfersRequested)][-1].transfers
    assert [(t.debit_account, t.credit_account, t.amount, t.pending, t.post_pending_id, t.void_pending_id, t.linked)
            for t in repost] == [
        (f"county:{COUNTY}/pool/COD", "project:P1/COD", "8.0000", False, "", "quota/reserve/R1/COD", False),
        (f"county:{COUNTY}/pool/COD", "project:P1/COD", "8.0000", False, "", "", False)]
    assert pool.state("R1")[0] == "allocated", "the allocation stands"

    # the same answer again (a redelivery, the ledger re-announcing): nothing sent twice
    pool.answer(refused("quota/post/R1/COD", "pending_transfer_expired"))
    assert len(pool.commands()) == len(sent)
    # the repost refused too: no third attempt (reconciliation reports it); another refusal of a post is not reposted
    assert pool.answer(refused("quota/repost/R1/COD", "exceeds_credits")) == "refused"
    assert len(pool.commands()) == len(sent)


@pytest.mark.parametrize("expired", [True, False], ids=["hold-expired", "hold-still-pending"])
def test_the_repost_moves_post_the_allocation_once_on_the_ledger(db_url, expired):
    """What the real ledger makes of quota's repost: its void fails harmlessly when the hold expired (else it frees
    the hold), and the units go pool -> project once either way."""
    from services.ledger.domain import NewAccount, TransferRequest
    from services.quota.domain.ledger_moves import repost_moves
    from tests.integration.ledger.harness import SqlLedger

    pool, project, ext = f"county:{COUNTY}/pool/COD", "project:P1/COD", "external:rights-register/COD"
    led = SqlLedger(db_url, T0)
    try:
        led.open([NewAccount(ext, "COD", "external:rights-register"),
                  NewAccount(pool, "COD", f"county:{COUNTY}/pool"), NewAccount(project, "COD", "project:P1")])
        assert led.submit([TransferRequest("fund", ext, pool, 100_000, code="quota_release_intake"),
                           TransferRequest("quota/reserve/R1/COD", pool, project, 80_000, code="quota_reserve",
                                           pending=True, timeout_seconds=60)]).ok
        if expired:
            led.advance(120)
            led.expire()
        moves = repost_moves("R1", "COD", pool, project, 80_000)
        out = led.submit([TransferRequest(m.transfer_id, m.debit_account, m.credit_account, m.amount, code=m.code.value,
                                          void_pending_id=m.void_pending_id or "") for m in moves])
        results = [r.result.value for r in out.results]
        assert results == (["pending_transfer_expired", "ok"] if expired else ["ok", "ok"])
        # (debits pending, debits posted, credits pending, credits posted)
        assert led.balances()[pool] == (0, 80_000, 0, 100_000)
        assert led.balances()[project] == (0, 0, 0, 80_000)
    finally:
        led.close()
