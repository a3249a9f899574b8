"""Poison messages (the real run() loop, real Kafka and databases): each test produces one bad message followed by
a good one (same key, so same partition) and starts the consumer's own thread. The bad one is dead-lettered with
a reason and the good one is applied; before, each of these stopped its partition for good."""
from __future__ import annotations

import json
import time

from kafka import KafkaProducer
from sqlalchemy import text

from shared.consumer import IdempotentConsumer
from shared.envelope import Event, new_envelope, register
from shared.outbox import MAX_EVENT_BYTES
from tests.support.machinery import WidgetAdded, count_widget, make_db, messaging, read_all, widget_counts


def _env(widget, seq, event_id=None):
    return new_envelope(WidgetAdded(widget_id=widget, seq=seq), subject=widget, source="/test",
                        event_id=event_id).to_json()


def _produce(bootstrap, topic, values, **producer_cfg):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_cfg)
    for key, value in values:
        p.send(topic, key=key.encode(), value=value).get(timeout=30)
    p.flush()
    p.close()


def _dead_reasons(bootstrap, topic, n):
    return [dict(r.headers)["dlq-reason"].decode() for r in read_all(bootstrap, f"{topic}.dlq", expect=n, timeout=10)]


def _run_until(db, outbox, bootstrap, topic, until, timeout=25, *, handler=count_widget, max_attempts=2, **options):
    """The consumer's own thread on ``topic`` (or ``options['topics']``) until ``until()`` or the timeout."""
    options.setdefault("topics", [topic])
    c = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=bootstrap, group_id=f"g-{topic}",
                           handler=handler, max_attempts=max_attempts, **options)
    c.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until():
            time.sleep(0.5)
    finally:
        c.stop(timeout=20)
    return c


def test_deeply_nested_json_is_dead_lettered_not_a_stuck_consumer(db_url, kafka_bootstrap, unique_topic):
    # 100 KB, well under the 256 KiB limit: pydantic refuses it, json.loads then raises RecursionError
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, unique_topic, [("k", b"[" * 100_000), ("k", _env("k", 1))])
    c = _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"k": 1})
    assert widget_counts(db) == {"k": 1}, f"stuck behind the poison message: last_error={c.stats.last_error!r}"
    assert _dead_reasons(kafka_bootstrap, unique_topic, 1) == ["malformed_json"]


def test_a_dead_letter_keeps_the_messages_own_headers(db_url, kafka_bootstrap, unique_topic):
    """A publisher's headers (a trace id, a redrive's redriven-from) go with its message to the DLQ; before, only
    ours did, and a redriven message that failed again lost where it came from."""
    db, outbox = make_db(db_url)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    p.send(unique_topic, key=b"k", value=b"{not json", headers=[("trace-id", b"t-42"), ("dlq-reason", b"forged")]).get(30)
    p.send(unique_topic, key=b"k", value=_env("k", 1)).get(30)
    p.close()
    _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"k": 1})
    (dead,) = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1, timeout=10)
    headers = dict(dead.headers)
    assert headers["trace-id"] == b"t-42"
    assert headers["dlq-reason"] == b"malformed_json"  # ours, not the message's own dlq-* header
    assert [k for k, _ in dead.headers].count("dlq-reason") == 1


def test_huge_integer_in_an_invalid_envelope_is_dead_lettered(db_url, kafka_bootstrap, unique_topic):
    # json.loads raises ValueError (int max str digits), not JSONDecodeError
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, unique_topic, [("k", b'{"n": ' + b"1" * 5000 + b"}"), ("k", _env("k", 1))])
    c = _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"k": 1})
    assert widget_counts(db) == {"k": 1}, f"stuck behind the poison message: last_error={c.stats.last_error!r}"


def test_nul_in_event_id_is_dead_lettered_on_postgres(pg_url, kafka_bootstrap, unique_topic):
    # PostgreSQL text cannot hold NUL: the inbox lookup raised a DataError, retried for ever as if transient
    db, outbox = make_db(pg_url)
    bad = json.loads(_env("k", 1))
    bad["id"] = "evil\u0000id"
    _produce(kafka_bootstrap, unique_topic, [("k", json.dumps(bad).encode()), ("k", _env("k", 2))])
    c = _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"k": 1})
    assert widget_counts(db) == {"k": 1}, f"stuck behind the poison message: last_error={c.stats.last_error!r}"


