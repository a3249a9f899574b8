"""The outbox relay while Kafka does not answer (a producer pointed at an address where no broker listens, the
same librdkafka client as ever; the shared test broker is not stopped)."""
from __future__ import annotations

import threading
import time

import pytest

from shared.outbox import OutboxRelay, RelaySender
from tests.support.machinery import WidgetAdded, make_db, messaging, read_all

NOWHERE = "127.0.0.1:1"


def _write(db, outbox, topic, key, seq):
    with db.sessions() as s, s.begin():
        outbox.add(s, WidgetAdded(widget_id=key, seq=seq), subject=key, topic=topic)


def test_writers_are_not_held_up_while_the_relay_waits_for_kafka(db_url, kafka_bootstrap, unique_topic):
    """SQLite has one write lock for the whole file, and the relay took it (BEGIN IMMEDIATE) for its read, its
    send and its place: while Kafka was away every commit of the service waited for the relay's send to time
    out, and failed ("database is locked") once that took longer than SQLite's busy timeout. Commits must go on
    while Kafka is down, and what they write is published once it is back, in order, nothing twice."""
    db, outbox = make_db(db_url)
    _write(db, outbox, unique_topic, "w", 0)
    away = OutboxRelay(db, messaging["outbox"], NOWHERE)
    away._producer = RelaySender(NOWHERE, timeout=6, log_level=0)  # (its connection refusals are expected)
    failed: list = []

    def publish():
        with pytest.raises(Exception) as exc:
            away.publish_batch()
        failed.append(exc.value)

    t = threading.Thread(target=publish)
    t.start()
    time.sleep(1.0)  # the relay is waiting for its acknowledgements
    started = time.monotonic()
    _write(db, outbox, unique_topic, "w", 1)
    took = time.monotonic() - started
    t.join(30)
    away.stop()
    assert failed and "not acknowledged" in str(failed[0]), failed
    assert took < 2.0, f"a commit waited {took:.1f}s for the relay's send to Kafka"
    assert away.backlog() == 2, "nothing counted published that Kafka did not acknowledge"

    relay = OutboxRelay(db, messaging["outbox"], kafka_bootstrap)
    relay.drain()
    assert relay.publish_batch() == 0 and relay.backlog() == 0
    relay.stop()
    seqs = [r.value for r in read_all(kafka_bootstrap, unique_topic, expect=2)]
    assert [b'"seq":0' in v for v in seqs] == [True, False] and len(seqs) == 2


def test_the_backlog_gauge_follows_while_kafka_is_away(db_url, unique_topic, monkeypatch):
    """Counted only when the relay was idle, the gauge kept its last (low) figure through a Kafka outage, and the
    backlog alerts never fired."""
    import uuid

    from prometheus_client import REGISTRY

    import shared.outbox as outbox_module

    monkeypatch.setattr(outbox_module, "BUSY_BACKLOG_SECONDS", 0.0)
    service = f"relay-gauge-{uuid.uuid4().hex[:8]}"
    db, outbox = make_db(db_url, service)
    relay = OutboxRelay(db, messaging["outbox"], NOWHERE)
    relay.service = service
    relay._producer = RelaySender(NOWHERE, timeout=1, log_level=0)
    relay._drop_producer = lambda: None  # keep the short-timeout producer (the loop would make a default one)
    for seq in range(3):
        _write(db, outbox, unique_topic, "w", seq)
    relay.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and REGISTRY.get_sample_value(
                "countypool_outbox_backlog", {"service": service}) != 3:
            time.sleep(0.2)
    finally:
        relay.stop()
    assert REGISTRY.get_sample_value("countypool_outbox_backlog", {"service": service}) == 3
