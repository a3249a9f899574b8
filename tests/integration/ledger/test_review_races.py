"""Review: read-modify-write races between concurrent ledger writers on PostgreSQL, over HTTP.

Every race is sent to two ledger replicas on one database (deploy/k8s runs two): within one process small
requests are merged by group commit into one engine run, so only a second process makes two transactions
really race for the journal head and the account rows. Where a race has more than two calls, both replicas
get some, so the in-process merge is exercised too. Each race is repeated for several rounds; after each test
the asset sums to zero, no constrained account is below zero (pending counted) and the journal verifies.

Each test guards a promise that held when this review ran (the ledger serializes every writer on its journal
head row, then locks accounts in sorted order; second phases, expiry and account opening all read their state
after taking the head)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.integration.ledger.harness import ENT, POOL, REG, STANDARD_ACCOUNTS, cod_transfer
from tests.support.concurrency import together
from tests.support.services import ADMIN, replicas_of

ROUNDS = 10
T0 = datetime(2031, 3, 1, tzinfo=timezone.utc)  # the controllable clocks' origin (expiry tests)
# A direct expiry run beats an HTTP post to the head every time: started a little later in some rounds, it
# loses some races too, so both orders are exercised.
EXPIRY_DELAYS = (0, 0.003, 0.006, 0.01, 0.02)


def expiry_after(expiry, delay: float):
    """The expiry job's run, ``delay`` seconds after the calls are released."""
    def run() -> int:
        time.sleep(delay)
        return expiry.run_once()
    return run


class Clock:
    """A replica's clock the test sets (LedgerApp.clock)."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def replicas(pg_url, kafka_bootstrap):
    """Two ledger services (runtime, client) on one fresh database, with the standard COD accounts open and the pool
    funded with 1,000."""
    with replicas_of("ledger", pg_url, kafka_bootstrap) as (a, b):
        r = a[1].post("/v1/accounts", headers=ADMIN, json={"accounts": [
            {"account_id": account, "asset": "COD", "address": address} for account, address in STANDARD_ACCOUNTS]})
        assert r.json()["ok"], r.text
        assert send(a[1], cod_transfer("fund", REG, POOL, "1000")) == ["ok"]
        yield a, b
        check_books(a)


def send(client, *transfers) -> list[str] | str:
    """The per-item results of one POST /v1/transfers, or the error text of a non-200."""
    r = client.post("/v1/transfers", headers=ADMIN, json={"transfers": list(transfers)})
    return [x["result"] for x in r.json()["results"]] if r.status_code == 200 else f"{r.status_code} {r.text}"


def balance(client, account: str) -> dict[str, Decimal]:
    b = client.get(f"/v1/accounts/{account}", headers=ADMIN).json()
    return {k: Decimal(b[k]) for k in ("debits_pending", "debits_posted", "credits_pending", "credits_posted",
                                       "available")}


def transfer(client, tid: str) -> dict:
    return client.get(f"/v1/transfers/{tid}", headers=ADMIN).json()


def journal_count(runtime, kind: str, transfer_id: str | None = None, pending_id: str | None = None) -> int:
    sql = "SELECT count(*) FROM journal WHERE kind = :k"
    if transfer_id is not None:
        sql += " AND transfer_id = :t"
    if pending_id is not None:
        sql += " AND payload::jsonb ->> 'pending_id' = :p"
    with runtime.db.engine.connect() as c:
        return c.execute(text(sql), {"k": kind, "t": transfer_id, "p": pending_id}).scalar_one()


def check_books(replica) -> None:
    """The invariants every race must leave: zero-sum asset, nothing constrained overdrawn, a verified chain."""
    runtime, client = replica
    with runtime.db.engine.connect() as c:
        sums = c.execute(text("SELECT sum(credits_posted - debits_posted), sum(credits_pending - debits_pending) "
                              "FROM accounts")).one()
        overdrawn = c.execute(text(
            "SELECT id FROM accounts WHERE debits_must_not_exceed_credits "
            "AND credits_posted - debits_posted - debits_pending < 0")).scalars().all()
        negative = c.execute(text(
            "SELECT id FROM accounts WHERE debits_pending < 0 OR credits_pending < 0")).scalars().all()
    assert tuple(sums) == (0, 0), sums
    assert overdrawn == [] and negative == [], (overdrawn, negative)
    v = client.get("/v1/journal/verify", headers=ADMIN).json()
    assert v["ok"] and v["checked"] == v["head_seq"], v


def hold(client, tid: str, amount: str, timeout: int = 3600) -> None:
    assert send(client, cod_transfer(tid, POOL, ENT, amount, pending=True, timeout_seconds=timeout)) == ["ok"]


def second_phase(tid: str, pending_id: str, amount: str = "0", *, post: bool = True) -> dict:
    key = "post_pending_id" if post else "void_pending_id"
    return {"transfer_id": tid, "asset": "COD", "amount": amount, key: pending_id}


# -- 1. post and void of one hold at once ------------------------------------------------------------------------

def test_post_and_void_of_one_hold_at_once_exactly_one_resolves_it(replicas):
    """Posts and voids of one hold (other ids) at once, on both replicas: one resolves it, the others are told it
    was already posted / voided, and the balances show only the winner's effect."""
    (_, a), (_, b) = replicas
    posted = Decimal(0)
    for n in range(ROUNDS):
        hold(a, f"h1-{n}", "4")
        # (transfer id, replica, post?): a post and a void on each replica
        sides = [(f"h1-{n}-post-a", a, True), (f"h1-{n}-void-b", b, False), (f"h1-{n}-post-b", b, True),
                 (f"h1-{n}-void-a", a, False)]
        answers = together([lambda tid=tid, c=c, p=p: send(c, second_phase(tid, f"h1-{n}", post=p))
                            for tid, c, p in sides])
        ok = [i for i, r in enumerate(answers) if r == ["ok"]]
        assert len(ok) == 1, answers
        winner, _, winner_posts = sides[ok[0]]
        losers = {r[0] for i, r in enumerate(answers) if i != ok[0]}
        told = "pending_transfer_already_posted" if winner_posts else "pending_transfer_already_voided"
        assert losers <= {told}, answers
        h = transfer(a, f"h1-{n}")
        assert (h["status"], h["resolved_by"]) == ("posted_pending" if winner_posts else "voided", winner), h
        posted += 4 if winner_posts else 0
        pool, ent = balance(a, POOL), balance(a, ENT)
        assert (pool["debits_pending"], pool["debits_posted"]) == (0, posted), pool
        assert (ent["credits_pending"], ent["credits_posted"]) == (0, posted), ent


