"""The idempotent consumer on real Kafka, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import time

from kafka import KafkaProducer

from shared.consumer import IdempotentConsumer, Rejected
from shared.envelope import Event, new_envelope, register
from tests.support.machinery import WidgetAdded, count_widget, drain, make_db, messaging, read_all, widget_counts


def _consumer(db, outbox, bootstrap, topic, handler=count_widget, group="g", max_attempts=3):
    return IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=bootstrap,
                              group_id=f"{group}-{topic}", topics=[topic], handler=handler, max_attempts=max_attempts)


def _produce(bootstrap, topic, values: list[tuple[str, bytes]]):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in values:
        p.send(topic, key=key.encode(), value=value)
    p.flush()
    p.close()


def _env(widget, seq, event_id=None):
    return new_envelope(WidgetAdded(widget_id=widget, seq=seq), subject=widget, source="/test", event_id=event_id).to_json()


def test_duplicate_delivery_has_one_effect(db_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(db_url)
    same = _env("w1", 1, event_id="evt-dup-1")
    _produce(kafka_bootstrap, unique_topic, [("w1", same), ("w1", same), ("w1", _env("w1", 2))])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    drain(c, lambda: c.stats.applied + c.stats.duplicates >= 3)
    c.stop()
    assert widget_counts(db) == {"w1": 2}
    assert c.stats.duplicates == 1


def test_crash_between_effect_and_kafka_commit_does_not_double(db_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, unique_topic, [(f"w{i % 3}", _env(f"w{i % 3}", i)) for i in range(12)])
    first = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    # The effect commits in the database, then the process "dies" before Kafka hears of it.
    consumer = first._ensure_consumer()
    consumer.commit = consumer.commit_async = lambda *a, **k: None
    drain(first, lambda: first.stats.applied >= 12)
    consumer.close(autocommit=False)  # the process is gone: it leaves the group, no offsets reached Kafka
    first._consumer = None
    assert sum(widget_counts(db).values()) == 12

    second = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    _produce(kafka_bootstrap, unique_topic, [("w9", _env("w9", 99))])
    drain(second, lambda: second.stats.applied >= 1)
    second.stop()
    counts = widget_counts(db)
    assert counts.pop("w9") == 1
    assert sum(counts.values()) == 12, "resumed from the database position, nothing applied twice"
    assert second.stats.duplicates == 0, "it did not even re-read them"


def test_kafka_hears_the_position_without_the_loop_waiting_for_it(db_url, kafka_bootstrap, unique_topic):
    """Offsets go to Kafka asynchronously, at most once per commit interval; the last busy polls' offsets are
    sent by the idle polls after them, so the group's lag reaches zero (monitoring reads it)."""
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, unique_topic, [(f"w{i % 3}", _env(f"w{i % 3}", i)) for i in range(30)])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    c.max_records = 4  # several polls inside one commit interval
    kafka = c._ensure_consumer()
    sync_commits: list = []
    kafka.commit = lambda *a, **k: sync_commits.append(a)
    drain(c, lambda: c.stats.applied >= 30)
    assert sync_commits == [], "the loop never waits for a commit"

    def committed_all() -> bool:
        return sum(kafka.committed(tp) or 0 for tp in kafka.assignment()) == 30

    drain(c, committed_all, timeout=15)
    assert c.stored_positions() == {(unique_topic, tp.partition): kafka.committed(tp)
                                    for tp in kafka.assignment() if kafka.committed(tp)}
    c.stop()


