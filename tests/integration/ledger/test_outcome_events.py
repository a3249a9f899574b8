"""Which outcome events a batch publishes (SQLite and PostgreSQL): consumers key on the transfer id, so a
TransferRejected must never be said of an id that stands as a transfer, nor twice of one id."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import select

from services.ledger.domain import NewAccount, TransferRequest as T, TransferResult as R
from services.ledger.storage.tables import messaging
from tests.integration.ledger.harness import SqlLedger

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ACCOUNTS = [NewAccount("external:mint/COD", "COD", "external:mint"),
            NewAccount("county:320612/pool/COD", "COD", "county:320612/pool"),
            NewAccount("enterprise:91320612MA1W2B3C4D/COD", "COD", "enterprise:91320612MA1W2B3C4D")]
MINT, POOL, ENT = (a.id for a in ACCOUNTS)


def _said(led: SqlLedger, tid: str) -> list[tuple[str, str | None]]:
    """(event name, reason) of every outcome event about ``tid``, in outbox order."""
    o = messaging["outbox"]
    with led.db.sessions() as s:
        docs = map(json.loads, s.execute(select(o.c.envelope).order_by(o.c.position)).scalars())
        return [(d["type"].split(".")[1], d["data"].get("reason")) for d in docs
                if d["data"].get("transfer_id") == tid]


def _ledger(url: str) -> SqlLedger:
    led = SqlLedger(url, T0)
    led.open(ACCOUNTS)
    return led


def test_no_rejection_for_a_posted_id_resubmitted_with_another_field(db_url):
    led = _ledger(db_url)
    try:
        assert led.submit([T("L1", MINT, POOL, 100)]).ok
        for _ in range(2):  # every retry: answered, never published
            assert led.submit([T("L1", MINT, POOL, 101)]).results[0].result is R.exists_with_different_amount
        assert led.submit([T("L1", MINT, POOL, 100), T("L1", MINT, POOL, 102)]).results[1].result \
            is R.exists_with_different_amount
        assert _said(led, "L1") == [("TransferPosted", None)]
    finally:
        led.close()


def test_no_rejection_for_an_existing_member_of_a_failed_chain(db_url):
    led = _ledger(db_url)
    try:
        assert led.submit([T("intake", MINT, POOL, 100, linked=True), T("retire", POOL, ENT, 10)]).ok
        out = led.submit([T("intake", MINT, POOL, 100, linked=True), T("retire-b", POOL, ENT, 10_000)])
        assert [o.result for o in out.results] == [R.linked_event_failed, R.exceeds_credits]
        assert _said(led, "intake") == [("TransferPosted", None)], "it stands posted"
        assert _said(led, "retire-b") == [("TransferRejected", "exceeds_credits")]
    finally:
        led.close()


def test_no_rejection_for_a_transfer_this_batch_posts(db_url):
    """A new id refused in a failed chain, then posted later in the same batch: it stands, nothing refused."""
    led = _ledger(db_url)
    try:
        out = led.submit([T("x", MINT, POOL, 5, linked=True), T("y", POOL, ENT, 10_000), T("x", MINT, POOL, 5)])
        assert [o.result for o in out.results] == [R.linked_event_failed, R.exceeds_credits, R.ok]
        assert _said(led, "x") == [("TransferPosted", None)]
    finally:
        led.close()


def test_a_first_failure_is_said_once_and_chain_members_with_new_ids_are_told(db_url):
    led = _ledger(db_url)
    try:
        out = led.submit([T("m1", MINT, POOL, 5, linked=True), T("m2", POOL, ENT, 10_000),
                          T("m2", POOL, ENT, 1), T("nobody", "missing", POOL, 1)])
        assert [o.result for o in out.results] == [R.linked_event_failed, R.exceeds_credits, R.exceeds_credits,
                                                   R.debit_account_not_found]
        led.submit([T("m2", POOL, ENT, 1), T("nobody", "missing", POOL, 1)])  # retries of failed ids: silent
        assert _said(led, "m1") == [("TransferRejected", "linked_event_failed")], "a new id: not stored, told"
        assert _said(led, "m2") == [("TransferRejected", "exceeds_credits")]
        assert _said(led, "nobody") == [("TransferRejected", "debit_account_not_found")]
    finally:
        led.close()


def test_a_rejection_says_the_asset_and_amount_as_stated(db_url):
    """Refused for its asset: the event repeats what was sent ('1' CNY), not 100 units read as COD."""
    from services.ledger.handlers import to_request
    from shared.contracts.ledger import TransferSpec

    led = _ledger(db_url)
    try:
        spec = TransferSpec(transfer_id="cny", debit_account=MINT, credit_account=POOL, asset="CNY", amount="1")
        assert led.submit([to_request(spec, led.app.assets)]).results[0].result is R.asset_differs_from_accounts
        o = messaging["outbox"]
        with led.db.sessions() as s:
            data = [json.loads(e)["data"] for e in s.execute(select(o.c.envelope).where(o.c.key == "cny")).scalars()]
        assert [(d["asset"], d["amount"], d["reason"]) for d in data] == [("CNY", "1.00", "asset_differs_from_accounts")]
    finally:
        led.close()


def test_a_repeat_over_kafka_is_answered_again_with_the_standing_outcome(db_url):
    """answer_repeats (the Kafka command path): a posted id asked again gets TransferPosted again, a failed id its
    rejection again, a pending one TransferPending, an expired one TransferExpired, each once per batch; a retry
    with another field is still not answered (that transfer stands as it was). Balances move once."""
    led = _ledger(db_url)
    try:
        assert led.submit([T("p", MINT, POOL, 100), T("res", POOL, ENT, 5, pending=True, timeout_seconds=60),
                           T("gone", POOL, ENT, 5, pending=True, timeout_seconds=1)]).ok
        assert led.submit([T("bad", POOL, ENT, 10_000)]).results[0].result is R.exceeds_credits
        led.advance(5)
        assert led.expire() == 1
        before = led.balances()
        again = led.submit([T("p", MINT, POOL, 100), T("p", MINT, POOL, 100), T("bad", POOL, ENT, 10_000),
                            T("res", POOL, ENT, 5, pending=True, timeout_seconds=60),
                            T("gone", POOL, ENT, 5, pending=True, timeout_seconds=1), T("p", MINT, POOL, 7)],
                           answer_repeats=True)
        assert [o.result for o in again.results] == [R.exists, R.exists, R.exceeds_credits, R.exists, R.exists,
                                                     R.exists_with_different_amount]
        assert led.balances() == before
        assert _said(led, "p") == [("TransferPosted", None)] * 2
        assert _said(led, "bad") == [("TransferRejected", "exceeds_credits")] * 2
        assert _said(led, "res") == [("TransferPending", None)] * 2
        assert _said(led, "gone") == [("TransferPending", None), ("TransferExpired", None), ("TransferExpired", None)]
        led.submit([T("p", MINT, POOL, 100), T("bad", POOL, ENT, 10_000)])  # over HTTP: answered in the response
        assert len(_said(led, "p")) == 2 and len(_said(led, "bad")) == 2
    finally:
        led.close()
