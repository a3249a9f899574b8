"""`countypool lag` against real Kafka: each service's group (as the service's settings name it) on every
partition of the topics it consumes, a partition it never committed counted from its start."""
from __future__ import annotations

import re
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from ops.cli import main


def lag_rows(capsys) -> dict[tuple[str, str], tuple[int, int, int]]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["lag"])
    out = capsys.readouterr()
    assert exited.value.code == 0, out.err
    rows = {}
    for line in out.out.splitlines()[1:]:
        m = re.fullmatch(r"(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)", line.strip())
        if m:
            rows[(m[1], m[2])] = (int(m[3]), int(m[4]), int(m[5]))
    return rows


def two_in_each_partition_and_partition_0_committed(bootstrap: str, topic: str, group: str) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for partition in (0, 1, 2):
        for _ in range(2):
            p.send(topic, key=b"k", value=b"{}", partition=partition).get(timeout=30)
    p.close()
    committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    committer.assign([TopicPartition(topic, 0)])
    committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})
    committer.close()


def test_lag_reads_what_a_service_group_committed(kafka_bootstrap, unique_topic, monkeypatch, capsys):
    """kafka-python answers list_group_offsets with {group: {partition: offset}}: the command failed with an
    AttributeError as soon as any service group had committed anything."""
    two_in_each_partition_and_partition_0_committed(kafka_bootstrap, unique_topic, "countypool-assessment")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    for name in ("ASSESSMENT_GROUP_ID", "ASSESSMENT_INTAKE_TOPIC"):
        monkeypatch.delenv(f"COUNTYPOOL_{name}", raising=False)
    assert lag_rows(capsys)[("countypool-assessment", unique_topic)] == (2, 6, 4)


def test_lag_of_a_group_counts_the_partitions_it_never_committed(kafka_bootstrap, unique_topic, monkeypatch, capsys):
    group = f"g-{uuid.uuid4().hex[:10]}"
    two_in_each_partition_and_partition_0_committed(kafka_bootstrap, unique_topic, group)

    # a second instance of assessment, for another county: its own group and intake topic (see AssessmentSettings)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("COUNTYPOOL_ASSESSMENT_GROUP_ID", group)
    monkeypatch.setenv("COUNTYPOOL_ASSESSMENT_INTAKE_TOPIC", unique_topic)
    assert lag_rows(capsys)[(group, unique_topic)] == (2, 6, 4)  # partitions 1 and 2: nothing consumed

    # a group that never committed at all (a consumer stuck on its first poll, or never started)
    monkeypatch.setenv("COUNTYPOOL_ASSESSMENT_GROUP_ID", f"{group}-idle")
    assert lag_rows(capsys)[(f"{group}-idle", unique_topic)] == (0, 6, 6)