# -- 2. partial posts of one hold at once --------------------------------------------------------------------------

def test_partial_posts_of_one_hold_at_once_post_it_once_and_never_more_than_held(replicas):
    """Posts of 6, 7 and the full amount of a hold of 10 at once: TigerBeetle posts a hold once (the rest is
    released), so exactly one is ok, the hold's posted_amount is that one's, and no more than 10 ever moves."""
    (runtime, a), (_, b) = replicas
    amounts = ["6", "7", "0", "3"]
    posted = Decimal(0)
    for n in range(ROUNDS):
        hold(a, f"h2-{n}", "10")
        clients = [a, b, b, a]
        answers = together([lambda i=i: send(clients[i], second_phase(f"h2-{n}-p{i}", f"h2-{n}", amounts[i]))
                            for i in range(len(amounts))])
        ok = [i for i, r in enumerate(answers) if r == ["ok"]]
        assert len(ok) == 1, answers
        assert all(r == ["pending_transfer_already_posted"] for i, r in enumerate(answers) if i != ok[0]), answers
        want = Decimal(amounts[ok[0]]) or Decimal(10)
        h = transfer(a, f"h2-{n}")
        assert (h["status"], Decimal(h["posted_amount"])) == ("posted_pending", want), h
        assert journal_count(runtime, "pending_posted", pending_id=f"h2-{n}") == 1
        posted += want
        pool, ent = balance(a, POOL), balance(a, ENT)
        assert (pool["debits_pending"], pool["debits_posted"]) == (0, posted), pool
        assert ent["credits_posted"] == posted, ent


# -- 3. a post racing the ledger's expiry -------------------------------------------------------------------------

def test_a_post_racing_the_expiry_job_has_one_outcome(replicas):
    """Replica A posts a hold a millisecond before its timeout while replica B's expiry job (twice) runs a
    millisecond after it: whoever takes the journal head first decides, the other sees it; the hold is released
    once, posted or expired, never both."""
    (runtime, a), (_, b) = replicas
    clock_a, clock_b = Clock(T0), Clock(T0)
    a.app.state.ledger.clock, b.app.state.ledger.clock = clock_a, clock_b
    expiry_b = b.app.state.expiry
    posted = Decimal(0)
    for n in range(ROUNDS):
        start = T0 + timedelta(hours=n)
        clock_a.now = clock_b.now = start
        hold(a, f"h3-{n}", "5", timeout=60)
        deadline = start + timedelta(seconds=60)
        clock_a.now, clock_b.now = deadline - timedelta(milliseconds=1), deadline + timedelta(milliseconds=1)
        delay = EXPIRY_DELAYS[n % len(EXPIRY_DELAYS)]
        answers = together([lambda: send(a, second_phase(f"h3-{n}-post", f"h3-{n}")),
                            expiry_after(expiry_b, delay), expiry_after(expiry_b, delay)])
        assert not any(isinstance(x, BaseException) for x in answers), answers
        h = transfer(a, f"h3-{n}")
        assert (answers[0], h["status"]) in [(["ok"], "posted_pending"), (["pending_transfer_expired"], "expired")], \
            (answers, h)
        assert sorted(answers[1:]) == ([0, 0] if answers[0] == ["ok"] else [0, 1]), answers
        expired = journal_count(runtime, "pending_expired", transfer_id=f"h3-{n}")
        resolved = journal_count(runtime, "pending_posted", pending_id=f"h3-{n}")
        assert expired + resolved == 1, (expired, resolved)
        posted += 5 if answers[0] == ["ok"] else 0
        pool = balance(a, POOL)
        assert (pool["debits_pending"], pool["debits_posted"]) == (0, posted), pool


