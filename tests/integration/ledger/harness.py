"""The ledger's application layer on a real database, with a clock the test controls."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Iterator

from services.ledger.domain import NewAccount, TransferRequest
from services.ledger.handlers import LedgerApp
from services.ledger.main import MIGRATIONS
from services.ledger.storage.repository import LedgerRepository
from services.ledger.storage.tables import messaging
from shared import migrations
from shared.db import Database
from shared.outbox import Outbox
from shared.unit_of_work import transactional


class SqlLedger:
    def __init__(self, url: str, now: datetime):
        self.db = Database(url, "ledger")
        migrations.upgrade(self.db, MIGRATIONS)
        self.outbox = Outbox(messaging["outbox"], "ledger")
        self.now = now
        self.app = LedgerApp(self.outbox, clock=lambda: self.now)

    def tx(self, fn):
        return transactional(self.db, self.outbox, fn)

    def open(self, accounts: list[NewAccount]):
        return self.tx(lambda uow: self.app.open_accounts(uow.session, accounts))

    def submit(self, batch: list[TransferRequest], **kw):
        return self.tx(lambda uow: self.app.submit(uow.session, batch, **kw)).outcome

    def expire(self) -> int:
        return self.tx(lambda uow: self.app.expire_due(uow.session))

    def advance(self, seconds: float) -> None:
        self.now = self.now + timedelta(seconds=seconds)

    def balances(self) -> dict[str, tuple[int, int, int, int]]:
        with self.db.sessions() as s:
            return {a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
                    for a in LedgerRepository(s).accounts_where(limit=100000)}

    def transfer(self, tid: str):
        with self.db.sessions() as s:
            repo = LedgerRepository(s)
            found = repo.transfers_by_id([tid])
            return found[0] if found else repo.failed(tid)

    def verify(self, from_seq: int = 1):
        from services.ledger.api.routes import verify_chain

        with self.db.sessions() as s:
            return verify_chain(LedgerRepository(s), from_seq)

    def close(self) -> None:
        self.db.dispose()


def pausing(verify, paused, release):
    """``verify`` (domain.verify's signature) that stops before its second entry: ``paused`` is set, and it goes on
    once ``release`` is (for tests of what a verification in progress holds)."""
    def pausing_verify(entries, **kw):
        def slowly():
            for i, e in enumerate(entries):
                if i == 1:
                    paused.set()
                    release.wait(20)
                yield e
        return verify(slowly(), **kw)

    return pausing_verify


# -- the ledger service in-process with COD accounts opened (the HTTP tests) -----------------------------------
POOL = "county:320612/pool/COD"
REG = "external:rights-register/COD"
ENT = "enterprise:91320612MA1W2B3C4D/COD"


@contextmanager
def served_ledger(db_url: str, bootstrap: str, accounts: list[tuple[str, str]]) -> Iterator[tuple]:
    """(runtime, client) of a ledger service whose COD accounts (id, address) are open."""
    from tests.support.services import ADMIN, running_service

    with running_service("ledger", db_url, bootstrap, background=False) as (rt, client):
        r = client.post("/v1/accounts", headers=ADMIN, json={"accounts": [
            {"account_id": account, "asset": "COD", "address": address} for account, address in accounts]})
        assert r.json()["ok"], r.json()
        yield rt, client


def cod_transfer(tid: str, dr: str, cr: str, amount, **kw) -> dict:
    return {"transfer_id": tid, "debit_account": dr, "credit_account": cr, "asset": "COD", "amount": amount,
            "code": "test", **kw}


STANDARD_ACCOUNTS = [(REG, "external:rights-register"), (POOL, "county:320612/pool"),
                     (ENT, "enterprise:91320612MA1W2B3C4D")]
