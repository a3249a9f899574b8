"""`countypool replay ledger [--write]` against a ledger that keeps writing, on SQLite and PostgreSQL: a compare
reads the journal and the balances of one moment and leaves the writers going; a repair never rewrites a
balance with figures older than the journal."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

from sqlalchemy import text

import services.ledger.replay as replay
from services.ledger.domain import NewAccount, TransferRequest
from services.ledger.replay import rebuild
from tests.integration.ledger.harness import SqlLedger


def _ledger(db_url) -> SqlLedger:
    led = SqlLedger(db_url, datetime(2026, 3, 1, tzinfo=timezone.utc))
    led.open([NewAccount("mint", "CNY", "external:mint"), NewAccount("a", "CNY", "county:320612/a"),
              NewAccount("b", "CNY", "county:320612/b")])
    assert led.submit([TransferRequest("t1", "mint", "a", 10_000, code="fund"),
                       TransferRequest("t2", "a", "b", 4_000, code="pay")]).ok
    return led


def _write_between_fold_and_compare(monkeypatch, led: SqlLedger, wait: float) -> threading.Thread:
    """Once the journal is folded, a transfer touching 'a' and 'mint' is written from another thread; the replay
    goes on when it has committed, or after ``wait`` seconds (it may be waiting for the replay)."""
    real_live = replay._live
    writer = threading.Thread(target=lambda: led.submit([TransferRequest("t3", "mint", "a", 500, code="fund")]))

    def live_after_a_write(s):
        if not writer.is_alive() and writer.ident is None:
            writer.start()
            writer.join(wait)
        return real_live(s)

    monkeypatch.setattr(replay, "_live", live_after_a_write)
    return writer


def test_a_compare_sees_one_moment_and_leaves_the_writers_going(db_url, monkeypatch):
    led = _ledger(db_url)
    try:
        writer = _write_between_fold_and_compare(monkeypatch, led, wait=5)
        report = rebuild(led.db)
        assert not writer.is_alive(), "the writer waited for a read-only replay"
        assert report.equal, [str(d) for d in report.differences]
        monkeypatch.undo()
        assert rebuild(led.db).equal and led.balances()["a"][3] == 10_500
    finally:
        led.close()


def test_a_repair_never_rewrites_a_balance_with_older_figures(db_url, monkeypatch):
    led = _ledger(db_url)
    try:
        with led.db.engine.begin() as c:
            c.execute(text("UPDATE accounts SET credits_posted = 9 WHERE id = 'b'"))  # the damage to repair
        writer = _write_between_fold_and_compare(monkeypatch, led, wait=2)
        report = rebuild(led.db, repair=True)
        writer.join(60)
        assert not writer.is_alive()
        assert report.repaired == 1 and [d.key for d in report.differences] == ["b"]
        monkeypatch.undo()
        after = rebuild(led.db)
        assert after.equal, [str(d) for d in after.differences]
        assert led.balances()["a"] == (0, 4_000, 0, 10_500) and led.balances()["b"] == (0, 0, 0, 4_000)
    finally:
        led.close()
