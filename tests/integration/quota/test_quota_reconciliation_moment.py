"""Reconciliation compares the two books at one moment (SQLite and PostgreSQL), over the HTTP API, against a ledger
whose balances the test sets (what the real ledger would answer at that moment):

- a transfer of ours on its way (a void asked, not yet applied; a reservation asked and applied while the ledger was
  being read) is no fault: the reading is retried, and one that never settles is reported so (``settled`` false)
  and leaves the metric as the county's last settled reading had it;
- our figures are read in one snapshot (PostgreSQL read committed gave each query its own: a pool's lots before an
  allocation and its reservations after it), and never held open while the ledger is asked (SQLite: that kept
  every writer of the service out for as long as the ledger took to answer);
- lots whose intake the ledger refused show as a difference (``intake_refused``)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from services.quota.application import intake as intake_module
from services.quota.application import requests
from services.quota.application.formats import qty
from services.quota.storage import intake_store
from services.quota.storage import tables as T
from shared.contracts.ledger import TransferPosted, TransferRejected, TransferVoided
from tests.integration.quota.test_quota_application import Pool
from tests.support.services import ADMIN, running_service

COUNTY = "320612"
POOL, RETIRED, PROJECT = f"county:{COUNTY}/pool/COD", f"county:{COUNTY}/retired/COD", "project:P1/COD"


class FakeLedger:
    """What reconciliation asks the ledger (LedgerBalances' two queries), answered from balances the test sets.
    ``during``: called as the ledger is read (something happening on our side meanwhile)."""

    def __init__(self):
        self.accounts: dict[str, tuple[int, int]] = {}  # account -> (balance, debits pending), COD units
        self.seq = 1
        self.during = None
        self.reads = 0

    def set(self, account: str, balance: float, pending: float = 0) -> None:
        self.accounts[account] = (round(balance * 10_000), round(pending * 10_000))
        self.seq += 1

    def _row(self, account: str) -> dict:
        balance, pending = self.accounts[account]
        return {"account_id": account, "asset": "COD", "balance": qty("COD", balance),
                "debits_pending": qty("COD", pending), "as_of_seq": self.seq}

    def by_prefix(self, prefix: str) -> list[dict]:
        self.reads += 1
        if self.during is not None:
            self.during()
        return [self._row(a) for a in sorted(self.accounts) if a.startswith(prefix)]

    def by_ids(self, ids: list[str]) -> list[dict]:
        return [self._row(a) for a in ids if a in self.accounts]


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        ledger = FakeLedger()
        client.app.state.ledger_balances = ledger
        yield rt, client, ledger


def _pool(rt) -> Pool:
    pool = Pool(rt.db, COUNTY, retire_share_bp={"COD": 0})
    pool.now = datetime.now(timezone.utc)  # transfers asked now (one asked long ago would count as stuck)
    return pool


def _answer_intakes(pool: Pool) -> None:
    """The ledger's answers to every intake chain asked so far (intake and retire both posted)."""
    with Session(pool.engine) as s:
        rows = s.execute(select(T.ledger_transfers).where(T.ledger_transfers.c.purpose.in_(["intake", "retire"])
                                                          & (T.ledger_transfers.c.state == "asked"))).all()
    for r in rows:
        pool.answer(TransferPosted(transfer_id=r.transfer_id, debit_account=r.debit_account,
                                   credit_account=r.credit_account, asset=r.asset, amount="1", code="c", at=pool.now))


def _reserved_pool(rt, ledger: FakeLedger) -> Pool:
    """10 t of COD booked, P1's request R1 of 6 t reserved: both books agree."""
    pool = _pool(rt)
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    pool.pending("R1", "P1", "6")
    ledger.set(POOL, 10, pending=6)
    ledger.set(PROJECT, 0)
    return pool


def _gauge(figure: str) -> float:
    return REGISTRY.get_sample_value("countypool_quota_reconciliation_difference",
                                     {"asset": "COD", "figure": figure}) or 0.0


def _reconcile(client) -> dict:
    r = client.get(f"/v1/counties/{COUNTY}/reconciliation", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_void_on_its_way_to_the_ledger_is_in_flight_not_a_fault(service):
    rt, client, ledger = service
    pool = _reserved_pool(rt, ledger)
    agreed = _reconcile(client)
    assert (agreed["agrees"], agreed["in_flight"]) == (True, 0)
    run = client.post("/v1/reconciliation:run", headers=ADMIN)
    assert run.status_code == 200, run.text
    before = _gauge("reserved")

    pool.run(lambda tx: requests.cancel_request(tx, "R1", "withdrawn"))  # void asked; the ledger still holds 6 t
    rep = _reconcile(client)
    assert [(d["figure"], d["ours"], d["ledger"]) for d in rep["differences"]] == [("reserved", "0.0000", "6.0000")]
    assert rep["in_flight"] == 1, "the void is on its way: the difference is no fault"
    assert client.post("/v1/reconciliation:run", headers=ADMIN).status_code == 200
    assert _gauge("reserved") == before, "a reading with a transfer in flight does not move the metric"
    assert (rep["settled"], agreed["settled"]) == (False, True)

    pool.answer(TransferVoided(transfer_id="quota/void/R1/COD", debit_account=POOL, credit_account=PROJECT,
                               asset="COD", amount="6", code="c", pending_id="quota/reserve/R1/COD", at=pool.now))
    ledger.set(POOL, 10, pending=0)
    done = _reconcile(client)
    assert (done["agrees"], done["in_flight"], done["settled"]) == (True, 0, True)


def test_a_reservation_asked_and_applied_while_the_ledger_is_read_is_read_again(service):
    rt, client, ledger = service
    pool = _pool(rt)
    pool.evaluate("P1")
    pool.release("10")
    _answer_intakes(pool)
    pool.request("R1", "P1", "6")
    ledger.set(POOL, 10)

    def meanwhile():  # our round reserves 6 t, the ledger makes the pending transfer, we take its answer in
        if ledger.reads == 1:
            pool.round()
            ledger.set(POOL, 10, pending=6)
            ledger.set(PROJECT, 0)
            pool.pending("R1", "P1", "6")

    ledger.during = meanwhile
    rep = _reconcile(client)
    assert rep["differences"] == [], rep
    assert ledger.reads >= 2
    assert (rep["agrees"], rep["in_flight"], rep["settled"]) == (True, 0, True)


def test_the_ledger_is_read_with_no_transaction_of_ours_open(service):
    """SQLite: a read transaction of the service takes the database's write lock (shared/db.py), so one held
    while the ledger answered kept the consumer and every write out, 10 s and more when the ledger is slow.
    PostgreSQL: a connection idle in a transaction meanwhile."""
    rt, client, ledger = service
    _reserved_pool(rt, ledger)
    seen: list[str] = []

    def meanwhile():
        if rt.db.is_postgres:
            probe = create_engine(rt.db.url)
            with probe.connect() as c:
                seen.append(str(c.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%'")).scalar()))
            probe.dispose()
        else:
            import sqlite3

            c = sqlite3.connect(rt.db.engine.url.database, timeout=0.5, isolation_level=None)
            try:
                c.execute("BEGIN IMMEDIATE")
                c.execute("ROLLBACK")
                seen.append("0")
            except sqlite3.OperationalError as exc:
                seen.append(str(exc))
            finally:
                c.close()

    ledger.during = meanwhile
    assert _reconcile(client)["agrees"]
    assert client.post("/v1/reconciliation:run", headers=ADMIN).status_code == 200
    assert seen and set(seen) == {"0"}, seen


def test_the_pool_figures_are_of_one_moment(service, monkeypatch):
    """An allocation commits between the query of the lots and that of the reservations."""
    rt, client, ledger = service
    pool = _reserved_pool(rt, ledger)
    real = intake_store.lot_sums
    calls = []

    def lot_sums_then_allocate(session, county_code):
        out = real(session, county_code)
        if not calls:
            calls.append(1)
            pool.approve("P1")  # R1 allocated: 6 t leave the lots and the reservations at once
        return out

    monkeypatch.setattr(intake_store, "lot_sums", lot_sums_then_allocate)
    (cod,) = [a for a in client.get(f"/v1/counties/{COUNTY}/pool", headers=ADMIN).json()["assets"]
              if a["asset"] == "COD"]
    assert calls and pool.state("R1")[0] == "allocated"
    figures = (cod["released"], cod["allocated"], cod["reserved"], cod["available"])
    assert figures in {("10.0000", "0.0000", "6.0000", "4.0000"), ("10.0000", "6.0000", "0.0000", "4.0000")}, cod


def test_a_lot_the_ledger_refused_to_book_shows_in_the_reconciliation(service):
    rt, client, ledger = service
    pool = _pool(rt)
    pool.run(lambda tx: intake_module.submit_release(tx, dict(
        release_id="REL-X", enterprise_credit_code=_credit(), township_code=f"{COUNTY}100", county_code=COUNTY,
        asset="COD", amount="3", reason="upgrade_savings", basis="free", buyback_price_per_unit=None,
        document_ref="doc", released_on="2024-02-01"), department="ecology", submitted_by="test"))
    pool.answer(TransferRejected(transfer_id="quota/intake/release:REL-X", debit_account="external:rights-register/COD",
                                 credit_account=POOL, asset="COD", amount="3", code="c", reason="exists_with_different_amount",
                                 at=pool.now))
    rep = _reconcile(client)
    assert [(d["figure"], d["ours"], d["ledger"]) for d in rep["differences"]] == [("intake_refused", "3.0000", "0.0000")]
    assert rep["settled"] and not rep["agrees"]


def _credit() -> str:
    from tests.integration.quota.harness import credit_code

    return credit_code(COUNTY, 7)


def test_a_ledger_that_does_not_answer_is_a_503_and_leaves_the_metric(service):
    rt, client, ledger = service
    _reserved_pool(rt, ledger)
    assert client.post("/v1/reconciliation:run", headers=ADMIN).status_code == 200
    before = {f: _gauge(f) for f in ("reserved", "in_pool", "allocated", "retired")}
    from services.quota.application.reconciliation import LedgerUnavailable

    def down():
        raise LedgerUnavailable("connection refused")

    ledger.during = down
    r = client.post("/v1/reconciliation:run", headers=ADMIN)
    assert (r.status_code, r.json()["reason"]) == (503, "ledger_unavailable")
    assert {f: _gauge(f) for f in before} == before
