"""Review (Dec 01) of the shared machinery: consumer through a dead-letter outage, upcasting on the wire, batch
handlers refusing or failing in the middle of a poll, and the relay through a Kafka outage with a late commit.
Real Kafka and databases throughout (tests/support/machinery.py's widget service)."""
from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from shared.consumer import IdempotentConsumer, Rejected
from shared.envelope import Event, new_envelope, register, upcaster
from shared.outbox import OutboxRelay
from tests.support.machinery import (WidgetAdded, count_widget, drain, envelope_of, make_db, messaging, read_all,
                                     widget_counts, widgets)


@register
class GadgetCountedV1(Event):
    name = "TestReviewGadgetCounted"
    version = 1
    topic = "test.gadgets"
    aggregate_type = "gadget"
    gadget: str


@register
class GadgetCountedV2(Event):
    name = "TestReviewGadgetCounted"
    version = 2
    topic = "test.gadgets"
    aggregate_type = "gadget"
    widget_id: str
    weight: int


@upcaster("TestReviewGadgetCounted", 1)
def _gadget_v1_to_v2(doc: dict) -> dict:
    return {"widget_id": doc["gadget"], "weight": 1}


def _env(widget, seq, event_id=None) -> bytes:
    return new_envelope(WidgetAdded(widget_id=widget, seq=seq), subject=widget, source="/test",
                        event_id=event_id).to_json()


def _gadget(event_cls, data: dict, subject: str, event_id: str | None = None, version: int | None = None) -> bytes:
    doc = json.loads(new_envelope(event_cls(**data), subject=subject, source="/test", event_id=event_id).to_json())
    if version is not None:
        doc["type"] = f"countypool.TestReviewGadgetCounted.v{version}"
    return json.dumps(doc).encode()


def _produce(bootstrap, topic, values):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    for key, value in values:
        p.send(topic, key=key.encode(), value=value)
    p.flush()
    p.close()


def _consumer(db, outbox, bootstrap, topic, handler=count_widget, **kw):
    kw.setdefault("max_attempts", 2)
    return IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=bootstrap, group_id=f"g-{topic}",
                              topics=[topic], handler=handler, **kw)


# -- the dead-letter topic unavailable for a while ----------------------------------------------------------------

def test_dead_letter_topic_unreachable_then_back_good_ones_once_bad_one_once(db_url, kafka_bootstrap, unique_topic,
                                                                           monkeypatch):
    """A poison message among good ones while the dead-letter producer cannot reach Kafka: nothing of the poll
    commits (the letter would be lost otherwise), the consumer keeps retrying, and once the letters can go the
    good ones are applied exactly once and the bad one is dead-lettered exactly once."""
    db, outbox = make_db(db_url)

    def handler(ctx):
        if ctx.event.widget_id == "bad":
            raise Rejected("widget_refused", "no")
        count_widget(ctx)

    _produce(kafka_bootstrap, unique_topic,
             [("k", _env("k", i)) for i in range(5)] + [("k", _env("bad", 99))] + [("k", _env("k", i)) for i in range(5, 10)])
    failures = {"n": 0}
    real_send = IdempotentConsumer._send_dead_letters

    def flaky(self, dead):
        if failures["n"] < 2:  # the dead-letter topic unreachable: the send times out
            failures["n"] += 1
            from kafka.errors import KafkaTimeoutError
            raise KafkaTimeoutError("dead-letter topic unavailable")
        return real_send(self, dead)

    monkeypatch.setattr(IdempotentConsumer, "_send_dead_letters", flaky)
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    c.start()
    deadline = time.monotonic() + 40
    try:
        while time.monotonic() < deadline and not (widget_counts(db).get("k") == 10 and c.stats.dead_lettered >= 1):
            time.sleep(0.3)
    finally:
        c.stop()
    assert failures["n"] == 2, "the dead-letter producer failed twice first"
    assert widget_counts(db) == {"k": 10}, "every good message applied exactly once"
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1, timeout=10)
    assert [dict(r.headers)["dlq-reason"] for r in dead] == [b"widget_refused"], "the bad one dead-lettered once"