def test_every_connection_plans_lookups_for_their_actual_keys(db_url, kafka_bootstrap, unique_topic):
    """PostgreSQL: a poll's transaction (like every connection of a service) plans each statement for its actual
    keys (no generic plan kept from when a table was small), with random_page_cost 1.1 (shared.db)."""
    if not db_url.startswith("postgresql"):
        return
    from sqlalchemy import text

    db, outbox = make_db(db_url)
    seen: list[tuple[str, str]] = []

    def handler(ctx):
        seen.append(tuple(ctx.session.execute(text(
            "SELECT current_setting('plan_cache_mode'), current_setting('random_page_cost')")).one()))
        count_widget(ctx)

    _produce(kafka_bootstrap, unique_topic, [("w", _env("w", 1))])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    drain(c, lambda: c.stats.applied >= 1)
    c.stop()
    assert seen == [("force_custom_plan", "1.1")]
    with db.sessions() as s:  # a connection of the pool's, outside any poll
        assert s.execute(text("SELECT current_setting('plan_cache_mode')")).scalar() == "force_custom_plan"


def test_a_message_without_a_value_is_dead_lettered(db_url, kafka_bootstrap, unique_topic):
    """A tombstone (no value) is refused like malformed JSON, not a failure of the whole poll."""
    db, outbox = make_db(db_url)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    p.send(unique_topic, key=b"t", value=None)
    p.send(unique_topic, key=b"ok", value=_env("ok", 1))
    p.flush()
    p.close()
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    drain(c, lambda: c.stats.applied >= 1 and c.stats.dead_lettered >= 1)
    c.stop()
    assert widget_counts(db) == {"ok": 1}
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1)
    assert [dict(r.headers)["dlq-reason"] for r in dead] == [b"malformed_json"]


def test_poison_messages_go_to_the_dlq_with_their_reason_and_the_rest_goes_on(db_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(db_url)

    def handler(ctx):
        if ctx.event.widget_id == "explodes":
            raise RuntimeError("boom")
        if ctx.event.widget_id == "refused":
            raise Rejected("widget_refused", "this widget is not allowed")
        count_widget(ctx)

    bad_type = json.loads(_env("x", 1))
    bad_type["type"] = "countypool.NoSuchThing.v1"
    bad_payload = json.loads(_env("x", 1))
    bad_payload["data"]["seq"] = "not-a-number"
    _produce(kafka_bootstrap, unique_topic, [
        ("k", b"{not json"),
        ("k", json.dumps(bad_type).encode()),
        ("k", json.dumps(bad_payload).encode()),
        ("explodes", _env("explodes", 1)),
        ("refused", _env("refused", 1)),
        ("ok", _env("ok", 1)),
    ])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    drain(c, lambda: c.stats.applied >= 1 and c.stats.dead_lettered >= 5)
    c.stop()
    assert widget_counts(db) == {"ok": 1}
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=5)
    reasons = sorted(dict(r.headers)["dlq-reason"].decode() for r in dead)
    assert reasons == sorted(["malformed_json", "unknown_type", "invalid_payload", "handler_error", "widget_refused"])
    boom = [r for r in dead if dict(r.headers)["dlq-reason"] == b"handler_error"][0]
    assert b"boom" in dict(boom.headers)["dlq-error"]
    assert dict(boom.headers)["dlq-original-topic"].decode() == unique_topic


def test_same_event_id_with_another_body_is_dead_lettered(db_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, unique_topic, [("w", _env("w", 1, event_id="e-1")), ("w", _env("w", 2, event_id="e-1"))])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    drain(c, lambda: c.stats.applied + c.stats.dead_lettered >= 2)
    c.stop()
    assert widget_counts(db) == {"w": 1}
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1)
    assert [dict(r.headers)["dlq-reason"] for r in dead] == [b"duplicate_id_different_body"]


@register
class WidgetCounted(Event):
    """Another event with WidgetAdded's fields."""
    name = "TestWidgetCounted"
    topic = "test.widgets"
    aggregate_type = "widget"

    widget_id: str
    seq: int