def test_compressed_oversized_message_is_dead_lettered(db_url, kafka_bootstrap, unique_topic):
    # A publisher that compresses: 3 MB of JSON is a few KB on the broker. Refused as too large, it was sent on to
    # the DLQ uncompressed, above Kafka's 1 MiB: that send failed and the poll met the same message again.
    db, outbox = make_db(db_url)
    doc = json.loads(_env("k", 1))
    doc["data"]["pad"] = "x" * 3_000_000
    _produce(kafka_bootstrap, unique_topic, [("k", json.dumps(doc).encode()), ("k", _env("k", 2))],
             compression_type="gzip", max_request_size=8 * 1024 * 1024)
    c = _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"k": 1})
    assert widget_counts(db) == {"k": 1}, f"stuck behind the oversized message: last_error={c.stats.last_error!r}"
    dead = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1, timeout=10)
    assert [dict(r.headers)["dlq-reason"] for r in dead] == [b"message_too_large"]
    assert dead[0].value == b"" and int(dict(dead[0].headers)["dlq-value-omitted"]) > 3_000_000


def test_a_message_whose_handler_hits_a_program_limit_is_dead_lettered(pg_url, kafka_bootstrap, unique_topic):
    """psycopg calls PostgreSQL's "program limit exceeded" an operational error: it was retried as a lost
    database, for ever; it is this message's data, dead-lettered invalid_value at once."""
    db, outbox = make_db(pg_url)

    def handler(ctx):
        if ctx.event.widget_id == "huge":
            # stands for any data-dependent limit: "index row size exceeds maximum", "requested length too large"
            ctx.session.execute(text("SELECT repeat('x', 1100000000)"))  # ERROR 54000, psycopg OperationalError
        count_widget(ctx)

    _produce(kafka_bootstrap, unique_topic, [("k", _env("huge", 1)), ("k", _env("ok", 1))])
    c = _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"ok": 1}, handler=handler)
    assert widget_counts(db) == {"ok": 1}, "the good message waits for ever behind the one the database refuses"
    assert c.stats.dead_lettered == 1 and _dead_reasons(kafka_bootstrap, unique_topic, 1) == ["invalid_value"]


def test_a_handler_emitting_an_event_too_large_for_kafka_is_dead_lettered_at_once(db_url, kafka_bootstrap, unique_topic):
    """A follow-up event above MAX_EVENT_BYTES is refused by the outbox (it would stop the relay for good): the
    message is dead-lettered with its own reason, once (another attempt would build the same event), its effects
    rolled back, and the next message applied."""
    from shared.outbox import MAX_EVENT_BYTES

    db, outbox = make_db(db_url)
    calls = []

    def handler(ctx):
        calls.append(ctx.event.widget_id)
        count_widget(ctx)
        if ctx.event.widget_id == "big":
            ctx.emit(WidgetAdded(widget_id="x" * MAX_EVENT_BYTES, seq=0), subject="big", topic=f"{unique_topic}.out")

    _produce(kafka_bootstrap, unique_topic, [("k", _env("big", 1)), ("k", _env("ok", 1))])
    c = _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"ok": 1}, handler=handler,
                   max_attempts=3)
    assert widget_counts(db) == {"ok": 1}, f"the big message's effect is rolled back: {widget_counts(db)}"
    assert calls.count("big") == 1, "refused at the first attempt, not retried"
    assert c.stats.dead_lettered == 1 and _dead_reasons(kafka_bootstrap, unique_topic, 1) == ["event_too_large"]
    with db.sessions() as s:
        assert s.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0


@register
class WidgetNoted(Event):
    """A widget event with a note of any length (what a QuotaAllocated of many lots is to settlement)."""

    name = "TestWidgetNoted"
    topic = "test.widgets"
    aggregate_type = "widget"

    widget_id: str
    note: str


def test_a_big_event_from_a_service_is_taken_and_a_big_intake_message_is_not(db_url, kafka_bootstrap, unique_topic):
    """Between the consumer's cap (256 KiB by default) and MAX_EVENT_BYTES: an event another service's outbox wrote
    (there it was within the limit) is applied; on a strict topic, where outsiders publish, the cap holds. Before,
    settlement dead-lettered a QuotaAllocated of ~1,500 lots, and the money of that allocation was never settled."""
    db, outbox = make_db(db_url)
    intake = f"{unique_topic}.intake"
    note = "n" * 300_000

    def noted(widget):
        return new_envelope(WidgetNoted(widget_id=widget, note=note), subject=widget, source="/test").to_json()

    assert 256 * 1024 < len(noted("big")) < MAX_EVENT_BYTES
    _produce(kafka_bootstrap, unique_topic, [("k", noted("big"))])
    _produce(kafka_bootstrap, intake, [("k", noted("outside")), ("k", _env("after", 1))])

    c = _run_until(db, outbox, kafka_bootstrap, unique_topic, lambda: widget_counts(db) == {"big": 1, "after": 1},
                   timeout=30, topics=[unique_topic, intake], strict_topics={intake}, max_message_bytes=256 * 1024)
    assert widget_counts(db) == {"big": 1, "after": 1}, f"last_error={c.stats.last_error!r}"
    assert _dead_reasons(kafka_bootstrap, intake, 1) == ["message_too_large"]
