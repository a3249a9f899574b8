"""The transactional outbox on real Kafka, on SQLite and on PostgreSQL."""
from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared import migrations
from shared.db import Database
from shared.envelope import new_envelope
from shared.kafka_admin import ensure_topics
from shared.outbox import MAX_EVENT_BYTES, EventTooLarge, Outbox, OutboxRelay
from tests.support.machinery import MIGRATIONS, WidgetAdded, envelope_of, make_db, messaging, read_all
from tests.support.own_kafka import own_kafka


# the outbox as the first schema wrote it (with published_at), to write rows before the upgrade
old_outbox = sa.Table(
    "outbox", sa.MetaData(), sa.Column("position", sa.Integer, primary_key=True), sa.Column("event_id", sa.String),
    sa.Column("event_type", sa.String), sa.Column("topic", sa.String), sa.Column("key", sa.String),
    sa.Column("envelope", sa.Text), sa.Column("created_at", sa.DateTime(timezone=True)))


def _write(db, outbox, topic, key, seq, rollback=False):
    with db.sessions() as s:
        s.begin()
        outbox.add(s, WidgetAdded(widget_id=key, seq=seq), subject=key, topic=topic)
        if rollback:
            s.rollback()
        else:
            s.commit()


def test_committed_events_arrive_once_and_in_order_per_key(db_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(db_url)
    committed = defaultdict(list)
    for seq in range(30):
        for key in ("w-a", "w-b", "w-c"):
            _write(db, outbox, unique_topic, key, seq)
            committed[key].append(seq)
        _write(db, outbox, unique_topic, "w-rolled-back", seq, rollback=True)

    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=25)
    relay.drain()
    assert relay.backlog() == 0
    relay.drain()  # publishing again sends nothing twice

    records = read_all(kafka_bootstrap, unique_topic, expect=90)
    seen = defaultdict(list)
    ids = []
    for r in records:
        env = envelope_of(r)
        assert r.key.decode() == env["subject"], "Kafka key is the aggregate id"
        assert dict(r.headers)["content-type"] == b"application/cloudevents+json; charset=UTF-8", \
            "CloudEvents structured mode: the header names the format"
        seen[env["subject"]].append(env["data"]["seq"])
        ids.append(env["id"])
    assert len(ids) == len(set(ids)) == 90, "each committed event exactly once"
    assert "w-rolled-back" not in seen, "a rolled-back transaction publishes nothing"
    assert dict(seen) == dict(committed), "per key, in commit order"
    relay.stop()


def test_late_committing_transaction_is_delayed_not_skipped(pg_url, kafka_bootstrap, unique_topic):
    """A row that takes a lower position but commits after a later row is still published, after it; the
    transaction in flight holds back its own rows only."""
    db, outbox = make_db(pg_url)
    slow = db.sessions()
    slow.begin()
    outbox.add(slow, WidgetAdded(widget_id="slow", seq=1), subject="slow", topic=unique_topic)
    slow.flush()  # position taken, not committed
    _write(db, outbox, unique_topic, "fast", 2)

    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    assert relay.publish_batch() == 1, "the committed row is not held back by one in flight"
    assert relay.publish_batch() == 0 and relay.backlog() == 0, "nothing committed waits"
    slow.commit()
    slow.close()
    relay.drain()
    keys = [envelope_of(r)["subject"] for r in read_all(kafka_bootstrap, unique_topic, expect=2)]
    assert keys == ["fast", "slow"], "in commit order, the late one not skipped"
    relay.stop()


