"""Review of the ledger's transfer semantics at their edges, against TigerBeetle's (SQLite and PostgreSQL):
a pending transfer's timeout to the microsecond, a timeout reached while the ledger was down, linked chains
that create and resolve pending transfers, retries of posts and voids, balance flags with pending amounts,
balances as of a time around an expiry, and what the outcome events say."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from services.ledger.domain import AccountFlags, FailedTransfer, NewAccount
from services.ledger.domain import TransferRequest as T
from services.ledger.domain import TransferResult as R
from services.ledger.domain import TransferStatus as S
from services.ledger.handlers import LedgerApp
from services.ledger.storage.repository import LedgerRepository
from services.ledger.storage.tables import messaging
from tests.integration.ledger.harness import SqlLedger

T0 = datetime(2026, 4, 1, 8, 0, 0, 123456, tzinfo=timezone.utc)  # not on a whole second
MINT, POOL, PRJ = "external:mint/COD", "county:320612/pool/COD", "project:P1/COD"
ACCOUNTS = [NewAccount(MINT, "COD", "external:mint"), NewAccount(POOL, "COD", "county:320612/pool"),
            NewAccount(PRJ, "COD", "project:P1")]


def _ledger(url: str, fund: int = 1_000_000) -> SqlLedger:
    led = SqlLedger(url, T0)
    led.open(ACCOUNTS)
    assert led.submit([T("fund", MINT, POOL, fund, code="intake")]).ok
    return led


def _events(led: SqlLedger) -> list[tuple[str, dict]]:
    """(event name, data) of every ledger outcome event, in outbox order."""
    o = messaging["outbox"]
    with led.db.sessions() as s:
        docs = [json.loads(e) for e in s.execute(select(o.c.envelope).order_by(o.c.position)).scalars()]
    return [(d["type"].split(".")[1], d["data"]) for d in docs if "transfer_id" in d["data"]]


def _results(out) -> list[R]:
    return [o.result for o in out.results]


# -- a timeout to the microsecond --------------------------------------------------------------------------------

@pytest.mark.parametrize("offset_us, post_result, expired_by_job", [
    (-1, R.ok, 0),  # one microsecond before the timeout: still pending
    (0, R.pending_transfer_expired, 1),  # at the timeout instant: expired (TigerBeetle: expires_at <= now)
    (1, R.pending_transfer_expired, 1),
])
def test_the_timeout_instant_to_the_microsecond_through_storage(db_url, offset_us, post_result, expired_by_job):
    """expires_at = timestamp + timeout, stored and read back to the microsecond on both databases: the engine's
    refusal and the expiry job's choice of what is due agree at the very instant."""
    led = _ledger(db_url)
    try:
        assert led.submit([T("res", POOL, PRJ, 500, code="reserve", pending=True, timeout_seconds=60)]).ok
        due = T0 + timedelta(seconds=60)
        assert led.transfer("res").expires_at == due
        led.now = due + timedelta(microseconds=offset_us)
        if post_result is R.ok:  # the job leaves it, then a void takes it
            assert led.expire() == expired_by_job
            assert _results(led.submit([T("void-res", void_pending_id="res")])) == [R.ok]
        else:  # the job has not run: the batch expires the hold first, then refuses both
            out = led.submit([T("void-res", void_pending_id="res"), T("post-res", post_pending_id="res")])
            assert _results(out) == [post_result] * 2
            assert led.expire() == 0, "expired by the batch already"
        t = led.transfer("res")
        if post_result is R.ok:
            assert (t.status, led.balances()[POOL][0]) == (S.voided, 0)
        else:
            assert (t.status, t.resolved_at) == (S.expired, due)
            assert isinstance(led.transfer("post-res"), FailedTransfer)
        assert led.verify().ok
    finally:
        led.close()


# -- a timeout reached while the ledger was down -------------------------------------------------------------------

