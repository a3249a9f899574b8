"""Edges of the restore work found by a review (restores, deleted-unread reporting, ledger re-answers); each test
failed on the code as first written. Real Kafka and PostgreSQL, private topics, groups and databases."""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone

from confluent_kafka import Producer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import select, text

from services.ledger.domain import NewAccount, TransferRequest as T, TransferResult as R
from services.ledger.storage.tables import messaging as ledger_messaging
from shared import migrations
from shared.consumer import IdempotentConsumer
from shared.outbox import OutboxRelay
from tests.integration.ledger.harness import SqlLedger
from tests.integration.test_consumer import _env, _produce
from tests.integration.test_consumer_log_changes import _delete_before, _one_partition_topic, _widgets
from tests.support.machinery import MIGRATIONS, count_widget, drain, make_db, messaging, widget_counts


# -- helpers -----------------------------------------------------------------------------------------------------------

def _consumer(db, outbox, bootstrap, topic, handler=count_widget, group=None):
    return IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=bootstrap,
                              group_id=group or f"g-{topic}", topics=[topic], handler=handler)


# -- 1. seek_to_beginning ignores a group positioned in Kafka on purpose ------------------------------------------------

def test_a_group_positioned_at_the_end_by_ops_demo_platform_is_not_rewound(pg_url, kafka_bootstrap):
    """ops/demo_platform.py position_groups() commits each demo group's offsets at the end of its topics so that the
    services, "whose databases hold no positions yet, then resume there, and see only what this demo publishes".
    Seeking every partition without a database position to its beginning made the demo's services read the
    shared cluster's whole history (every earlier demo's and test's events) instead."""
    topic = _one_partition_topic(kafka_bootstrap)
    _produce(kafka_bootstrap, topic, _widgets(0, 5))  # history on the shared cluster, before the demo
    group = f"countypool-demo-{uuid.uuid4().hex[:8]}"
    # position_groups(), as ops/demo_platform.py does it
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="countypool-demo")
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        ends = probe.end_offsets([TopicPartition(topic, 0)])
        admin.alter_group_offsets(group, {tp: OffsetAndMetadata(off, "", -1) for tp, off in ends.items()})
    finally:
        probe.close()
        admin.close()
    db, outbox = make_db(pg_url)  # the demo's fresh database
    c = _consumer(db, outbox, kafka_bootstrap, topic, group=group)
    try:
        _produce(kafka_bootstrap, topic, [("demo", _env("demo", 1))])
        drain(c, lambda: "demo" in widget_counts(db))
        time.sleep(0.5)
        c.poll_once(timeout_ms=300)
        assert set(widget_counts(db)) == {"demo"}, "only what was published after the group was positioned"
    finally:
        c.stop()


# -- 2. deleted-unread false alarms ----------------------------------------------------------------------------------

def test_records_a_consumer_holds_when_retention_deletes_their_segment_are_not_reported_lost(pg_url, kafka_bootstrap):
    """The consumer (position 5 in its database) fetched offsets 5..9 and is applying them (its transaction not yet
    committed, or the records waiting in kafka-python's fetch buffer) when retention drops their segment. An idle
    check comparing the database position (5) with the first offset (10) at once reported 5 offsets deleted unread,
    with an error log and the critical alert, although every one of them is applied a moment later."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(pg_url)
    _produce(kafka_bootstrap, topic, _widgets(0, 5))
    entered, release = threading.Event(), threading.Event()

    def slow(ctx):
        if ctx.offset >= 5:
            entered.set()
            release.wait(30)
        count_widget(ctx)

    c = _consumer(db, outbox, kafka_bootstrap, topic, handler=slow)
    try:
        drain(c, lambda: c.stats.applied >= 5)
        assert c.stored_positions() == {(topic, 0): 5}
        _produce(kafka_bootstrap, topic, _widgets(5, 5))
        worker = threading.Thread(target=lambda: drain(c, lambda: c.stats.applied >= 10), daemon=True)
        worker.start()
        assert entered.wait(30), "the consumer never got the records"
        _delete_before(kafka_bootstrap, topic, 10)  # retention, while the records are in hand
        c.lag.measure()
        release.set()
        worker.join(40)
        assert c.stats.applied == 10 and set(widget_counts(db)) == {f"w{i}" for i in range(10)}, "all were applied"
        assert c.lag.skipped == {}, "nothing was lost, yet the consumer reports offsets deleted unread"
    finally:
        release.set()
        c.stop()


def test_a_transaction_marker_left_at_the_end_of_an_expired_partition_is_not_reported_lost(pg_url, kafka_bootstrap):
    """A producer with transactions (an outside department writing to an intake topic) leaves a commit marker after
    its records: the consumer's database position is the marker's offset (last record + 1). When the partition's
    records all expire, retention empties it and the first offset becomes the end, one past the marker: the idle
    check reported the marker as a message deleted unread (and the alert fired) though nothing was missed."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(pg_url)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)
    p.begin_transaction()
    for key, value in _widgets(0, 3):
        p.produce(topic, key=key.encode(), value=value)
    p.commit_transaction(30)  # offsets 0..2 records, 3 the commit marker
    c = _consumer(db, outbox, kafka_bootstrap, topic)
    c.lag.confirm_seconds = 0  # a position that stays below the log is reported at once: only the marker rule holds
    try:
        drain(c, lambda: c.stats.applied >= 3)
        # the last record + 1, or past the marker once a poll has passed it (shared.consumer stores that too)
        assert c.stored_positions()[(topic, 0)] in (3, 4)
        assert c.lag.skipped == {}
        _delete_before(kafka_bootstrap, topic, 4)  # everything expired: the first offset is the end
        c.lag.measure()
        assert c.lag.skipped == {}, "the consumer read every record; offset 3 was a transaction marker"
    finally:
        c.stop()


