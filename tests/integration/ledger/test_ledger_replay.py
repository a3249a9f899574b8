"""The ledger's balances rebuilt from its journal (what `countypool replay ledger` runs): equal to the live
rows after posted, pending, posted-pending, voided and expired transfers; a tampered balance is named and
repaired from the journal; so is an account's flag turned off in its row (the hash chain covers the journal only)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text

from services.ledger.domain import NewAccount, TransferRequest
from services.ledger.replay import MODEL, TERMS, rebuild
from tests.integration.ledger.harness import SqlLedger


def test_balances_rebuilt_from_the_journal(db_url):
    led = SqlLedger(db_url, datetime(2026, 3, 1, tzinfo=timezone.utc))
    try:
        led.open([NewAccount("mint", "CNY", "external:mint"), NewAccount("a", "CNY", "county:320612/a"),
                  NewAccount("b", "CNY", "county:320612/b"), NewAccount("idle", "CNY", "county:320612/idle")])
        assert led.submit([TransferRequest("t1", "mint", "a", 10_000, code="fund")]).ok
        assert led.submit([TransferRequest("p1", "a", "b", 3_000, code="hold", pending=True),
                           TransferRequest("p2", "a", "b", 2_000, code="hold", pending=True),
                           TransferRequest("p3", "a", "b", 1_000, code="hold", pending=True, timeout_seconds=60)]).ok
        assert led.submit([TransferRequest("p1-post", post_pending_id="p1", amount=2_500),
                           TransferRequest("p2-void", void_pending_id="p2")]).ok
        led.advance(120)
        assert led.expire() == 1

        report = rebuild(led.db)
        assert report.equal, [str(d) for d in report.differences]
        assert report.rows == {MODEL: 4, TERMS: 4} and report.events_read > 8
        assert led.balances()["b"] == (0, 0, 0, 2_500)

        with led.db.sessions() as s, s.begin():
            s.execute(text("UPDATE accounts SET credits_posted = 9 WHERE id = 'b'"))
        report = rebuild(led.db)
        assert [(d.model, d.key, d.live, d.rebuilt) for d in report.differences] == [
            (MODEL, "b", (0, 0, 0, 9), (0, 0, 0, 2_500))]
        assert rebuild(led.db, repair=True).repaired == 1
        assert rebuild(led.db).equal and led.balances()["b"] == (0, 0, 0, 2_500)
    finally:
        led.close()


def test_an_account_flag_changed_in_its_row_is_named_and_repaired(db_url):
    """Turning off 'debits must not exceed credits' in the accounts row would let the account overdraw; the journal
    says what the account was opened with."""
    led = SqlLedger(db_url, datetime(2026, 3, 1, tzinfo=timezone.utc))
    try:
        led.open([NewAccount("mint", "CNY", "external:mint"), NewAccount("a", "CNY", "county:320612/a")])
        with led.db.sessions() as s, s.begin():
            s.execute(text("UPDATE accounts SET debits_must_not_exceed_credits = false WHERE id = 'a'"))
        report = rebuild(led.db)
        assert [(d.model, d.key, d.live, d.rebuilt) for d in report.differences] == [
            (TERMS, "a", ("CNY", "county:320612/a", False, False, False), ("CNY", "county:320612/a", True, False, False))]
        assert rebuild(led.db, repair=True).repaired == 1
        assert rebuild(led.db).equal
        assert not led.submit([TransferRequest("over", "a", "mint", 1, code="x")]).ok  # it may not overdraw again
    finally:
        led.close()