def test_a_hold_past_its_timeout_no_longer_limits_the_account_before_the_expiry_job_runs(db_url):
    """The ledger comes back a day after a reservation's timeout; the first batch it takes (before its expiry job
    ran) posts the reservation and, in the same batch, moves the pool's units elsewhere. The post is refused as
    expired: the hold ended at its timeout. So the units it held are the pool's again, and the move must succeed;
    it was refused exceeds_credits, and that id then stays failed for ever, whatever the expiry does next.
    (This is what quota's repost_moves sends after a refused allocation.)"""
    led = _ledger(db_url, fund=500)
    try:
        assert led.submit([T("quota/reserve/R1/COD", POOL, PRJ, 500, code="reserve", pending=True,
                             timeout_seconds=3600)]).ok
        led.close()
        led = SqlLedger(db_url, T0 + timedelta(days=1))  # restarted: a fresh process, its expiry not yet run
        out = led.submit([T("quota/post/R1/COD", post_pending_id="quota/reserve/R1/COD", code="allocate"),
                          T("quota/repost/R1/COD", POOL, PRJ, 500, code="allocate")])
        assert _results(out)[0] is R.pending_transfer_expired
        assert _results(out)[1] is R.ok, "the hold expired a day ago: the pool's 500 are available"
    finally:
        led.close()


def test_a_post_first_on_restart_is_refused_expired_for_good_and_the_expiry_is_dated_at_the_timeout(db_url):
    """Down over the timeout; on restart the post comes first: the batch expires the hold dated at its timeout
    (TransferExpired with the full amount), then refuses the post pending_transfer_expired (TransferRejected saying
    so). The post's id stays failed with the same result in any later process, even with another amount."""
    led = _ledger(db_url)
    try:
        assert led.submit([T("res", POOL, PRJ, 12_345, code="reserve", pending=True, timeout_seconds=60)]).ok
        led.close()
        led = SqlLedger(db_url, T0 + timedelta(hours=5))
        assert _results(led.submit([T("post", post_pending_id="res", amount=0)])) == [R.pending_transfer_expired]
        assert led.balances()[POOL][0] == 0, "the hold ended at its timeout, before the batch was judged"
        assert led.expire() == 0
        led.close()
        led = SqlLedger(db_url, T0 + timedelta(hours=6))
        assert _results(led.submit([T("post", post_pending_id="res", amount=10)])) == [R.pending_transfer_expired]
        assert led.transfer("post").result is R.pending_transfer_expired
        said = [(name, d.get("transfer_id"), d.get("amount"), d.get("reason"), d.get("at"))
                for name, d in _events(led) if name != "TransferPosted"]
        assert said[0][:3] == ("TransferPending", "res", "1.2345")
        assert said[1][:3] == ("TransferExpired", "res", "1.2345")
        assert datetime.fromisoformat(said[1][4].replace("Z", "+00:00")) == T0 + timedelta(seconds=60)
        assert said[2][:4] == ("TransferRejected", "post", "0.0000", "pending_transfer_expired")
        assert len(said) == 3, "the retry of a failed id is not said again over HTTP"
        assert led.balances()[POOL] == (0, 0, 0, 1_000_000) and led.verify().ok
    finally:
        led.close()


# -- linked chains that create and resolve pending transfers -------------------------------------------------------

def _chain(last_amount: int) -> list[T]:
    return [
        T("c/p", POOL, PRJ, 10_000, code="reserve", pending=True, timeout_seconds=60, linked=True),
        T("c/post-p", post_pending_id="c/p", amount=4_000, linked=True),  # partial: 6,000 released
        T("c/q", POOL, PRJ, 2_500, code="reserve", pending=True, linked=True),
        T("c/void-q", void_pending_id="c/q", linked=True),
        T("c/move", POOL, PRJ, last_amount, code="move"),
    ]