# -- 3. the outbox rebase ---------------------------------------------------------------------------------------------

def test_restored_rows_ahead_of_the_new_servers_ids_are_published(pg_url, kafka_bootstrap):
    """A dump restored into another server whose next transaction id lies between the relay's place and the
    transaction ids of the rows the relay had not published yet (the relay was behind: Kafka was down for a while
    before the dump). Comparing only the place with the server's next id, rebase_after_restore found it behind and
    did nothing; the restored rows carry ids this server has not reached, so no epoch took them: they stayed
    unpublished (and held the backlog up) until the server's ids passed theirs, and rows written meanwhile went
    first."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(pg_url)
    with db.engine.begin() as conn:
        nxt = conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")).scalar_one()
        # the restored place: behind this server's next id (so no rebase)
        conn.execute(text("UPDATE outbox_relay SET published_below = :p, epoch_below = :p, published_running = NULL, "
                          "epoch_running = NULL, position = 0 WHERE id = 1"), {"p": nxt - 1})
        # the restored unpublished rows, written on the old server by transactions with higher ids
        for i in range(3):
            conn.execute(text("INSERT INTO outbox (event_id, event_type, topic, key, envelope, created_at, tx_id) "
                              "VALUES (:id, 'TestWidgetAdded', :t, :k, :e, now(), :tx)"),
                         {"id": f"restored-{i}", "t": topic, "k": f"w{i}", "e": _env(f"w{i}", 1).decode(),
                          "tx": nxt + 50_000_000 + i})
    migrations.upgrade(db, MIGRATIONS)  # the service's start-up: where the rebase runs
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    try:
        try:
            relay.drain(timeout=15)
            drained = True
        except TimeoutError:
            drained = False
        assert drained, f"restored rows never published; backlog {relay.backlog()}"
    finally:
        relay.stop()
        db.dispose()


# -- 4. the ledger's re-answers ---------------------------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ACCOUNTS = [NewAccount("external:mint/COD", "COD", "external:mint"),
            NewAccount("county:320612/pool/COD", "COD", "county:320612/pool"),
            NewAccount("enterprise:91320612MA1W2B3C4D/COD", "COD", "enterprise:91320612MA1W2B3C4D")]
MINT, POOL, ENT = (a.id for a in ACCOUNTS)


def _about(led: SqlLedger, tid: str) -> list[tuple[str, str, str]]:
    """(event name, transfer id, pending id) of every outcome event about ``tid`` (as itself or as the pending
    transfer resolved), in outbox order."""
    o = ledger_messaging["outbox"]
    with led.db.sessions() as s:
        docs = [json.loads(e) for e in s.execute(select(o.c.envelope).order_by(o.c.position)).scalars()]
    return [(d["type"].split(".")[1], d["data"].get("transfer_id"), d["data"].get("pending_id"))
            for d in docs if tid in (d["data"].get("transfer_id"), d["data"].get("pending_id"))]


def test_a_repeat_after_the_post_in_the_same_batch_does_not_say_the_reservation_is_pending(pg_url):
    """Two commands merged into one run (the Kafka path, answer_repeats=True): the post of reservation "res", then a
    chain sent again that repeats "res". The repeat is 'exists'; answered from the record as loaded before the
    batch, it said TransferPending for a reservation this very batch posted, after its TransferPosted, and quota's
    on_ledger_outcome set the transfer's answer back from "posted" to "pending"."""
    led = SqlLedger(pg_url, T0)
    try:
        led.open(ACCOUNTS)
        assert led.submit([T("mint", MINT, POOL, 100), T("res", POOL, ENT, 5, pending=True, timeout_seconds=60)]).ok
        out = led.submit([T("res-post", post_pending_id="res"),
                          T("res", POOL, ENT, 5, pending=True, timeout_seconds=60)], answer_repeats=True)
        assert [o.result for o in out.results] == [R.ok, R.exists]
        said = _about(led, "res")
        assert said[:2] == [("TransferPending", "res", ""), ("TransferPosted", "res-post", "res")]
        assert said[2:] == [], f"after the post, the same batch says: {said[2:]}"
    finally:
        led.close()
