"""Review of the outbox relay (shared/outbox.py): ways it could lose a committed event, publish one that rolled
back, or put one key's events out of commit order. Real PostgreSQL and real Kafka throughout.

Each test states what the outbox promises: every committed row reaches Kafka (at least once), no row of a rolled
back transaction or savepoint does, and per key the first copies arrive in the order the rows were committed."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.outbox import OutboxRelay, unpublished_count
from tests.support.machinery import WidgetAdded, envelope_of, make_db, messaging, read_all
from tests.support.pg import throwaway_server

ROOT = Path(__file__).resolve().parents[2]


# -- helpers ----------------------------------------------------------------------------------------------------

class Ledger:
    """What the test committed and rolled back, per key in commit order (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self._orders: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._n = 0
        self.rolled_back: set[str] = set()

    def commit(self, pairs, order: int | None = None):
        """``order``: the key's commit order when the caller knows it (a counter read under the key's lock); else
        the order of these calls, right for one writer per key only: two writers of a key may record their commits
        in the other order than they made them (the lock is released by the commit, before this call)."""
        with self.lock:
            for key, eid in pairs:
                self._n += 1
                self._orders[key].append((self._n if order is None else order, eid))

    @property
    def committed(self) -> dict[str, list[str]]:
        """key -> event ids in commit order."""
        with self.lock:
            return {key: [eid for _, eid in sorted(pairs)] for key, pairs in self._orders.items()}

    def rollback(self, ids):
        with self.lock:
            self.rolled_back.update(ids)

    @property
    def total(self) -> int:
        return sum(map(len, self.committed.values()))


def _add(session, outbox, topic, key, seq) -> str:
    return outbox.add(session, WidgetAdded(widget_id=key, seq=seq), subject=key, topic=topic).id


def _write(db, outbox, topic, key, seq, ledger: Ledger) -> None:
    with db.sessions() as s, s.begin():
        eid = _add(s, outbox, topic, key, seq)
    ledger.commit([(key, eid)])


def _check(bootstrap, topic, ledger: Ledger, *, exactly_once=False, timeout=60):
    """Every committed event published, none rolled back, per key the first copies in commit order."""
    want = {e for ids in ledger.committed.values() for e in ids}
    records = read_all(bootstrap, topic, expect=len(want), timeout=timeout,
                       until=lambda out: want <= {envelope_of(r)["id"] for r in out})
    seen_order: dict[str, list[str]] = defaultdict(list)
    all_ids = []
    for r in records:
        env = envelope_of(r)
        all_ids.append(env["id"])
        if env["id"] not in seen_order[env["subject"]]:
            seen_order[env["subject"]].append(env["id"])
    published = set(all_ids)
    missing = want - published
    assert not missing, f"{len(missing)} committed events never published (of {len(want)})"
    leaked = published & ledger.rolled_back
    assert not leaked, f"{len(leaked)} events of rolled-back transactions/savepoints published"
    assert published <= want, f"unknown events published: {len(published - want)}"
    for key, ids in ledger.committed.items():
        assert seen_order[key] == ids, f"key {key}: published out of commit order"
    if exactly_once:
        assert len(all_ids) == len(published), f"{len(all_ids) - len(published)} duplicates"
    return records


# -- 1. a transaction left idle for a long time while many commit after it -------------------------------------

def test_idle_in_transaction_writer_is_published_after_many_epochs(pg_url, kafka_bootstrap, unique_topic):
    """A transaction writes early (low positions, an old id), sits idle in transaction while hundreds of others
    commit and are published over many epochs and batches, then writes more (one part in a savepoint it rolls
    back) and commits. Its committed rows must all arrive, after everything committed before it; the rolled-back
    savepoint's never."""
    db, outbox = make_db(pg_url)
    ledger = Ledger()
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=7, idle_seconds=0.01)
    relay.start()
    try:
        slow = db.sessions()
        slow.begin()
        early = [_add(slow, outbox, unique_topic, "slow", i) for i in range(3)]
        for i in range(300):
            _write(db, outbox, unique_topic, f"fast-{i % 10}", i, ledger)
            if i % 50 == 0:
                time.sleep(0.2)  # several epochs go by
        sp = slow.begin_nested()
        gone = [_add(slow, outbox, unique_topic, "slow", 100 + i) for i in range(2)]
        sp.rollback()
        late = [_add(slow, outbox, unique_topic, "slow", 3 + i) for i in range(2)]
        slow.commit()
        slow.close()
        ledger.commit([("slow", e) for e in early + late])
        ledger.rollback(gone)
        for i in range(20):
            _write(db, outbox, unique_topic, f"fast-{i % 10}", 1000 + i, ledger)
        deadline = time.monotonic() + 30
        while relay.backlog() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        relay.stop()
    assert relay.backlog() == 0
    _check(kafka_bootstrap, unique_topic, ledger, exactly_once=True)