def test_a_failing_chain_rolls_back_the_pending_transfers_it_created_and_resolved(db_url):
    """The chain's last member is refused: none of its pending transfers, post or void took effect, none of their
    ids is reserved (linked_event_failed is the chain's failure, not theirs), and the same chain fixed succeeds."""
    led = _ledger(db_url)
    try:
        before = led.balances()
        out = led.submit(_chain(1_000_000 - 4_000 + 1))  # one unit more than the pool would hold after the post
        assert _results(out) == [R.linked_event_failed] * 4 + [R.exceeds_credits]
        assert led.balances() == before
        assert [led.transfer(i) for i in ("c/p", "c/post-p", "c/q", "c/void-q")] == [None] * 4
        assert [name for name, d in _events(led) if d["transfer_id"].startswith("c/")] == ["TransferRejected"] * 5
        assert _results(led.submit(_chain(1_000))) == [R.linked_event_failed] * 4 + [R.exceeds_credits], \
            "c/move stays failed, and fails its chain again"
        fixed = _chain(1_000)
        fixed[-1] = T("c/move2", POOL, PRJ, 1_000, code="move")
        assert _results(led.submit(fixed)) == [R.ok] * 5, "the other ids were not reserved by the chain's failure"
        assert led.transfer("c/p").status is S.posted_pending and led.transfer("c/q").status is S.voided
        assert led.balances()[POOL] == (0, 5_000, 0, 1_000_000) and led.verify().ok
    finally:
        led.close()


def test_a_chain_mixing_pending_post_and_void_says_each_outcome_with_its_amount(db_url):
    """Balances after the chain, and the events: TransferPending (with expires_at), TransferPosted of the part
    posted (not the pending amount), TransferVoided of the whole hold, amounts as strings of COD's scale (4)."""
    led = _ledger(db_url)
    try:
        assert _results(led.submit(_chain(1_000))) == [R.ok] * 5
        assert led.balances()[POOL] == (0, 5_000, 0, 1_000_000)
        assert led.balances()[PRJ] == (0, 0, 0, 5_000)
        p = led.transfer("c/p")
        assert (p.status, p.posted_amount, p.resolved_by) == (S.posted_pending, 4_000, "c/post-p")
        said = [(n, d["transfer_id"], d["amount"], d["pending_id"]) for n, d in _events(led)
                if d["transfer_id"].startswith("c/")]
        assert said == [("TransferPending", "c/p", "1.0000", ""), ("TransferPosted", "c/post-p", "0.4000", "c/p"),
                        ("TransferPending", "c/q", "0.2500", ""), ("TransferVoided", "c/void-q", "0.2500", "c/q"),
                        ("TransferPosted", "c/move", "0.1000", "")]
        pending_ev = next(d for n, d in _events(led) if d["transfer_id"] == "c/p")
        assert datetime.fromisoformat(pending_ev["expires_at"].replace("Z", "+00:00")) == T0 + timedelta(seconds=60)
    finally:
        led.close()


# -- retries of posts and voids --------------------------------------------------------------------------------

def test_retries_of_a_post_and_a_void_name_the_field_that_differs(db_url):
    led = _ledger(db_url)
    try:
        assert led.submit([T("p", POOL, PRJ, 100, code="reserve", pending=True),
                           T("q", POOL, PRJ, 100, code="reserve", pending=True),
                           T("post-p", post_pending_id="p", amount=40),
                           T("void-q", void_pending_id="q")]).ok
        cases = [
            (T("post-p", post_pending_id="p", amount=40), R.exists),
            (T("post-p", POOL, PRJ, 40, code="reserve", post_pending_id="p"), R.exists),  # explicit = the pending's
            (T("post-p", post_pending_id="p", amount=41), R.exists_with_different_amount),
            (T("post-p", post_pending_id="q", amount=40), R.exists_with_different_pending_id),
            (T("post-p", void_pending_id="p", amount=40), R.exists_with_different_flags),
            (T("post-p", PRJ, "", 40, post_pending_id="p"), R.exists_with_different_debit_account_id),
            (T("post-p", post_pending_id="p", amount=40, code="other"), R.exists_with_different_code),
            (T("post-p", post_pending_id="p", amount=40, asset="CNY"), R.exists_with_different_asset),
            (T("void-q", void_pending_id="q", amount=100), R.exists),  # the full amount is what 0 meant
            (T("void-q", void_pending_id="q", amount=60), R.exists_with_different_amount),
            (T("void-q", void_pending_id="p"), R.exists_with_different_pending_id),
            (T("void-q", post_pending_id="q"), R.exists_with_different_flags),
        ]
        before = led.balances()
        out = led.submit([c for c, _ in cases])
        assert _results(out) == [r for _, r in cases]
        assert led.balances() == before
        # a second resolution under a new id: refused for what happened first
        out = led.submit([T("post-p2", post_pending_id="p"), T("void-p", void_pending_id="p"),
                          T("post-q", post_pending_id="q"), T("void-q2", void_pending_id="q")])
        assert _results(out) == [R.pending_transfer_already_posted, R.pending_transfer_already_posted,
                                 R.pending_transfer_already_voided, R.pending_transfer_already_voided]
        assert led.balances() == before
    finally:
        led.close()


