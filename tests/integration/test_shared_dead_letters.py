"""Dead letters that Kafka's client or broker could not take as the consumer built them (real Kafka, both
databases). The dead letter is produced before the poll's database commit, so a letter that can never be
sent rolls the whole poll back again and again: before, each of these stopped the consumer for good, every
partition of the poll with it (the records of all partitions are applied in one transaction)."""
from __future__ import annotations

import json

from confluent_kafka import Producer

from shared.consumer import DLQ_VALUE_LIMIT, IdempotentConsumer, Rejected
from shared.envelope import new_envelope
from tests.support.machinery import WidgetAdded, count_widget, drain, make_db, messaging, read_all, widget_counts


def _env(widget, seq, **data):
    env = json.loads(new_envelope(WidgetAdded(widget_id=widget, seq=seq), subject=widget, source="/test").to_json())
    env["data"].update(data)
    return json.dumps(env).encode()


def _produce(bootstrap, topic, messages):
    """(key, value, headers) each, with a client that, like a department's, may send a header without a value."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": 1_048_588,
                  "compression.type": "none"})
    for key, value, headers in messages:
        p.produce(topic, key=key, value=value, headers=headers)
    assert p.flush(30) == 0


def _consumer(db, outbox, bootstrap, topic, handler=count_widget):
    return IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=bootstrap, group_id=f"g-{topic}",
                              topics=[topic], handler=handler, max_attempts=1)


def test_a_poison_message_with_a_header_without_value_is_dead_lettered(db_url, kafka_bootstrap, unique_topic):
    """Kafka headers may have no value (kafka-python hands it over as None), which kafka-python's producer
    refuses (TypeError): the letter keeps the header, with an empty value."""
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, unique_topic, [(b"k", b"{not json", [("trace", None), ("x", b"1")]),
                                             (b"k", _env("k", 1), [("trace", None)])])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic)
    try:
        drain(c, lambda: widget_counts(db) == {"k": 1} and c.stats.dead_lettered == 1)
    finally:
        c.stop()
    [dead] = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1)
    headers = dict(dead.headers)
    assert headers["dlq-reason"] == b"malformed_json" and dead.value == b"{not json"
    assert headers["trace"] in (None, b"") and headers["x"] == b"1"


def test_a_refusal_whose_text_is_not_valid_unicode_is_dead_lettered(db_url, kafka_bootstrap, unique_topic):
    """JSON may carry a lone surrogate ("\\ud800"), which Python strings hold and UTF-8 cannot: a handler's
    refusal quoting such a field made the dlq-error header unencodable (UnicodeEncodeError)."""
    db, outbox = make_db(db_url)

    def handler(ctx):
        if ctx.event.widget_id != "ok":
            raise Rejected("unknown_widget", f"no widget {ctx.event.widget_id}")
        count_widget(ctx)

    _produce(kafka_bootstrap, unique_topic, [(b"k", _env("k", 1, widget_id="w\ud800"), None),
                                             (b"k", _env("ok", 1), None)])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    try:
        drain(c, lambda: widget_counts(db) == {"ok": 1} and c.stats.dead_lettered == 1)
    finally:
        c.stop()
    [dead] = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1)
    headers = dict(dead.headers)
    assert headers["dlq-reason"] == b"unknown_widget"
    assert headers["dlq-error"].startswith(b"no widget w") and b"ud800" in headers["dlq-error"]


def test_a_letter_too_big_with_its_headers_goes_without_its_value(db_url, kafka_bootstrap, unique_topic):
    """A message the broker took (value under the dead-letter limit, big headers) grows past Kafka's 1 MiB with
    the dlq-* headers: the letter goes without the value, as one with a too-large value does."""
    db, outbox = make_db(db_url)
    value = _env("k", 1, widget_id="x" * 880_000)
    assert len(value) < DLQ_VALUE_LIMIT
    big_header = b"h" * (1_048_000 - len(value) - 1)

    def handler(ctx):
        if ctx.event.widget_id != "ok":
            raise Rejected("refused", "r" * 3000)  # the reason's text, at most 2,000 characters, goes along
        count_widget(ctx)

    _produce(kafka_bootstrap, unique_topic, [(b"k", value, [("trace", big_header)]), (b"k", _env("ok", 1), None)])
    c = _consumer(db, outbox, kafka_bootstrap, unique_topic, handler=handler)
    try:
        drain(c, lambda: widget_counts(db) == {"ok": 1} and c.stats.dead_lettered == 1)
    finally:
        c.stop()
    [dead] = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1)
    headers = dict(dead.headers)
    assert headers["dlq-reason"] == b"refused" and dead.value == b""
    assert headers["dlq-value-omitted"] == str(len(value)).encode()
    assert dead.key == b"k"
