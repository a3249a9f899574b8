"""The pure engine's rule table, replayed through the SQL storage on SQLite and PostgreSQL: every outcome,
balance change, status and journal entry must come out of the database exactly as the model says."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.ledger.domain import FailedTransfer, TransferResult as R
from tests.integration.ledger.harness import SqlLedger
from tests.unit.ledger.test_ledger_rules import ROWS, T0, base_ledger


def _sql_base(url: str) -> SqlLedger:
    model = base_ledger()  # the same starting ledger as the pure rule table
    led = SqlLedger(url, T0)
    from services.ledger.domain import NewAccount

    led.open([NewAccount(a.id, a.asset, a.address, a.flags) for a in model.accounts.values()])
    from tests.unit.ledger import test_ledger_rules as rules

    # replay the model's setup batch (the transfers the model holds, in creation order)
    setup = [
        rules.T("t0", "mint", "pool", 1000, code="release", refs=("ev-1",), metadata={"lot": "L1"}),
        rules.T("p1", "pool", "ent", 100, code="reserve", pending=True, timeout_seconds=60),
        rules.T("p0", "pool", "ent", 50, code="reserve", pending=True),
        rules.T("p2", "pool", "ent", 30, code="reserve", pending=True),
        rules.T("post2", post_pending_id="p2"),
        rules.T("p3", "pool", "ent", 20, code="reserve", pending=True),
        rules.T("void3", void_pending_id="p3"),
    ]
    assert led.submit(setup).ok
    assert led.balances() == rules.balances(model), "the SQL base ledger equals the model's"
    return led


@pytest.mark.parametrize("name", list(ROWS))
def test_rule_through_storage(name, db_url):
    row = ROWS[name]
    led = _sql_base(db_url)
    try:
        for batch in row.setup:
            led.submit(batch)
        led.now = T0 + timedelta(seconds=row.advance)
        # the service expires what is due before it judges a batch (LedgerApp.submit); the pure engine's row is
        # the batch's own effect, so what is due is expired first here
        led.expire()
        before = led.balances()
        head_before = led.verify().head_seq
        out = led.submit(row.batch)
        assert [o.result for o in out.results] == row.expected
        after = led.balances()
        for acct in after:
            change = tuple(a - b for a, b in zip(after[acct], before[acct]))
            assert change == row.deltas.get(acct, (0, 0, 0, 0)), acct
        for tid, (status, posted_amount) in row.statuses.items():
            t = led.transfer(tid)
            assert (t.status, t.posted_amount) == (status, posted_amount), tid
        v = led.verify()
        assert v.ok, v
        assert v.head_seq - head_before == sum(1 for o in out.results if o.result is R.ok)
        for o, req in zip(out.results, row.batch):
            if o.result not in (R.ok, R.id_must_not_be_empty, R.linked_event_failed, R.linked_event_chain_open) \
                    and not o.result.name.startswith("exists") and req.id:
                stored = led.transfer(req.id)
                assert isinstance(stored, FailedTransfer) and stored.result is o.result, req.id
        # the same batch again changes nothing more than 'exists' / the same failures
        again = led.submit(row.batch)
        assert led.balances() == after
        for first, second in zip(out.results, again.results):
            if first.result is R.ok:
                assert second.result is R.exists
            elif first.result not in (R.linked_event_failed, R.linked_event_chain_open) and not first.result.name.startswith("exists"):
                assert second.result in (first.result, R.linked_event_failed)
    finally:
        led.close()


def test_pending_transfers_expire_by_themselves(db_url):
    led = _sql_base(db_url)
    try:
        before = led.balances()
        assert led.expire() == 0, "nothing is due yet"
        led.advance(61)
        assert led.expire() == 1, "p1 (60 s) expires; p0 has no timeout"
        t = led.transfer("p1")
        assert t.status.value == "expired"
        after = led.balances()
        assert after["pool"][0] == before["pool"][0] - 100 and after["ent"][2] == before["ent"][2] - 100
        out = led.submit([__import__("services.ledger.domain", fromlist=["TransferRequest"]).TransferRequest("post-p1", post_pending_id="p1")])
        assert out.results[0].result is R.pending_transfer_expired
        assert led.verify().ok
    finally:
        led.close()
