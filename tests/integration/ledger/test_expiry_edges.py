"""The ledger's own expiry of pending transfers, at its edges, on SQLite and PostgreSQL: a timeout that passed
while the ledger was down, due transfers that cannot be expired, and a post or void racing the expiry."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

from prometheus_client import REGISTRY
from sqlalchemy import text

from services.ledger.domain import NewAccount, TransferRequest
from services.ledger.domain import TransferResult as R
from services.ledger.handlers import LedgerApp
from services.ledger.storage.repository import LedgerRepository, _utc
from services.ledger.storage.tables import transfers as T
from tests.integration.ledger.harness import SqlLedger

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


def _ledger(db_url) -> SqlLedger:
    led = SqlLedger(db_url, T0)
    led.open([NewAccount("reg", "COD", "external:rights-register"), NewAccount("pool", "COD", "county:320612/pool"),
              NewAccount("prj", "COD", "project:P1")])
    assert led.submit([TransferRequest("fund", "reg", "pool", 1_000_000, code="intake")]).ok
    return led


def _events(led: SqlLedger, name: str) -> list[dict]:
    with led.db.engine.connect() as c:
        rows = c.execute(text("SELECT envelope FROM outbox WHERE event_type LIKE :t ORDER BY position"),
                         {"t": f"%.{name}.v%"}).all()
    return [json.loads(r.envelope)["data"] for r in rows]


def test_a_timeout_that_passed_while_the_ledger_was_down_expires_at_its_time(db_url):
    """TigerBeetle: timeouts are deterministic. The transfer expired at expires_at (a post was refused from then
    on); the record and the TransferExpired event say so, not the hour the ledger came back. The journal entry
    is recorded when it is written."""
    led = _ledger(db_url)
    try:
        assert led.submit([TransferRequest("quota/reserve/R1/COD", "pool", "prj", 500, code="reserve", pending=True,
                                           timeout_seconds=3600)]).ok
        due = T0 + timedelta(hours=1)
        led.advance(3 * 24 * 3600)  # down over a weekend
        assert led.expire() == 1
        t = led.transfer("quota/reserve/R1/COD")
        assert (t.status.value, t.expires_at, t.resolved_at) == ("expired", due, due)
        (ev,) = _events(led, "TransferExpired")
        assert ev["transfer_id"] == "quota/reserve/R1/COD"
        assert datetime.fromisoformat(ev["at"].replace("Z", "+00:00")) == due
        with led.db.sessions() as s:
            (entry,) = [r for r in LedgerRepository(s).journal_rows() if r.kind == "pending_expired"]
        assert _utc(entry.recorded_at) == led.now, "the journal says when the ledger wrote it"
        assert led.verify().ok
    finally:
        led.close()


def _insert_pending(led: SqlLedger, tid: str, dr: str, cr: str, asset: str, expires_at: datetime, refs: str = "[]"):
    with led.db.engine.begin() as c:
        c.execute(T.insert().values(
            id=tid, debit_account_id=dr, credit_account_id=cr, asset=asset, amount=7, code="reserve", pending=True,
            timeout_seconds=60, post_pending_id="", void_pending_id="", linked=False, refs=refs, metadata="{}",
            timestamp=expires_at - timedelta(seconds=60), status="pending", expires_at=expires_at, posted_amount=0,
            resolved_by="", resolved_at=None))


def test_due_transfers_that_cannot_be_expired_never_hold_up_the_others(db_url):
    """Three damaged pending rows, due before every other: an account that does not exist, a refs column that is
    not JSON, an asset that is not its accounts'. Each is left pending, named once, counted, and passed over;
    the good ones expire in the same run, even when the damaged ones fill a whole page."""
    led = _ledger(db_url)
    try:
        early = T0 - timedelta(minutes=5)
        _insert_pending(led, "bad/ghost", "ghost", "prj", "COD", early)
        _insert_pending(led, "bad/json", "pool", "prj", "COD", early + timedelta(seconds=1), refs="not json")
        _insert_pending(led, "bad/asset", "pool", "prj", "SO2", early + timedelta(seconds=2))
        assert led.submit([TransferRequest(f"good{i}", "pool", "prj", 100, code="reserve", pending=True,
                                           timeout_seconds=60) for i in range(3)]).ok
        led.advance(120)
        # a page of one: the three damaged rows come first, and still one good transfer expires
        assert led.tx(lambda uow: led.app.expire_due(uow.session, limit=1)) == 1
        assert set(led.app.stuck_expiries) == {"bad/ghost", "bad/json", "bad/asset"}
        assert "ghost" in led.app.stuck_expiries["bad/ghost"]
        assert REGISTRY.get_sample_value("countypool_ledger_expiry_stuck_transfers") == 3
        assert led.expire() == 2
        assert led.expire() == 0, "nothing more: the damaged ones are passed over, no error"
        assert [led.transfer(f"good{i}").status.value for i in range(3)] == ["expired"] * 3
        assert led.balances()["pool"][0] == 0, "every good hold released"
        assert led.verify().ok
        # a fresh process finds them again, without failing either
        fresh = LedgerApp(led.outbox, clock=lambda: led.now)
        assert led.tx(lambda uow: fresh.expire_due(uow.session)) == 0
        assert set(fresh.stuck_expiries) == set(led.app.stuck_expiries)
    finally:
        led.close()


def test_a_post_racing_the_expiry_has_one_outcome_and_one_event(db_url):
    """Two writers whose clocks straddle the timeout (a post a moment before it, an expiry a moment after), and a
    second expiry besides: whichever takes the journal head first decides; the other sees it. One outcome, said
    once."""
    led = _ledger(db_url)
    try:
        rounds = 6
        assert led.submit([TransferRequest(f"res{i}", "pool", "prj", 10, code="reserve", pending=True,
                                           timeout_seconds=60 * (i + 1)) for i in range(rounds)]).ok
        posts = {}
        for i in range(rounds):
            deadline = led.now + timedelta(seconds=60 * (i + 1))  # res{i}'s: the earlier ones are resolved
            poster = LedgerApp(led.outbox, clock=lambda d=deadline: d - timedelta(milliseconds=1))
            expirers = [LedgerApp(led.outbox, clock=lambda d=deadline: d + timedelta(milliseconds=1)) for _ in range(2)]
            start = threading.Barrier(3)

            def post(i=i, poster=poster):
                start.wait()
                posts[i] = led.tx(lambda uow: poster.submit(uow.session, [TransferRequest(
                    f"post{i}", post_pending_id=f"res{i}")])).outcome.results[0].result

            def expire(app):
                start.wait()
                led.tx(lambda uow: app.expire_due(uow.session))

            threads = [threading.Thread(target=post)] + [threading.Thread(target=expire, args=(a,)) for a in expirers]
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
            status = led.transfer(f"res{i}").status.value
            assert (posts[i], status) in {(R.ok, "posted_pending"), (R.pending_transfer_expired, "expired")}, i
        expired = [e["transfer_id"] for e in _events(led, "TransferExpired")]
        posted = [e["pending_id"] for e in _events(led, "TransferPosted") if e["pending_id"]]
        assert sorted(expired + posted) == sorted(f"res{i}" for i in range(rounds)), "each said once, one way"
        assert led.balances()["pool"][0] == 0 and led.verify().ok
    finally:
        led.close()
