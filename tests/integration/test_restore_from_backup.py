"""A service's PostgreSQL database restored from a backup (pg_dump) taken minutes earlier, on real Kafka.

The ledger is the one whose answers everybody acts on: its consumer positions and its outbox live in its own
database, so a restored ledger re-reads the commands it had applied after the backup and announces their
outcomes again (with fresh event ids: downstream must key on the transfer id). These tests show

- what converges: the same books, every transfer once, and the same outcome re-announced once each;
- what does not: a post of a pending transfer whose timeout passed between the first application and the
  restore is answered TransferRejected(pending_transfer_expired) the second time, after TransferPosted the
  first time (a contradicting answer that quota's reconciliation has to catch);
- two things a restore used to break: a partition that had no stored position at backup time resumed from the
  group's Kafka offset and skipped what came after the backup (now read from its start: shared/consumer.py
  _ResumeFromDatabase), and an outbox restored with pg_restore into a NEW server (whose transaction ids start
  again from a few hundred) was never published by the relay, which follows transaction ids (now rebased at the
  service's start-up: shared.outbox.rebase_after_restore).

Private topics, consumer groups and databases: nothing here touches what other tests use. The new-server test
starts a throw-away PostgreSQL cluster of its own (initdb, a private port) and stops only that one.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from services.ledger.handlers import LedgerApp, build_bus
from services.ledger.main import MIGRATIONS
from services.ledger.storage.tables import messaging
from shared import migrations
from shared.consumer import IdempotentConsumer
from shared.contracts.ledger import AccountOpened, AccountSpec, TransfersRequested, TransferSpec
from shared.db import Database
from shared.envelope import new_envelope
from shared.kafka_admin import ensure_topics
from shared.outbox import Outbox, OutboxRelay, rebase_after_restore, unpublished_count
from tests.support.pg import fresh_database, pg_tool, throwaway_server

SOURCE = "/countypool/quota"
REG = "external:rights-register/COD"


# -- PostgreSQL tools ---------------------------------------------------------------------------------------------

def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_dump(url: str, path: Path) -> None:
    subprocess.run([pg_tool("pg_dump"), "-Fc", "-f", str(path), "-d", _libpq(url)], check=True, capture_output=True)


def pg_restore(path: Path, url: str) -> None:
    subprocess.run([pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "-d", _libpq(url),
                    str(path)], check=True, capture_output=True)


# -- the ledger's consumer on a private topic ---------------------------------------------------------------------

class Ledger:
    """The ledger's real consumer (its handler, batch path, inbox and positions) on a private command topic."""

    def __init__(self, url: str, bootstrap: str, topic: str, group: str):
        self.db = Database(url, "ledger")
        migrations.upgrade(self.db, MIGRATIONS)
        self.outbox = Outbox(messaging["outbox"], "ledger")
        self.app = LedgerApp(self.outbox)
        bus, many = build_bus(self.app)
        self.consumer = IdempotentConsumer(
            db=self.db, tables=messaging, outbox=self.outbox, bootstrap=bootstrap, group_id=group, topics=[topic],
            handler=bus, batch_handler=many, handled_types={"TransfersRequested"}, strict_topics={topic},
            max_message_bytes=1024 * 1024, commit_interval_seconds=0.0)
        self.bootstrap, self.topic = bootstrap, topic

    def catch_up(self, timeout: float = 30) -> None:
        """Poll until the database's positions reach the end of every partition (and the group's Kafka offsets
        have been committed, as a running service's would be)."""
        ends = end_offsets(self.bootstrap, self.topic)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.consumer.poll_once()
            stored = self.consumer.stored_positions()
            if all(stored.get((self.topic, p), 0) >= end for p, end in ends.items() if end):
                for _ in range(3):  # let the asynchronous offset commit go out and be answered
                    self.consumer.poll_once(timeout_ms=100)
                return
        raise AssertionError(f"not caught up: {self.consumer.stored_positions()} vs {ends}; {self.consumer.stats}")

    def expire_due(self) -> int:
        with self.db.sessions() as s, s.begin():
            return self.app.expire_due(s)

    def state(self) -> dict:
        """The books: every transfer (status, amounts), every failed id (reason), every balance, journal length."""
        with self.db.sessions() as s:
            transfers = {r.id: (r.status, r.amount, r.posted_amount) for r in s.execute(text(
                "SELECT id, status, amount, posted_amount FROM transfers")).all()}
            failed = dict(s.execute(text("SELECT id, result FROM failed_transfers")).all())
            balances = {r[0]: tuple(r[1:]) for r in s.execute(text(
                "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted FROM accounts")).all()}
            journal = s.execute(text("SELECT count(*) FROM journal")).scalar_one()
        return {"transfers": transfers, "failed": failed, "balances": balances, "journal": journal}

    def announced(self) -> list[tuple[str, str, str, str]]:
        """What the ledger said on its events topic, in outbox order: (event id, type, transfer id, reason)."""
        with self.db.sessions() as s:
            rows = s.execute(select(messaging["outbox"].c.envelope).order_by(messaging["outbox"].c.position)).all()
        out = []
        for (raw,) in rows:
            env = json.loads(raw)
            name = env["type"].split(".")[1]
            if name != AccountOpened.name:
                out.append((env["id"], name, env["data"]["transfer_id"], env["data"].get("reason", "")))
        return out

    def verify(self):
        from services.ledger.api.routes import verify_chain
        from services.ledger.storage.repository import LedgerRepository

        with self.db.sessions() as s:
            return verify_chain(LedgerRepository(s), 1)

    def close(self) -> None:
        self.consumer.stop(timeout=5)
        self.db.dispose()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in probe.end_offsets(tps).items()}
    finally:
        probe.close()