def test_a_hold_expired_by_a_batch_and_by_the_expiry_job_at_once_is_released_once(replicas):
    """Both replicas past a hold's timeout: A's post and B's void each expire due holds in their own transaction
    before being judged, while B's expiry job expires it too: one pending_expired entry, released once."""
    (runtime, a), (_, b) = replicas
    clock_a, clock_b = Clock(T0), Clock(T0)
    a.app.state.ledger.clock, b.app.state.ledger.clock = clock_a, clock_b
    expiry_b = b.app.state.expiry
    for n in range(ROUNDS):
        start = T0 + timedelta(hours=n)
        clock_a.now = clock_b.now = start
        hold(a, f"h4-{n}", "5", timeout=60)
        clock_a.now = clock_b.now = start + timedelta(seconds=61)
        answers = together([lambda: send(a, second_phase(f"h4-{n}-post", f"h4-{n}")),
                            lambda: send(b, second_phase(f"h4-{n}-void", f"h4-{n}", post=False)),
                            expiry_after(expiry_b, EXPIRY_DELAYS[n % len(EXPIRY_DELAYS)])])
        assert answers[:2] == [["pending_transfer_expired"]] * 2, answers
        assert answers[2] in (0, 1), answers
        assert transfer(a, f"h4-{n}")["status"] == "expired"
        assert journal_count(runtime, "pending_expired", transfer_id=f"h4-{n}") == 1
        pool = balance(a, POOL)
        assert (pool["debits_pending"], pool["debits_posted"]) == (0, 0), pool


# -- 4. linked chains ------------------------------------------------------------------------------------------------

def test_one_linked_chain_sent_four_times_at_once_applies_once(replicas):
    """A chain sent four times at once over both replicas: one copy is all ok, the others all exists, and its
    effect is booked once."""
    (runtime, a), (_, b) = replicas
    for n in range(ROUNDS):
        chain = [cod_transfer(f"c1-{n}-in", REG, POOL, "5", linked=True), cod_transfer(f"c1-{n}-out", POOL, ENT, "5")]
        answers = together([lambda c=c: send(c, *chain) for c in (a, b, a, b)])
        assert sorted(answers) == [["exists", "exists"]] * 3 + [["ok", "ok"]], answers
        assert journal_count(runtime, "transfer_posted", transfer_id=f"c1-{n}-out") == 1
        assert balance(a, ENT)["credits_posted"] == 5 * (n + 1)


def test_two_chains_sharing_a_transfer_id_at_once_one_applies_whole_the_other_not_at_all(replicas):
    """Chains X = [x, s] and Y = [y, s'] at once, where s and s' share an id but differ in code: one chain is
    booked whole; the other fails whole (s' exists_with_different_code, y linked_event_failed, not booked)."""
    (_, a), (_, b) = replicas
    credited = Decimal(0)
    for n in range(ROUNDS):
        shared = f"c2-{n}-s"
        x = [cod_transfer(f"c2-{n}-x", POOL, ENT, "1", linked=True), cod_transfer(shared, POOL, ENT, "2", code="x")]
        y = [cod_transfer(f"c2-{n}-y", POOL, ENT, "3", linked=True), cod_transfer(shared, POOL, ENT, "2", code="y")]
        answers = together([lambda: send(a, *x), lambda: send(b, *y)])
        assert sorted(answers) == [["linked_event_failed", "exists_with_different_code"], ["ok", "ok"]], answers
        won_x = answers[0] == ["ok", "ok"]
        loser = f"c2-{n}-y" if won_x else f"c2-{n}-x"
        assert a.get(f"/v1/transfers/{loser}", headers=ADMIN).status_code == 404, "the failed chain booked nothing"
        assert transfer(a, shared)["code"] == ("x" if won_x else "y")
        credited += 3 if won_x else 5
        assert balance(a, ENT)["credits_posted"] == credited