# -- 2. concurrent writers under a key lock, ids taken early, rollbacks, a relay running ----------------------

def _locked_writer(db, outbox, topic, keys, n, ledger: Ledger, seed: int, pg: bool):
    rnd = random.Random(seed)
    for _ in range(n):
        key = rnd.choice(keys)
        with db.sessions() as s:
            s.begin()
            if pg and rnd.random() < 0.5:
                s.execute(text("SELECT pg_current_xact_id()"))  # the id taken long before the key's lock
                time.sleep(rnd.random() * 0.01)
            lock = " FOR UPDATE" if pg else ""
            count = s.execute(text(f"SELECT count FROM widgets WHERE id = :k{lock}"), {"k": key}).scalar_one()
            ids = []
            if pg and rnd.random() < 0.3:
                sp = s.begin_nested()
                gone = _add(s, outbox, topic, key, -1)
                sp.rollback()
                ledger.rollback([gone])
            ids.append(_add(s, outbox, topic, key, count))
            s.execute(text("UPDATE widgets SET count = :c WHERE id = :k"), {"c": count + 1, "k": key})
            time.sleep(rnd.random() * 0.005)
            if rnd.random() < 0.15:
                s.rollback()
                ledger.rollback(ids)
            else:
                s.commit()
                ledger.commit([(key, e) for e in ids], order=count)  # read under the key's lock


@pytest.mark.parametrize("relays", [1, 2])
def test_concurrent_locked_writers_with_early_ids_and_rollbacks(db_url, kafka_bootstrap, unique_topic, relays):
    """Eight writers on six keys, each event written under its key's row lock, half of the transactions holding
    an id taken before they waited for the lock, some savepoints and some whole transactions rolled back; one or
    two relays (replicas: only one active at a time) publishing all along in small batches. Nothing lost, nothing
    rolled back published, per key commit order, and with the advisory lock nothing published twice."""
    db, outbox = make_db(db_url)
    pg = db.is_postgres
    keys = [f"k{i}" for i in range(6)]
    with db.sessions() as s, s.begin():
        for k in keys:
            s.execute(text("INSERT INTO widgets (id, count) VALUES (:k, 0)"), {"k": k})
    ledger = Ledger()
    running = [OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=5, idle_seconds=0.005)
               for _ in range(relays)]
    for r in running:
        r.start()
    try:
        threads = [threading.Thread(target=_locked_writer,
                                    args=(db, outbox, unique_topic, keys, 60 if pg else 40, ledger, seed, pg))
                   for seed in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        deadline = time.monotonic() + 30
        while running[0].backlog() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for r in running:
            r.stop()
    assert running[0].backlog() == 0
    _check(kafka_bootstrap, unique_topic, ledger, exactly_once=pg)


# -- 3. many subtransactions ------------------------------------------------------------------------------------

def test_many_savepoints_some_rolled_back_while_the_relay_runs(pg_url, kafka_bootstrap, unique_topic):
    """200 savepoints in one transaction (far past the 64 subtransaction ids a backend caches: its snapshots
    overflow), nested ones too, every third rolled back; another transaction with many subtransactions stays
    open meanwhile and commits last. Exactly the rows of released savepoints are published, in order."""
    db, outbox = make_db(pg_url)
    ledger = Ledger()
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=9, idle_seconds=0.01)
    relay.start()
    try:
        other = db.sessions()
        other.begin()
        other_ids = []
        for i in range(100):
            sp = other.begin_nested()
            other_ids.append(_add(other, outbox, unique_topic, "other", i))
            sp.commit()
        s = db.sessions()
        s.begin()
        kept = []
        for i in range(200):
            sp = s.begin_nested()
            eid = _add(s, outbox, unique_topic, "sp", i)
            if i % 7 == 0:
                inner = s.begin_nested()
                gone = _add(s, outbox, unique_topic, "sp", 10_000 + i)
                inner.rollback()
                ledger.rollback([gone])
            if i % 3 == 0:
                sp.rollback()
                ledger.rollback([eid])
            else:
                sp.commit()
                kept.append(eid)
            if i % 40 == 0:
                _write(db, outbox, unique_topic, "between", i, ledger)
        s.commit()
        s.close()
        ledger.commit([("sp", e) for e in kept])
        time.sleep(0.5)
        other.commit()
        other.close()
        ledger.commit([("other", e) for e in other_ids])
        deadline = time.monotonic() + 30
        while relay.backlog() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        relay.stop()
    assert relay.backlog() == 0
    _check(kafka_bootstrap, unique_topic, ledger, exactly_once=True)


# -- 4. a relay process killed mid-batch, then another started ----------------------------------------------------

_CHILD = """
import sys
from sqlalchemy import MetaData
from shared.db import Database
from shared.messaging_tables import add_messaging_tables
from shared.outbox import OutboxRelay
db = Database(sys.argv[1], "machinery")
relay = OutboxRelay(db, add_messaging_tables(MetaData())["outbox"], sys.argv[2], batch_size=int(sys.argv[3]))
print("ready", flush=True)
while True:
    relay.publish_batch()
"""