# -- balance flags with pending amounts ------------------------------------------------------------------------

def test_pending_credits_do_not_help_either_flag_and_pending_debits_count(db_url):
    """debits_must_not_exceed_credits: debits_pending + debits_posted + amount <= credits_posted (a pending credit
    does not help). credits_must_not_exceed_debits: credits_pending + credits_posted + amount <= debits_posted
    (a pending credit counts). A void gives the room back."""
    led = SqlLedger(db_url, T0)
    try:
        debt = "township:320612101/COD"
        led.open(ACCOUNTS + [NewAccount(debt, "COD", "township:320612101",
                                        AccountFlags(credits_must_not_exceed_debits=True))])
        assert led.submit([T("in", MINT, PRJ, 10, pending=True)]).ok
        assert _results(led.submit([T("spend", PRJ, POOL, 1)])) == [R.exceeds_credits], "held credit cannot be spent"
        assert led.submit([T("owe", debt, MINT, 10)]).ok  # debt may take 10 of credits back
        assert led.submit([T("repay-hold", MINT, debt, 10, pending=True)]).ok
        assert _results(led.submit([T("repay", MINT, debt, 1)])) == [R.exceeds_debits], "the pending credit counts"
        assert led.submit([T("void-repay", void_pending_id="repay-hold")]).ok
        assert _results(led.submit([T("repay2", MINT, debt, 10)])) == [R.ok]
        assert led.submit([T("post-in", post_pending_id="in", amount=6)]).ok
        assert _results(led.submit([T("spend2", PRJ, POOL, 7)])) == [R.exceeds_credits]
        assert _results(led.submit([T("spend3", PRJ, POOL, 6)])) == [R.ok]
    finally:
        led.close()


# -- balances as of a time around an expiry --------------------------------------------------------------------

def test_a_balance_as_of_a_time_after_the_next_batch_does_not_hold_an_expired_reservation(db_url):
    """The reservation expired at T0+60s; the ledger, away, took its next batch at T0+10 min (a post, refused as
    expired). The balance as of T0+30 min held the 500 still when the expiry was left to the job an hour later; the
    batch expires it first now, recorded then. (As of a time between the timeout and that batch or the job's next
    run the journal still holds it: balances as of a time follow the journal's recording.)"""
    led = _ledger(db_url)
    try:
        assert led.submit([T("res", POOL, PRJ, 500, code="reserve", pending=True, timeout_seconds=60)]).ok
        led.now = T0 + timedelta(minutes=10)
        assert _results(led.submit([T("late-post", post_pending_id="res")])) == [R.pending_transfer_expired]
        led.now = T0 + timedelta(hours=1)
        assert led.expire() == 0
        with led.db.sessions() as s:
            repo = LedgerRepository(s)
            assert repo.balance_upto(POOL, repo.seq_as_of(T0 + timedelta(seconds=30)))[0] == 500, "still held"
            held_at_30_min = repo.balance_upto(POOL, repo.seq_as_of(T0 + timedelta(minutes=30)))[0]
        assert held_at_30_min == 0, "as of T0+30 min the hold had been expired by the batch at T0+10 min"
        assert led.transfer("res").resolved_at == T0 + timedelta(seconds=60)
    finally:
        led.close()