def test_same_event_id_with_the_same_data_under_another_type_is_another_body(db_url, kafka_bootstrap, unique_topic):
    """The digest is of the data alone (a re-sent event with a new envelope is the same event): an id taken by one
    event type and reused by another whose data happen to be equal was dropped as a repeat, unseen."""
    db, outbox = make_db(db_url)
    counted = new_envelope(WidgetCounted(widget_id="w", seq=1), subject="w", source="/test", event_id="e-2").to_json()
    _produce(kafka_bootstrap, unique_topic, [("w", _env("w", 1, event_id="e-2")), ("w", counted),
                                             ("w", _env("w", 1, event_id="e-2"))])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    drain(c, lambda: c.stats.applied + c.stats.dead_lettered + c.stats.duplicates >= 3)
    c.stop()
    assert widget_counts(db) == {"w": 1}
    assert (c.stats.dead_lettered, c.stats.duplicates) == (1, 1), "the same event again is still a repeat"
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1)
    assert [dict(r.headers)["dlq-reason"] for r in dead] == [b"duplicate_id_different_body"]
    assert json.loads(dead[0].value)["type"] == "countypool.TestWidgetCounted.v1"


def test_handler_events_go_out_through_the_outbox_with_causation(db_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(db_url)

    def handler(ctx):
        count_widget(ctx)
        ctx.emit(WidgetAdded(widget_id=ctx.event.widget_id + "-echo", seq=ctx.event.seq), subject="echo", topic=unique_topic + ".echo")

    _produce(kafka_bootstrap, unique_topic, [("w", _env("w", 1, event_id="cause-1"))])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    drain(c, lambda: c.stats.applied >= 1)
    c.stop()
    with db.sessions() as s:
        rows = list(outbox.read_events(s))
    assert len(rows) == 1
    env = json.loads(rows[0][1])
    assert env["causationid"] == "cause-1"


def test_a_topic_left_out_of_the_assignment_for_want_of_metadata_is_assigned_later(pg_url, kafka_bootstrap,
                                                                                   monkeypatch):
    """kafka-python can join a group before it has one topic's metadata; its leader then assigns that topic to
    nobody and, the group being stable, never assigns it later. Here the first assignment is made blind to
    the second topic (as it was when CI saw "No partition metadata for topic ..."): the consumer notices,
    rejoins, and the second topic's events are applied."""
    import uuid

    import shared.consumer as consumer_module
    from shared.kafka_admin import ensure_topics

    first, second = (f"test.{uuid.uuid4().hex[:12]}" for _ in range(2))
    ensure_topics(kafka_bootstrap, [first, second, f"{first}.dlq", f"{second}.dlq"], partitions=3)
    noting_gaps = consumer_module._range_assignor_noting_gaps
    blind = {"left": 1}

    class HidingSecond:
        def __init__(self, cluster):
            self.cluster = cluster

        def partitions_for_topic(self, topic):
            return None if topic == second else self.cluster.partitions_for_topic(topic)

    def hiding_once(owner):
        base = noting_gaps(owner)

        class FirstAssignmentBlind(base):
            @classmethod
            def assign(cls, cluster, members):
                # hide it only once the client knows it: kafka-python itself rejoins when metadata it lacked
                # at the assignment arrives, but not when the assignment missed what its metadata had
                if blind["left"] and cluster.partitions_for_topic(second):
                    blind["left"] -= 1
                    cluster = HidingSecond(cluster)
                return super().assign(cluster, members)

        return FirstAssignmentBlind

    monkeypatch.setattr(consumer_module, "_range_assignor_noting_gaps", hiding_once)
    db, outbox = make_db(pg_url)
    c = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=kafka_bootstrap,
                           group_id=f"g-{first}", topics=[first, second], handler=count_widget)
    try:
        _produce(kafka_bootstrap, first, [("a", _env("a", 1))])
        _produce(kafka_bootstrap, second, [("b", _env("b", 1))])
        drain(c, lambda: widget_counts(db) == {"a": 1, "b": 1}, timeout=60)
        assert blind["left"] == 0, "the first assignment was made without the second topic"
        assert {tp.topic for tp in c._consumer.assignment()} == {first, second}
    finally:
        c.stop()


