"""Review of f47b77f (the consumer stores kafka-python's position after an empty poll, "past commit markers").

kafka-python's position also moves when it finds its offset deleted by retention (auto_offset_reset: a
ListOffsets reset to the partition's first offset), with no record returned. The empty poll that follows stores
that first offset as the database position, though nothing below it was applied: shared.consumer_lag reads a
position that "moved" as one whose records were applied, so the messages retention deleted unread are never
reported (countypool_consumer_offsets_skipped_total stays 0, no error is logged), the loss is silent."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient

from shared.consumer import IdempotentConsumer
from shared.kafka_admin import ensure_topics
from tests.integration.test_consumer import _env, _produce
from tests.support.machinery import count_widget, drain, make_db, messaging

pytestmark = pytest.mark.kafka


def test_offsets_deleted_unread_are_reported_while_the_consumer_polls(pg_url, kafka_bootstrap):
    topic = f"test.review-positions.{uuid.uuid4().hex[:12]}"
    ensure_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=1)
    db, outbox = make_db(pg_url)

    def consumer():
        return IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=kafka_bootstrap,
                                  group_id=f"g-{topic}", topics=[topic], handler=count_widget)

    _produce(kafka_bootstrap, topic, [(f"w{i}", _env(f"w{i}", 1)) for i in range(10)])
    first = consumer()
    try:
        drain(first, lambda: first.stats.applied >= 10)
    finally:
        first.stop()
    assert first.stored_positions() == {(topic, 0): 10}

    # while the service is away: 10 more messages, then retention deletes everything up to the end (an idle topic)
    _produce(kafka_bootstrap, topic, [(f"w{i}", _env(f"w{i}", 1)) for i in range(10, 20)])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.delete_records([ConfluentPartition(topic, 0, 20)]).values():
        assert fut.result(timeout=30).low_watermark == 20

    second = consumer()
    second.lag.confirm_seconds = 1.0  # 30 s as served
    try:
        # the service as it runs: the poll loop, and the lag gauge measured now and then beside it
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            second.poll_once(timeout_ms=300)
            second.lag.report()
            time.sleep(0.2)
        stored = second.stored_positions()
        assert second.lag.skipped == {topic: 10}, (
            f"offsets 10..19 were deleted before the group read them, yet nothing was reported "
            f"(skipped={second.lag.skipped}); the database position is now {stored} with "
            f"{second.stats.applied} record(s) applied: the empty poll stored kafka-python's reset position")
    finally:
        second.stop()