# -- 5. draining one account -----------------------------------------------------------------------------------------

def test_many_writers_draining_one_account_over_both_replicas_never_overdraw_it(replicas):
    """An account holding 10 and 16 debits of 1 (half of them holds) at once over both replicas: exactly 10 are
    ok, the rest exceeds_credits, and nothing is left available. (The engine-level stress test drives the
    application layer of one process; this goes through HTTP, group commit and two processes.)"""
    (_, a), (_, b) = replicas
    for n in range(ROUNDS):
        source = ENT  # drained each round, refilled here
        assert send(a, cod_transfer(f"d-{n}-fill", POOL, source, "10")) == ["ok"]
        holds = {i for i in range(16) if i % 4 < 2}  # half of them holds, a hold and a posted one on each replica
        debits = [cod_transfer(f"d-{n}-{i}", source, POOL, "1", pending=i in holds, timeout_seconds=3600 * (i in holds))
                  for i in range(16)]
        answers = together([lambda i=i: send((a, b)[i % 2], debits[i]) for i in range(16)])
        assert sorted(r[0] for r in answers) == ["exceeds_credits"] * 6 + ["ok"] * 10, answers
        assert balance(a, source)["available"] == 0
        # release the holds for the next round: voids give back what they held
        held = [f"d-{n}-{i}" for i, r in enumerate(answers) if r == ["ok"] and i in holds]
        for tid in held:
            assert send(a, second_phase(f"{tid}-void", tid, post=False)) == ["ok"]
        for k in range(len(held)):  # what the voids gave back goes to the pool, so the account is empty again
            assert send(a, cod_transfer(f"d-{n}-back-{k}", source, POOL, "1")) == ["ok"]
        assert balance(a, source)["available"] == 0


# -- 6. opening an account beside a transfer on it ------------------------------------------------------------------

def test_an_account_opened_beside_a_transfer_to_it_is_there_first_or_the_transfer_fails_for_good(replicas):
    """Opening an account and a transfer to it at once: the transfer is either booked after the account_created
    entry, or refused credit_account_not_found for good (a retry gets the same), never booked without it."""
    (runtime, a), (_, b) = replicas
    booked = 0
    for n in range(ROUNDS):
        acct = f"township:320612{100 + n:03d}/COD"
        answers = together([
            lambda: a.post("/v1/accounts", headers=ADMIN, json={"accounts": [
                {"account_id": acct, "asset": "COD", "address": f"township:320612{100 + n:03d}"}]}).json()["results"],
            lambda: send(b, cod_transfer(f"o-{n}", POOL, acct, "1"))])
        assert [r["result"] for r in answers[0]] == ["ok"], answers
        assert answers[1] in (["ok"], ["credit_account_not_found"]), answers
        again = send(a, cod_transfer(f"o-{n}", POOL, acct, "1"))
        if answers[1] == ["ok"]:
            booked += 1
            assert again == ["exists"]
            assert balance(a, acct)["credits_posted"] == 1
            with runtime.db.engine.connect() as c:
                created, moved = c.execute(text(
                    "SELECT (SELECT created_seq FROM accounts WHERE id = :a), "
                    "(SELECT seq FROM journal WHERE transfer_id = :t)"), {"a": acct, "t": f"o-{n}"}).one()
            assert created < moved, (created, moved)
        else:
            assert again == ["credit_account_not_found"], "a failed id stays failed"
            assert balance(a, acct)["credits_posted"] == 0


def test_reopening_an_account_as_closed_while_transfers_hit_it_neither_closes_it_nor_loses_them(replicas):
    """The ledger has no way to close an open account (its flags are set when it is opened): an open request
    naming it closed, racing transfers on it, is exists_with_different_flags and the transfers are booked."""
    (_, a), (_, b) = replicas
    for n in range(ROUNDS):
        answers = together([
            lambda: b.post("/v1/accounts", headers=ADMIN, json={"accounts": [
                {"account_id": ENT, "asset": "COD", "address": STANDARD_ACCOUNTS[2][1],
                 "flags": ["debits_must_not_exceed_credits", "closed"]}]}).json()["results"],
            lambda: send(a, cod_transfer(f"cl-{n}-a", POOL, ENT, "1")),
            lambda: send(b, cod_transfer(f"cl-{n}-b", POOL, ENT, "1"))])
        assert [r["result"] for r in answers[0]] == ["exists_with_different_flags"], answers
        assert answers[1:] == [["ok"], ["ok"]], answers
        got = a.get(f"/v1/accounts/{ENT}", headers=ADMIN).json()
        assert "closed" not in got["flags"] and Decimal(got["credits_posted"]) == 2 * (n + 1), got