def command(*transfers: TransferSpec, county: str) -> TransfersRequested:
    pool = f"county:{county}/pool/COD"
    projects = {t.credit_account for t in transfers if t.credit_account.startswith("project:")}
    return TransfersRequested(transfers=list(transfers), open_accounts=[
        AccountSpec(account_id=REG, asset="COD", address="external:rights-register"),
        AccountSpec(account_id=pool, asset="COD", address=f"county:{county}/pool"),
        *[AccountSpec(account_id=p, asset="COD", address=p.rsplit("/", 1)[0]) for p in sorted(projects)]])


def release(tid: str, county: str, amount: str) -> TransferSpec:
    return TransferSpec(transfer_id=tid, debit_account=REG, credit_account=f"county:{county}/pool/COD", asset="COD",
                        amount=amount, code="quota_release_intake")


def move(tid: str, county: str, project: str, amount: str, **kw) -> TransferSpec:
    return TransferSpec(transfer_id=tid, debit_account=f"county:{county}/pool/COD",
                        credit_account=f"project:{project}/COD", asset="COD", amount=amount, code="quota_reserve", **kw)


def send(bootstrap: str, topic: str, items: list[tuple[int, str, TransfersRequested]]) -> None:
    """(partition, key, command): each under a fresh event id, as quota's outbox writes them."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for partition, key, cmd in items:
            p.send(topic, key=key.encode(), partition=partition,
                   value=new_envelope(cmd, subject=key, source=SOURCE).to_json())
        p.flush()
    finally:
        p.close()


def private_topic(bootstrap: str) -> str:
    name = f"test.restore.{uuid.uuid4().hex[:10]}"
    ensure_topics(bootstrap, [name, f"{name}.dlq"], partitions=3)
    return name


# -- 1. the ledger restored from a pg_dump -------------------------------------------------------------------------

PENDING_TIMEOUT = 10  # seconds: the reservation made before the backup, posted after it, expired by the restore


def test_restored_ledger_converges_and_reannounces_each_outcome_once_except_an_expired_post(
        pg_server_url, kafka_bootstrap, tmp_path):
    topic = private_topic(kafka_bootstrap)
    group = f"test-restore-{uuid.uuid4().hex[:8]}"
    a, b = "910001", "910002"  # two counties, each on its own partition (quota keys commands by county pool)
    before = [
        (0, f"county:{a}/pool", command(release("rel-a1", a, "10"), county=a)),
        (1, f"county:{b}/pool", command(release("rel-b1", b, "5"), county=b)),
        (0, f"county:{a}/pool", command(move("res-a1", a, "p1", "3", pending=True, timeout_seconds=PENDING_TIMEOUT),
                                        county=a)),
        (1, f"county:{b}/pool", command(move("over-b1", b, "p2", "50"), county=b)),  # refused: exceeds_credits
    ]
    after = [
        (0, f"county:{a}/pool", command(TransferSpec(
            transfer_id="post-a1", debit_account=f"county:{a}/pool/COD", credit_account="project:p1/COD",
            asset="COD", amount="0", code="quota_allocate", post_pending_id="res-a1"), county=a)),
        (0, f"county:{a}/pool", command(release("rel-a2", a, "2.5"), county=a)),
        (1, f"county:{b}/pool", command(release("rel-b2", b, "1"), county=b)),
        (1, f"county:{b}/pool", command(move("mv-b1", b, "p2", "6"), county=b)),  # 6 of 6: posted
        (1, f"county:{b}/pool", command(move("over-b2", b, "p2", "0.0001"), county=b)),  # pool empty: refused
        (0, f"county:{a}/pool", command(release("rel-a2", a, "2.5"), county=a)),  # quota re-sent it: exists
    ]
    with fresh_database(pg_server_url) as url, fresh_database(pg_server_url) as restored_url:
        first = Ledger(url, kafka_bootstrap, topic, group)
        try:
            send(kafka_bootstrap, topic, before)
            first.catch_up()
            backup = tmp_path / "ledger.dump"
            pg_dump(url, backup)  # the nightly (or hourly) dump
            at_backup = first.state()
            said_before = first.announced()
            reserved_at = time.monotonic()
            send(kafka_bootstrap, topic, after)
            first.catch_up()
            assert time.monotonic() - reserved_at < PENDING_TIMEOUT, "the post must reach the ledger in time"
            lived = first.state()  # what the county's books said when the disk was lost
            said = first.announced()
        finally:
            first.close()
        said_after = said[len(said_before):]
        assert lived["transfers"]["post-a1"][0] == "posted" and lived["transfers"]["res-a1"][0] == "posted_pending"
        assert lived["failed"] == {"over-b1": "exceeds_credits", "over-b2": "exceeds_credits"}
        assert lived != at_backup

        # the disk is lost; the dump is restored; the ledger starts again (same consumer group) once the pending
        # transfer's timeout has passed
        time.sleep(max(0.0, PENDING_TIMEOUT + 0.5 - (time.monotonic() - reserved_at)))
        pg_restore(backup, restored_url)
        second = Ledger(restored_url, kafka_bootstrap, topic, group)
        try:
            assert second.state() == at_backup
            second.catch_up()
            second.expire_due()  # what the ledger's PendingExpiry does every second
            now = second.state()
            said_again = second.announced()[len(said_before):]
            verified = second.verify()
        finally:
            second.close()

    # everything converges but the reservation whose post came after the backup and whose timeout passed before
    # the restore: posted the first time, refused as expired the second time
    assert now["transfers"]["res-a1"][0] == "expired" and now["transfers"].get("post-a1") is None
    assert now["failed"] == {**lived["failed"], "post-a1": "pending_transfer_expired"}
    same = {k: v for k, v in lived["transfers"].items() if k not in ("res-a1", "post-a1")}
    assert {k: v for k, v in now["transfers"].items() if k != "res-a1"} == same
    held = 3 * 10**4  # 3 t of COD in 0.0001 t
    pool_a, proj = f"county:{a}/pool/COD", "project:p1/COD"
    assert now["balances"][pool_a] == (0, lived["balances"][pool_a][1] - held, 0, lived["balances"][pool_a][3])
    assert now["balances"][proj] == (0, 0, 0, 0) and lived["balances"][proj] == (0, 0, 0, held)
    assert {k: v for k, v in now["balances"].items() if k not in (pool_a, proj)} == {
        k: v for k, v in lived["balances"].items() if k not in (pool_a, proj)}
    assert verified.ok, verified

    # each outcome said after the backup is said again exactly once, under a fresh event id (so a consumer's inbox
    # does not drop it: only its own idempotence by transfer id does); quota's re-send of rel-a2 is answered again
    # each time (its sender may have lost the first answer)
    first_time = [(name, tid, why) for _, name, tid, why in said_after]
    second_time = [(name, tid, why) for _, name, tid, why in said_again]
    assert sorted(first_time) == sorted([
        ("TransferPosted", "rel-a2", ""), ("TransferPosted", "rel-a2", ""), ("TransferPosted", "rel-b2", ""),
        ("TransferPosted", "mv-b1", ""), ("TransferRejected", "over-b2", "exceeds_credits"),
        ("TransferPosted", "post-a1", "")])
    assert sorted(second_time) == sorted([
        ("TransferPosted", "rel-a2", ""), ("TransferPosted", "rel-a2", ""), ("TransferPosted", "rel-b2", ""),
        ("TransferPosted", "mv-b1", ""),
        ("TransferRejected", "over-b2", "exceeds_credits"),
        # the contradiction: TransferPosted of post-a1 the first time
        ("TransferRejected", "post-a1", "pending_transfer_expired"), ("TransferExpired", "res-a1", "")])
    assert not {eid for eid, *_ in said_after} & {eid for eid, *_ in said_again}, "fresh event ids"


# -- 2. a partition without a stored position at backup time ------------------------------------------------------

def test_a_partition_first_used_after_the_backup_is_read_again_after_the_restore(
        pg_server_url, kafka_bootstrap, tmp_path):
    topic = private_topic(kafka_bootstrap)
    group = f"test-restore-{uuid.uuid4().hex[:8]}"
    with fresh_database(pg_server_url) as url, fresh_database(pg_server_url) as restored_url:
        first = Ledger(url, kafka_bootstrap, topic, group)
        try:
            send(kafka_bootstrap, topic, [(0, "county:920001/pool", command(release("r1", "920001", "1"),
                                                                            county="920001"))])
            first.catch_up()
            pg_dump(url, tmp_path / "ledger.dump")
            # partition 2 gets its first command only now
            send(kafka_bootstrap, topic, [(2, "county:920002/pool", command(release("r2", "920002", "2"),
                                                                            county="920002"))])
            first.catch_up()
            lived = first.state()
        finally:
            first.close()
        assert "r2" in lived["transfers"]
        pg_restore(tmp_path / "ledger.dump", restored_url)
        second = Ledger(restored_url, kafka_bootstrap, topic, group)
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and "r2" not in second.state()["transfers"]:
                second.consumer.poll_once()
            now = second.state()
        finally:
            second.close()
    assert now["transfers"] == lived["transfers"], "r2 was applied after the backup: it must be applied again"


# -- 3. the outbox restored into a new PostgreSQL server -----------------------------------------------------------

# The outbox's tx_id column and the relay's place (outbox_relay) hold the old server's transaction ids, which a new
# server's start again below: the service's start-up (shared.migrations.upgrade -> shared.outbox.rebase_after_restore)
# notices and rebases the place before anything new is written.

@pytest.fixture(scope="module")
def new_server():
    """A throw-away PostgreSQL cluster (initdb: its transaction ids start again); removed afterwards."""
    with throwaway_server("cp_restore_pg_", "fsync=off") as server:
        yield server.url


def _create_db(server: str, name: str) -> str:
    subprocess.run([pg_tool("psql"), "-d", _libpq(server + "/postgres"), "-c", f'CREATE DATABASE "{name}"'], check=True,
                   capture_output=True)
    return f"{server}/{name}"


def _event(n: int, tag: str) -> AccountOpened:
    return AccountOpened(account_id=f"acct-{tag}-{n}", asset="COD", address=f"test:{tag}")


def _write(url: str, topic: str, tag: str, n: int) -> None:
    db = Database(url, "ledger")
    try:
        with db.sessions() as s, s.begin():
            Outbox(messaging["outbox"], "ledger").add(s, _event(n, tag), subject=f"acct-{tag}-{n}", topic=topic)
    finally:
        db.dispose()


def _published(bootstrap: str, topic: str, tag: str) -> list[int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=2000,
                      enable_auto_commit=False)
    try:
        c.assign([TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())])
        return sorted(int(json.loads(r.value)["data"]["account_id"].rsplit("-", 1)[1]) for r in c)
    finally:
        c.close()


def _restored_outbox(pg_server_url: str, new_server: str, bootstrap: str, tmp_path: Path, start_up: bool):
    """Events 1 and 2 published on the old server, 3 written but not yet published at the backup; the dump is
    restored into the new server, the service starts (its migrations, or not), event 4 is written there and the
    relay runs. Returns what was published, the backlog after, and what a second start-up rebased."""
    topic, tag = private_topic(bootstrap), uuid.uuid4().hex[:8]
    with fresh_database(pg_server_url) as url:
        db = Database(url, "ledger")
        migrations.upgrade(db, MIGRATIONS)
        relay = OutboxRelay(db, messaging["outbox"], bootstrap)
        try:
            for n in (1, 2):
                _write(url, topic, tag, n)
            relay.drain()
        finally:
            relay.stop()
            db.dispose()
        _write(url, topic, tag, 3)
        pg_dump(url, tmp_path / "ledger.dump")
    restored = _create_db(new_server, f"ledger_{tag}")
    pg_restore(tmp_path / "ledger.dump", restored)
    db = Database(restored, "ledger")
    if start_up:
        migrations.upgrade(db, MIGRATIONS)
    _write(restored, topic, tag, 4)
    relay = OutboxRelay(db, messaging["outbox"], bootstrap)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if relay.publish_batch() == 0:
                time.sleep(0.1)
        with db.sessions() as s:
            backlog = unpublished_count(s)
        with db.engine.begin() as conn:
            again = rebase_after_restore(conn)
    finally:
        relay.stop()
        db.dispose()
    return _published(bootstrap, topic, tag), backlog, again


def test_after_a_restore_into_a_new_server_the_relay_publishes_what_it_must(
        pg_server_url, new_server, kafka_bootstrap, tmp_path):
    published, backlog, again = _restored_outbox(pg_server_url, new_server, kafka_bootstrap, tmp_path, start_up=True)
    # 1 and 2 once (published before the backup, not again), 3 (unpublished in the dump) and 4 (new)
    assert published == [1, 2, 3, 4] and backlog == 0
    assert again is None, "rebased once: the place and the server agree from then on"


def test_without_the_start_up_rebase_the_relay_would_skip_what_comes_after_a_restore(
        pg_server_url, new_server, kafka_bootstrap, tmp_path):
    """The control: the place as restored, read by the new server's ids (what the relay did before it was rebased
    at start-up)."""
    published, backlog, _ = _restored_outbox(pg_server_url, new_server, kafka_bootstrap, tmp_path, start_up=False)
    assert published == [1, 2], "3 and 4 never sent"
    assert backlog < 2, "and the backlog gauge does not even count 4"
