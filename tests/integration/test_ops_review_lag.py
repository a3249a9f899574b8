"""`countypool lag` counts each partition's backlog on its own (as the services' gauge does): a group whose
position on one partition is past that partition's end (offsets reset by hand with kafka-consumer-groups, a log
truncated after an unclean leader election) showed lag 0 while its other partitions held unread messages."""
from __future__ import annotations

import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.integration.test_cli_lag import lag_rows


def test_a_position_past_one_partitions_end_does_not_hide_the_others_backlog(kafka_bootstrap, unique_topic,
                                                                            monkeypatch, capsys):
    group = f"g-{uuid.uuid4().hex[:10]}"
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for partition in (0, 1, 2):
        for _ in range(2):
            p.send(unique_topic, key=b"k", value=b"{}", partition=partition).get(timeout=30)
    p.close()
    committer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    committer.assign([TopicPartition(unique_topic, 0)])
    committer.commit({TopicPartition(unique_topic, 0): OffsetAndMetadata(10, "", -1)})  # past the end (2)
    committer.close()

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("COUNTYPOOL_ASSESSMENT_GROUP_ID", group)
    monkeypatch.setenv("COUNTYPOOL_ASSESSMENT_INTAKE_TOPIC", unique_topic)
    committed, end, lag = lag_rows(capsys)[(group, unique_topic)]
    assert (committed, end) == (10, 6)
    assert lag == 4  # partitions 1 and 2: two unread messages each (was 0: 6 - 10, clamped)