def test_a_relay_killed_mid_batch_skips_nothing_after_restart(db_url, kafka_bootstrap, unique_topic):
    """A relay process SIGKILLed while publishing a backlog (between Kafka's acknowledgement and its place's
    commit, or mid-send), while writers keep committing; a relay started afterwards sends every row not yet
    recorded. Duplicates are allowed; nothing committed is missing, and per key the first copies stay in order."""
    db, outbox = make_db(db_url)
    ledger = Ledger()
    with db.sessions() as s, s.begin():  # a backlog, in one transaction
        ledger.commit([(f"w{i % 5}", _add(s, outbox, unique_topic, f"w{i % 5}", i)) for i in range(6000)])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for round_ in range(3):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, db_url, kafka_bootstrap, "1000"], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert child.stdout.readline().strip() == b"ready"
        with db.sessions() as s:
            start = unpublished_count(s)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with db.sessions() as s:
                relay_backlog = unpublished_count(s)
            if relay_backlog < start or relay_backlog == 0:
                break
            time.sleep(0.01)
        time.sleep(random.random() * 0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        for i in range(100):  # commits go on meanwhile
            _write(db, outbox, unique_topic, f"w{i % 5}", 10_000 * (round_ + 1) + i, ledger)
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=113)
    relay.drain(timeout=60)
    relay.stop()
    _check(kafka_bootstrap, unique_topic, ledger)


# -- 5. prepared transactions, a crash and restart of PostgreSQL (a throw-away server) --------------------------

@pytest.fixture
def own_server():
    """A throw-away PostgreSQL cluster with prepared transactions enabled, that this test may crash and restart."""
    with throwaway_server("cp_review_relay_pg_", "max_prepared_transactions=10") as server:
        yield f"{server.url}/relaytest", server.start, server.crash


def _raw(url):
    import psycopg

    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                           autocommit=True)


def _prepare(url, outbox, topic, key, seq, gid) -> str:
    """A transaction that writes one event and is PREPAREd (two-phase commit), left for later."""
    from shared.envelope import new_envelope

    env = new_envelope(WidgetAdded(widget_id=key, seq=seq), subject=key, source=outbox.source)
    with _raw(url) as c:
        c.execute("BEGIN")
        c.execute("INSERT INTO outbox (event_id, event_type, topic, key, envelope, created_at) "
                  "VALUES (%s, %s, %s, %s, %s, now())", (env.id, env.type, topic, key, env.to_json().decode()))
        c.execute(f"PREPARE TRANSACTION '{gid}'")
    return env.id


def _publish_until_idle(relay, seconds=3.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if relay.publish_batch() == 0:
            time.sleep(0.05)


def test_prepared_transactions_and_a_crash_restart_lose_nothing(own_server, kafka_bootstrap, unique_topic):
    """Two-phase transactions hold back only their own rows; across a crash (immediate stop) and restart of
    PostgreSQL the relay's stored place still covers exactly what it published: the prepared transaction that is
    committed after the restart is published, the one rolled back is not, nor the transaction in flight at the
    crash; everything committed before and after arrives in order."""
    url, start, crash = own_server
    db, outbox = make_db(url)
    ledger = Ledger()
    for i in range(3):
        _write(db, outbox, unique_topic, "a", i, ledger)
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=2)
    relay.drain()
    p_commit = _prepare(url, outbox, unique_topic, "p", 0, "p-commit")
    p_abort = _prepare(url, outbox, unique_topic, "r", 0, "p-abort")
    for i in range(3, 6):
        _write(db, outbox, unique_topic, "a", i, ledger)
    inflight = db.sessions()
    inflight.begin()
    lost = _add(inflight, outbox, unique_topic, "crash", 0)
    inflight.flush()
    _publish_until_idle(relay, 2)
    with db.sessions() as s:
        assert unpublished_count(s) == 0, "the prepared and in-flight rows are invisible; nothing else waits"
    relay.stop()
    crash()
    try:
        inflight.close()
    except Exception:  # noqa: BLE001 - its server went away
        pass
    db.dispose()
    start()
    db, outbox = make_db(url)
    _write(db, outbox, unique_topic, "a", 6, ledger)
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=2)
    _publish_until_idle(relay, 2)
    with _raw(url) as c:
        c.execute("COMMIT PREPARED 'p-commit'")
        c.execute("ROLLBACK PREPARED 'p-abort'")
    ledger.commit([("p", p_commit)])
    ledger.rollback([p_abort, lost])
    _write(db, outbox, unique_topic, "a", 7, ledger)
    _publish_until_idle(relay, 3)
    backlog = relay.backlog()
    relay.stop()
    db.dispose()
    assert backlog == 0
    _check(kafka_bootstrap, unique_topic, ledger, exactly_once=True)