# -- upcasting on the wire ----------------------------------------------------------------------------------------

def test_old_version_upcast_newer_refused_in_the_middle_of_a_poll(db_url, kafka_bootstrap, unique_topic):
    """A v1 envelope is upcast and applied as v2; a v3 (newer than the code knows) is dead-lettered
    unsupported_version without any effect; the messages around them are applied, once each."""
    db, outbox = make_db(db_url)
    seen: list[tuple[str, int]] = []

    def handler(ctx):
        ev = ctx.event
        if isinstance(ev, GadgetCountedV2):
            seen.append((ev.widget_id, ev.weight))
            with_weight = ctx.session.execute(sa.select(widgets.c.count).where(widgets.c.id == ev.widget_id)).scalar()
            if with_weight is None:
                ctx.session.execute(widgets.insert().values(id=ev.widget_id, count=ev.weight))
            else:
                ctx.session.execute(widgets.update().where(widgets.c.id == ev.widget_id)
                                    .values(count=with_weight + ev.weight))
            return
        count_widget(ctx)

    v3 = _gadget(GadgetCountedV2, {"widget_id": "g", "weight": 1000}, "g", version=3)
    _produce(kafka_bootstrap, unique_topic, [
        ("g", _gadget(GadgetCountedV2, {"widget_id": "g", "weight": 5}, "g")),
        ("g", _gadget(GadgetCountedV1, {"gadget": "g"}, "g")),
        ("g", v3),
        ("g", _gadget(GadgetCountedV2, {"widget_id": "g", "weight": 10}, "g")),
    ])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    try:
        drain(c, lambda: c.stats.applied + c.stats.dead_lettered >= 4)
    finally:
        c.stop()
    assert seen == [("g", 5), ("g", 1), ("g", 10)], "v1 upcast to v2 (weight 1), v3 never reaches the handler"
    assert widget_counts(db) == {"g": 16}
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1, timeout=10)
    assert [dict(r.headers)["dlq-reason"] for r in dead] == [b"unsupported_version"]
    assert b"v3" in dict(dead[0].headers)["dlq-error"]


def test_an_event_resent_as_a_later_version_is_a_duplicate_not_another_body(db_url, kafka_bootstrap, unique_topic):
    """IdempotentConsumer._seen: "an event re-sent as a later version is the same event". A sender that upgraded
    re-sends an event it sent as v1 (same id) as v2, the v2 form being exactly what the v1 one upcasts to: it must
    be dropped as a duplicate (no second effect, no dead letter)."""
    db, outbox = make_db(db_url)

    def handler(ctx):
        count_widget(ctx) if isinstance(ctx.event, WidgetAdded) else ctx.session.execute(
            widgets.insert().values(id=f"gadget-{ctx.envelope.id}", count=ctx.event.weight))

    eid = "review-resent-as-v2"
    _produce(kafka_bootstrap, unique_topic, [
        ("g", _gadget(GadgetCountedV1, {"gadget": "g"}, "g", event_id=eid)),
        ("g", _gadget(GadgetCountedV2, _gadget_v1_to_v2({"gadget": "g"}), "g", event_id=eid)),
        ("g", _env("after", 1)),
    ])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    try:
        drain(c, lambda: c.stats.applied + c.stats.duplicates + c.stats.dead_lettered >= 3)
    finally:
        c.stop()
    assert widget_counts(db) == {f"gadget-{eid}": 1, "after": 1}
    assert c.stats.dead_lettered == 0, "the re-sent event was dead-lettered duplicate_id_different_body"
    assert c.stats.duplicates == 1


# -- batch handlers with a poison message in the middle -----------------------------------------------------------

