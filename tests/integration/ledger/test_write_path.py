"""The write path's shortcuts on a real database (SQLite and PostgreSQL): requests merged by group commit give
what applying them one after the other gives; small batches (pipelined INSERTs) and large ones (binary COPY)
store exactly the engine's records, journal and one outcome event per transfer."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import select

from services.ledger.domain import NewAccount, TransferOutcome, TransferRequest as T, TransferResult as R
from services.ledger.storage.repository import SMALL, LedgerRepository
from services.ledger.storage.tables import journal, messaging
from shared.envelope import decode
from tests.integration.ledger.harness import SqlLedger

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ACCOUNTS = [NewAccount("external:mint/COD", "COD", "external:mint"), NewAccount("county:320612/pool/COD", "COD", "county:320612/pool"),
            NewAccount("enterprise:91320612MA1W2B3C4D/COD", "COD", "enterprise:91320612MA1W2B3C4D")]
MINT, POOL, ENT = (a.id for a in ACCOUNTS)

# requests that lean on each other: a retry, a failure retried, an overdraft, a chain that fails, a pending one
REQUESTS = [
    [T("t1", MINT, POOL, 1_000, code="release", refs=("REL-1",)), T("t2", POOL, ENT, 300, code="sale")],
    [T("t1", MINT, POOL, 1_000, code="release", refs=("REL-1",)), T("big", POOL, ENT, 10_000, code="sale")],
    [T("l1", POOL, ENT, 100, linked=True), T("l2", ENT, POOL, 5_000)],
    [T("big", POOL, ENT, 10_000, code="sale"), T("p1", POOL, ENT, 200, pending=True, timeout_seconds=60,
                                                  metadata={"lot": "L-1"})],
    [T("t1", MINT, POOL, 999, code="release", refs=("REL-1",))],
]


def _events(led: SqlLedger) -> list[tuple[str, str, str | None]]:
    with led.db.sessions() as s:
        rows = s.execute(select(messaging["outbox"].c.envelope).order_by(messaging["outbox"].c.position)).scalars()
        return [(d["type"], d["subject"], d.get("correlationid")) for d in map(json.loads, rows)]


def _records(led: SqlLedger, ids) -> list:
    with led.db.sessions() as s:
        repo = LedgerRepository(s)
        return sorted((t.id, t.amount, t.status, t.refs, dict(t.metadata)) for t in repo.transfers_by_id(sorted(ids)))


def test_merged_requests_give_what_one_after_the_other_gives(db_url, tmp_path):
    other = f"sqlite:///{tmp_path / 'one_by_one.sqlite3'}" if db_url.startswith("sqlite") else db_url
    merged, alone = SqlLedger(db_url, T0), None
    try:
        merged.open(ACCOUNTS)
        head = merged.verify().head_seq
        bounds, flat = [], []
        for k, reqs in enumerate(REQUESTS):
            bounds.append((len(flat), f"corr-{k}"))
            flat += reqs
        out = merged.tx(lambda uow: merged.app.submit(uow.session, flat, correlations=bounds)).outcome
        got = [[TransferOutcome(r.index - start, r.id, r.result) for r in out.results[start:start + len(reqs)]]
               for (start, _), reqs in zip(bounds, REQUESTS)]
        merged_state = (merged.balances(), _records(merged, {r.id for r in flat}), merged.verify())
        merged_events = _events(merged)[len(ACCOUNTS):]
    finally:
        merged.close()
    if other == db_url:  # PostgreSQL: a second database is not at hand; the same one, emptied, is
        from sqlalchemy import create_engine

        eng = create_engine(db_url)
        with eng.begin() as c:
            c.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        eng.dispose()
    alone = SqlLedger(other, T0)
    try:
        alone.open(ACCOUNTS)
        want = [list(alone.submit(reqs).results) for reqs in REQUESTS]
        alone_state = (alone.balances(), _records(alone, {r.id for r in flat}), alone.verify())
        alone_events = _events(alone)[len(ACCOUNTS):]
    finally:
        alone.close()
    assert got == want
    assert [r.result for r in got[1]] == [R.exists, R.exceeds_credits]
    assert [r.result for r in got[2]] == [R.linked_event_failed, R.exceeds_credits]
    assert [r.result for r in got[3]] == [R.exceeds_credits, R.ok], "a failed id stays failed"
    assert [r.result for r in got[4]] == [R.exists_with_different_amount]
    assert merged_state[:2] == alone_state[:2], "same balances and records"
    assert merged_state[2].ok and merged_state[2].head_seq - head == alone_state[2].head_seq - head
    assert [e[:2] for e in merged_events] == [e[:2] for e in alone_events], "the same events, in the same order"
    # one event per request that did something new (a failed id's retry is silent, as after a commit; so is a
    # retry of a posted id with another amount: t1 stands), each carrying its own request's correlation id
    assert [(t.split(".")[1], s, c) for t, s, c in merged_events] == [
        ("TransferPosted", "t1", "corr-0"), ("TransferPosted", "t2", "corr-0"), ("TransferRejected", "big", "corr-1"),
        ("TransferRejected", "l1", "corr-2"), ("TransferRejected", "l2", "corr-2"), ("TransferPending", "p1", "corr-3")]


def test_small_and_large_batches_store_the_engines_records_journal_and_events(db_url):
    led = SqlLedger(db_url, T0)
    try:
        led.open(ACCOUNTS)
        assert led.submit([T("fund", MINT, POOL, 10**9, code="fund")]).ok
        for n in (SMALL // 2, SMALL * 3):
            batch = [T(f"b{n}-{i}", POOL, ENT, 1 + i, code=f"c{i % 3}", refs=(f"r{i}",) if i % 4 == 0 else (),
                       metadata={"k": f"v\n{i}", "县": "值"} if i % 5 == 0 else {}, pending=i % 7 == 0,
                       timeout_seconds=3600 if i % 7 == 0 else 0) for i in range(n)]
            batch += [T(f"b{n}-over", ENT, MINT, 10**12)]  # rejected: a failed id and a TransferRejected
            out = led.tx(lambda uow: led.app.submit(uow.session, batch)).outcome
            assert [r.result for r in out.results] == [R.ok] * n + [R.exceeds_credits]
            stored = {t.id: t for t in _stored(led, [r.id for r in batch])}
            assert stored == {t.id: t for t in out.transfers}, "the rows read back are the engine's records"
            failed = led.transfer(f"b{n}-over")
            assert failed.result is R.exceeds_credits
            with led.db.sessions() as s:
                payloads = dict(s.execute(select(journal.c.seq, journal.c.payload).where(
                    journal.c.seq > out.journal[0].seq - 1)).all())
            assert {e.seq: json.loads(payloads[e.seq]) for e in out.journal} == {e.seq: e.payload for e in out.journal}
            events = [decode(e) for e in _envelopes(led, [r.id for r in batch])]
            assert sorted(env.subject for env, _ in events) == sorted(r.id for r in batch)
            kinds = {env.subject: env.event_name for env, _ in events}
            assert kinds[f"b{n}-0"] == "TransferPending" and kinds[f"b{n}-1"] == "TransferPosted"
            assert kinds[f"b{n}-over"] == "TransferRejected"
        assert led.verify().ok
    finally:
        led.close()


def _stored(led: SqlLedger, ids: list[str]) -> list:
    with led.db.sessions() as s:
        return LedgerRepository(s).transfers_by_id(sorted(ids))


def _envelopes(led: SqlLedger, keys: list[str]) -> list[str]:
    o = messaging["outbox"]
    with led.db.sessions() as s:
        return list(s.execute(select(o.c.envelope).where(o.c.key.in_(keys))).scalars())


def test_a_requests_correlation_id_reaches_its_events_and_its_answer(db_url, kafka_bootstrap):
    """Through the HTTP API (and its group commit): the caller's x-correlation-id is echoed and carried by the
    outcome event of each of its transfers."""
    from tests.support.services import ADMIN, running_service

    with running_service("ledger", db_url, kafka_bootstrap, background=False) as (rt, client):
        r = client.post("/v1/accounts", headers=ADMIN, json={"accounts": [
            {"account_id": a.id, "asset": a.asset, "address": a.address} for a in ACCOUNTS]})
        assert r.json()["ok"]
        for cid, tid in (("req-a", "c1"), ("req-b", "c2")):
            r = client.post("/v1/transfers", headers={**ADMIN, "x-correlation-id": cid}, json={"transfers": [
                {"transfer_id": tid, "debit_account": MINT, "credit_account": POOL, "asset": "COD", "amount": "1"}]})
            assert r.json()["ok"] and r.headers["x-correlation-id"] == cid
        o = messaging["outbox"]
        with rt.db.sessions() as s:
            docs = [json.loads(e) for e in s.execute(select(o.c.envelope).where(o.c.key.in_(["c1", "c2"]))).scalars()]
        assert sorted((d["subject"], d["correlationid"]) for d in docs) == [("c1", "req-a"), ("c2", "req-b")]
