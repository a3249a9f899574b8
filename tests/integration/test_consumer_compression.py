"""Departments' producers compress as they please: a Java client's ``compression.type`` is often lz4, zstd or
snappy. Each codec Kafka has must be read by the services' consumers; without its library kafka-python fails
every poll of the partition holding such a batch (UnsupportedCodecError), and the service stops applying that
partition and every one after it in the poll."""
from __future__ import annotations

import pytest
from confluent_kafka import Producer

from shared.consumer import IdempotentConsumer
from tests.integration.test_consumer import _env
from tests.support.machinery import count_widget, drain, make_db, messaging, widget_counts


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_batches_compressed_with_each_codec_are_applied(db_url, kafka_bootstrap, unique_topic, codec):
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "compression.type": codec, "linger.ms": 50,
                         "acks": "all"})
    for i in range(30):  # one batch or a few, all compressed
        producer.produce(unique_topic, key=f"w{i % 5}".encode(), value=_env(f"w{i % 5}", i))
    assert producer.flush(30) == 0, "the compressed messages were not all written"

    db, outbox = make_db(db_url)
    consumer = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=kafka_bootstrap,
                                  group_id=f"g-{unique_topic}", topics=[unique_topic], handler=count_widget)
    try:
        drain(consumer, lambda: consumer.stats.applied >= 30)
    finally:
        consumer.stop()
    assert widget_counts(db) == {f"w{k}": 6 for k in range(5)}
    assert consumer.stats.dead_lettered == 0