def test_a_batch_handler_failing_on_a_poison_message_falls_back_and_applies_the_rest_once(db_url, kafka_bootstrap,
                                                                                        unique_topic):
    """The batch handler writes the good ones, then raises on the poison one: its savepoint is rolled back and the
    poll is applied one by one, so the good ones count once, in order, and the poison one is dead-lettered once."""
    db, outbox = make_db(db_url)
    one_by_one: list[int] = []

    def per_message(ctx):
        if ctx.event.widget_id == "poison":
            raise Rejected("poisoned", "no")
        one_by_one.append(ctx.event.seq)
        count_widget(ctx)

    def batch(session, contexts):
        for ctx in contexts:
            if ctx.event.widget_id == "poison":
                raise RuntimeError("batch cannot take it")
            count_widget(ctx)
        return None

    _produce(kafka_bootstrap, unique_topic,
             [("k", _env("k", i)) for i in range(4)] + [("k", _env("poison", 4))] + [("k", _env("k", i)) for i in range(5, 9)])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=per_message, batch_handler=batch, max_records=50)
    try:
        drain(c, lambda: c.stats.applied + c.stats.dead_lettered >= 9)
    finally:
        c.stop()
    assert widget_counts(db) == {"k": 8}
    assert 4 not in one_by_one and sorted(set(one_by_one)) == one_by_one, "the fallback took them in order, once"
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1, timeout=10)
    assert [dict(r.headers)["dlq-reason"] for r in dead] == [b"poisoned"]


# -- the relay through a Kafka outage, with a late commit of a lower id --------------------------------------------

def test_relay_backlog_after_an_outage_goes_out_in_commit_order_with_a_late_lower_id(db_url, kafka_bootstrap,
                                                                                    unique_topic):
    """Kafka unreachable (the relay pointed at nothing) while writers commit, one of them holding an early position
    and committing last; then Kafka is back: every event once, per key in commit order."""
    db, outbox = make_db(db_url)
    relay = OutboxRelay(db, messaging["outbox"], "127.0.0.1:1", batch_size=7)
    committed: dict[str, list[int]] = defaultdict(list)
    pg = db.is_postgres
    slow = None
    if pg:
        slow = db.sessions()
        slow.begin()
        outbox.add(slow, WidgetAdded(widget_id="late", seq=0), subject="late", topic=unique_topic)
        slow.flush()
    for seq in range(30):
        with db.sessions() as s, s.begin():
            outbox.add(s, WidgetAdded(widget_id=f"k{seq % 3}", seq=seq), subject=f"k{seq % 3}", topic=unique_topic)
        committed[f"k{seq % 3}"].append(seq)
    import shared.outbox as outbox_module
    real_sender = outbox_module.RelaySender

    class QuickFail(real_sender):
        def __init__(self, bootstrap, **kw):
            super().__init__(bootstrap, timeout=1, **kw)

    outbox_module.RelaySender = QuickFail
    try:
        for _ in range(2):
            with pytest.raises(Exception):  # noqa: B017 - whatever the relay's loop catches
                relay.publish_batch()
            relay._drop_producer()
    finally:
        outbox_module.RelaySender = real_sender
    assert relay.backlog() == 30
    if pg:
        with db.sessions() as s, s.begin():
            outbox.add(s, WidgetAdded(widget_id="k0", seq=100), subject="k0", topic=unique_topic)
        committed["k0"].append(100)
        slow.commit()
        slow.close()
        committed["late"] = [0]
    relay.bootstrap = kafka_bootstrap
    relay.drain(timeout=40)
    relay.stop()
    total = sum(map(len, committed.values()))
    records = read_all(kafka_bootstrap, unique_topic, expect=total)
    seen = defaultdict(list)
    ids = [envelope_of(r)["id"] for r in records]
    for r in records:
        seen[envelope_of(r)["subject"]].append(envelope_of(r)["data"]["seq"])
    assert len(ids) == len(set(ids)) == total
    assert dict(seen) == dict(committed)