def test_every_replica_reports_the_groups_lag_even_without_partitions(db_url, kafka_bootstrap, unique_topic):
    """The lag gauge is each partition's end against the database positions: a replica that owns no partition
    (here the measure of a consumer that never polled) reports the group's lag, not 0; 0 once the group has
    applied everything; and a broker that does not answer fails the measure within its timeout."""
    from shared.consumer_lag import GroupLag
    from shared.metrics import CONSUMER_LAG

    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, unique_topic, [(f"w{i}", _env(f"w{i}", 1)) for i in range(5)])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    gauge = CONSUMER_LAG.labels(db.service, unique_topic)
    try:
        assert c.lag.report() == {unique_topic: 5} and gauge._value.get() == 5
        drain(c, lambda: c.stats.applied >= 5)
        assert c.lag.report() == {unique_topic: 0} and gauge._value.get() == 0
    finally:
        c.stop()
    away = GroupLag(service="x", bootstrap="127.0.0.1:1", group_id="g", topics=[unique_topic],
                    stored_positions=dict, timeout=1)
    started = time.monotonic()
    try:
        away.measure()
        raise AssertionError("measured a broker that is not there")
    except Exception as exc:  # noqa: BLE001
        assert not isinstance(exc, AssertionError), exc
    finally:
        away.stop()
    assert time.monotonic() - started < 10


def test_events_of_a_handled_type_that_are_not_the_services_concern_are_ignored_cheaply(db_url, kafka_bootstrap,
                                                                                      unique_topic):
    """A handler registered with ``when`` (settlement takes the ledger's outcomes of its own postings only):
    the other events of that type are recorded as ignored, without a handler call; its own are applied."""
    from sqlalchemy import select

    from shared.message_bus import MessageBus

    bus = MessageBus()
    handled = []

    @bus.on(WidgetAdded, when=lambda ev: ev.widget_id.startswith("mine-"))
    def on_widget(ctx):
        handled.append(ctx.event.widget_id)
        count_widget(ctx)

    db, outbox = make_db(db_url)
    c = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=kafka_bootstrap,
                           group_id=f"g-{unique_topic}", topics=[unique_topic], handler=bus,
                           handled_types=bus.handled_types, wants=bus.wants)
    try:
        _produce(kafka_bootstrap, unique_topic, [("mine-1", _env("mine-1", 1)), ("theirs-1", _env("theirs-1", 1)),
                                                 ("mine-2", _env("mine-2", 1))])
        drain(c, lambda: c.stats.applied >= 2 and widget_counts(db) == {"mine-1": 1, "mine-2": 1})
        inbox = messaging["inbox"]
        with db.sessions() as s:
            outcomes = sorted(s.execute(select(inbox.c.outcome)).scalars())
        assert outcomes == ["applied", "applied", "ignored"]
        assert sorted(handled) == ["mine-1", "mine-2"]
    finally:
        c.stop()


def test_what_a_transactional_producer_aborted_takes_no_effect(db_url, kafka_bootstrap, unique_topic):
    """A department's producer with transactions: the records of a transaction it aborted are never applied, those
    of the one it committed are (the consumer reads committed records only)."""
    import uuid

    from confluent_kafka import Producer

    db, outbox = make_db(db_url)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"dept-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(unique_topic, key=b"retracted", value=_env("retracted", 1), partition=0)
    p.flush(30)  # written to the log, then aborted (unflushed, the abort would only drop it in the producer)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(unique_topic, key=b"kept", value=_env("kept", 1), partition=0)
    p.commit_transaction(30)
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    try:
        drain(c, lambda: "kept" in widget_counts(db))
        time.sleep(0.5)
        c.poll_once(timeout_ms=300)
        assert widget_counts(db) == {"kept": 1}
    finally:
        c.stop()