def test_a_long_transaction_in_another_database_does_not_hold_the_relay_back(pg_url, kafka_bootstrap, unique_topic):
    """Services share a PostgreSQL server: a transaction left open in another database (a long report, a
    replay) holds nothing back, and one in this database only its own rows."""
    db, outbox = make_db(pg_url)
    elsewhere = create_engine(make_url(pg_url).set(database="postgres"))
    with elsewhere.connect() as other:
        other.execute(text("SELECT pg_current_xact_id()"))  # holds a transaction id, open until the block ends
        _write(db, outbox, unique_topic, "w", 1)
        relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
        assert relay.publish_batch() == 1, "published although another database has an older transaction open"
        slow = db.sessions()
        slow.begin()
        outbox.add(slow, WidgetAdded(widget_id="w", seq=2), subject="w", topic=unique_topic)
        slow.flush()
        _write(db, outbox, unique_topic, "w", 3)
        assert relay.publish_batch() == 1, "a transaction of this database in flight holds back only its own rows"
        slow.commit()
        slow.close()
        other.rollback()
    elsewhere.dispose()
    relay.drain()
    seqs = [envelope_of(r)["data"]["seq"] for r in read_all(kafka_bootstrap, unique_topic, expect=3)]
    assert seqs == [1, 3, 2], "in commit order"
    relay.stop()


def test_per_key_order_follows_commits_when_transaction_ids_do_not(pg_url, kafka_bootstrap, unique_topic):
    """Transaction ids are taken at a transaction's first write, not at commit. Here the transaction with the
    older id writes its event for a key only after a newer one committed its own (as when it waited for the
    key's row lock), while a third transaction is still open between them: the newer one's event must still
    come first for that key."""
    db, outbox = make_db(pg_url)
    older, between = db.sessions(), db.sessions()
    older.begin()
    between.begin()
    older.execute(text("SELECT pg_current_xact_id()"))  # an id taken early (the row lock it holds elsewhere)
    between.execute(text("SELECT pg_current_xact_id()"))  # left open until the end
    _write(db, outbox, unique_topic, "k", 1)  # a newer transaction: commits first
    outbox.add(older, WidgetAdded(widget_id="k", seq=2), subject="k", topic=unique_topic)
    older.commit()
    older.close()
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    assert relay.publish_batch() == 2, "both committed: neither waits for the transaction still open"
    between.rollback()
    between.close()
    relay.drain()
    relay.stop()
    seqs = [envelope_of(r)["data"]["seq"] for r in read_all(kafka_bootstrap, unique_topic, expect=2)]
    assert seqs == [1, 2], "in the order the key's events were committed"


def test_rows_added_serialized_are_published_as_written(db_url, kafka_bootstrap, unique_topic):
    """Outbox.add_rows (events a service serialized itself): INSERTs for a few rows, COPY for many, the
    same rows and the same order either way."""
    db, outbox = make_db(db_url)
    for n in (3, Outbox.SMALL + 5):
        with db.sessions() as s, s.begin():
            envs = [new_envelope(WidgetAdded(widget_id=f"r{n}", seq=i), subject=f"r{n}", source=outbox.source)
                    for i in range(n)]
            outbox.add_rows(s, [{"event_id": e.id, "event_type": e.type, "topic": unique_topic, "key": e.subject,
                                 "envelope": e.to_json().decode(), "created_at": e.recordedat} for e in envs])
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    relay.drain()
    records = read_all(kafka_bootstrap, unique_topic, expect=3 + Outbox.SMALL + 5)
    seen = defaultdict(list)
    for r in records:
        seen[r.key.decode()].append(envelope_of(r)["data"]["seq"])
    assert seen == {"r3": [0, 1, 2], f"r{Outbox.SMALL + 5}": list(range(Outbox.SMALL + 5))}
    relay.stop()


def _row_of(env, topic):
    return {"event_id": env.id, "event_type": env.type, "topic": topic, "key": env.subject,
            "envelope": env.to_json().decode(), "created_at": env.recordedat}


def _rows_in(session) -> int:
    return session.execute(text("SELECT count(*) FROM outbox")).scalar_one()


def test_an_event_kafka_could_not_take_is_refused_when_written_and_nothing_of_the_call_is_written(db_url):
    """Kafka refuses a message above its limit, and the relay sends in commit order: a row above it would hold
    back every later event of the service for good. Each way of writing refuses it before inserting anything."""
    db, outbox = make_db(db_url)
    topic = "test.too-large"

    def env(widget, subject, seq=0):
        return new_envelope(WidgetAdded(widget_id=widget, seq=seq), subject=subject, source=outbox.source)

    big = env("x" * MAX_EVENT_BYTES, "big")
    # fewer characters than the limit, more UTF-8 bytes (3 a character): the limit is on bytes
    wide = env("界" * (MAX_EVENT_BYTES // 3), "wide")
    assert len(wide.to_json().decode()) < MAX_EVENT_BYTES < len(wide.to_json())
    writes = {
        "add": lambda s: outbox.add(s, WidgetAdded(widget_id="x" * MAX_EVENT_BYTES, seq=0), subject="big", topic=topic),
        "add_envelope": lambda s: outbox.add_envelope(s, wide, topic),
        "add_many": lambda s: outbox.add_many(s, [(env("w", "w"), topic), (big, topic), (env("w", "w", 1), topic)]),
        "add_rows": lambda s: outbox.add_rows(s, [_row_of(env("w", "w"), topic), _row_of(wide, topic)]),
        # more than SMALL rows: COPY on PostgreSQL
        "add_rows, many": lambda s: outbox.add_rows(
            s, [_row_of(env("w", "w", i), topic) for i in range(Outbox.SMALL + 5)] + [_row_of(big, topic)]),
    }
    for how, write in writes.items():
        with db.sessions() as s:
            s.begin()
            with pytest.raises(EventTooLarge) as refused:
                write(s)
            assert _rows_in(s) == 0, f"{how}: nothing of the call written, not even the rows before the big one"
            s.rollback()
        e = refused.value
        assert isinstance(e, ValueError)
        assert e.event_type == WidgetAdded.type_name() and e.key in ("big", "wide") and e.limit == MAX_EVENT_BYTES
        assert e.size > MAX_EVENT_BYTES and e.event_id
        assert all(str(x) in str(e) for x in ("TestWidgetAdded", e.key, f"{e.size:,}", f"{e.limit:,}")), str(e)
    with db.sessions() as s:
        assert _rows_in(s) == 0


def test_the_largest_event_the_outbox_takes_is_published_and_nothing_waits_behind_it(db_url, kafka_bootstrap,
                                                                                       unique_topic):
    """MAX_EVENT_BYTES is below what the relay's producer and the broker take (key included): an event of exactly
    that size is written and published, the one after it too; one byte more is refused when written."""
    db, outbox = make_db(db_url)
    empty = new_envelope(WidgetAdded(widget_id="", seq=1), subject="edge-" + "k" * 195, source=outbox.source)
    pad = MAX_EVENT_BYTES - len(empty.to_json())

    def sized(n):
        return empty.model_copy(update={"data": {**empty.data, "widget_id": "x" * n}})

    assert len(sized(pad).to_json()) == MAX_EVENT_BYTES
    with db.sessions() as s, s.begin():
        with pytest.raises(EventTooLarge):
            outbox.add_envelope(s, sized(pad + 1), unique_topic)
        outbox.add_envelope(s, sized(pad), unique_topic)
    _write(db, outbox, unique_topic, "after", 2)
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    relay.drain(timeout=60)
    relay.stop()
    records = read_all(kafka_bootstrap, unique_topic, expect=2)
    by_seq = {envelope_of(r)["data"]["seq"]: r for r in records}
    assert sorted(by_seq) == [1, 2] and len(records) == 2
    assert len(by_seq[1].value) == MAX_EVENT_BYTES and by_seq[1].key.decode() == empty.subject


def test_a_relay_taking_over_continues_where_the_last_one_stopped(db_url, kafka_bootstrap, unique_topic):
    """Two replicas' relays take turns (and one stops midway, as a crashed or redeployed replica would):
    every event is published once, in order, and a relay started afterwards finds nothing left to send."""
    db, outbox = make_db(db_url)
    for seq in range(40):
        _write(db, outbox, unique_topic, "w", seq)
    first = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=7)
    second = OutboxRelay(db, messaging["outbox"], kafka_bootstrap, batch_size=5)
    sent = 0
    while sent < 40:
        n = first.publish_batch() + second.publish_batch()
        assert n > 0
        sent += n
    first.stop()
    second.stop()
    later = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    assert later.publish_batch() == 0 and later.backlog() == 0
    later.stop()
    seqs = [envelope_of(r)["data"]["seq"] for r in read_all(kafka_bootstrap, unique_topic, expect=40)]
    assert seqs == list(range(40))


def test_outbox_rows_are_written_once(pg_url, kafka_bootstrap, unique_topic):
    """Publishing leaves the rows as they were written (no row version per event): the relay's place is one
    row of its own."""
    db, outbox = make_db(pg_url)
    for seq in range(10):
        _write(db, outbox, unique_topic, "w", seq)
    versions = "SELECT position, xmin::text, ctid::text FROM outbox ORDER BY position"
    with db.sessions() as s:
        before = s.execute(text(versions)).all()
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    relay.drain()
    relay.stop()
    with db.sessions() as s:
        assert s.execute(text(versions)).all() == before
        assert s.execute(text("SELECT count(*) FROM outbox_relay")).scalar() == 1


def test_upgrading_from_rows_marked_published_skips_nothing_unpublished(db_url, kafka_bootstrap, unique_topic):
    """A database of the first schema, where the relay marked each row: after the upgrade, rows never
    published are published; rows already published before the oldest unpublished one are not sent again."""
    db = Database(db_url, "machinery")
    migrations.upgrade(db, MIGRATIONS, "0001")
    outbox = Outbox(old_outbox, "machinery")
    for seq in range(12):
        _write(db, outbox, unique_topic, "w", seq)
    with db.sessions() as s, s.begin():  # what the old relay had done: rows 0-4 and 7 published
        s.execute(text("UPDATE outbox SET published_at = created_at WHERE position IN "
                       "(SELECT position FROM outbox ORDER BY position LIMIT 5) "
                       "OR position = (SELECT position FROM outbox ORDER BY position LIMIT 1 OFFSET 7)"))
    migrations.upgrade(db, MIGRATIONS)
    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    backlog = relay.backlog()
    relay.drain()
    relay.stop()
    seqs = [envelope_of(r)["data"]["seq"] for r in read_all(kafka_bootstrap, unique_topic, expect=backlog)]
    if db.is_postgres:
        # the place starts at the server's oldest running transaction if that is older (another database's,
        # when tests or services run beside this one): more is sent again, never less
        assert seqs == list(range(12 - backlog, 12)) and backlog >= 7
    else:
        assert seqs == list(range(5, 12)), "from the oldest unpublished row on, the published one among them again"


@pytest.fixture(scope="module")
def stoppable_broker(tmp_path_factory):
    """A broker of this module's own: stopping the suite's would fail whatever runs beside it."""
    with own_kafka(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


def test_commits_succeed_while_broker_is_down_and_arrive_after_restart(db_url, stoppable_broker):
    db, outbox = make_db(db_url)
    broker = stoppable_broker
    topic = f"outbox.restart.{uuid.uuid4().hex[:8]}"  # not "test.*": tidied at the end, the broker is gone then
    ensure_topics(broker.bootstrap, [topic], partitions=3)
    relay = OutboxRelay(db, messaging["outbox"], broker.bootstrap, idle_seconds=0.05)
    broker.run("stop")
    try:
        relay.start()
        for seq in range(20):
            _write(db, outbox, topic, "w-down", seq)  # commits do not need Kafka
        time.sleep(2)
        assert relay.backlog() == 20, "nothing marked published while the broker is down"
    finally:
        broker.run("start")
    deadline = time.monotonic() + 90
    while relay.backlog() and time.monotonic() < deadline:
        time.sleep(0.5)
    relay.stop()
    assert relay.backlog() == 0
    seqs = [envelope_of(r)["data"]["seq"] for r in read_all(broker.bootstrap, topic, expect=20)]
    assert seqs == list(range(20))
